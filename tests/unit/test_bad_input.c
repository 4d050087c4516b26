/* Bad input gets a specific error and never a crash: missing or garbage kernels, images
 * larger than RAM, truncated or lying ELF headers, bad sizes, bad handler ranges. No guest
 * runs, so the VMs live on the fake kernel (fake_kvm.h) and this runs on any machine. */
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_vm.h"
#include "testutil.h"

static struct vmm_vm *new_vm(uint64_t mem)
{
	struct vmm_vm_config cfg;
	struct vmm_vm *vm = NULL;

	vmm_vm_config_init(&cfg);
	cfg.mem_size = mem;
	assert_int_equal(vmm_vm_create(&cfg, &vm), 0);
	return vm;
}

static void bad_config(void **state)
{
	struct vmm_vm_config cfg;
	struct vmm_vm *vm = (void *)1;
	char longline[8192];

	(void)state;
	vmm_vm_config_init(&cfg);
	cfg.mem_size = 0;
	assert_int_equal(vmm_vm_create(&cfg, &vm), VMM_EINVAL);
	assert_null(vm);
	cfg.mem_size = 1ull << 50; /* absurd */
	assert_int_equal(vmm_vm_create(&cfg, &vm), VMM_EINVAL);
	assert_non_null(strstr(vmm_last_error(), "memory size"));
	cfg.mem_size = (16 << 20) + 1; /* not page-aligned */
	assert_int_equal(vmm_vm_create(&cfg, &vm), VMM_EINVAL);
	cfg.mem_size = 16 << 20;
	cfg.vcpus = 0;
	assert_int_equal(vmm_vm_create(&cfg, &vm), VMM_EINVAL);
	cfg.vcpus = 1000;
	assert_int_equal(vmm_vm_create(&cfg, &vm), VMM_EINVAL);
	cfg.vcpus = 1;
	memset(longline, 'a', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = 0;
	cfg.cmdline = longline;
	assert_int_equal(vmm_vm_create(&cfg, &vm), VMM_EINVAL);
	cfg.cmdline = NULL;
	cfg.size = 4; /* not initialised */
	assert_int_equal(vmm_vm_create(&cfg, &vm), VMM_EINVAL);
	assert_int_equal(vmm_vm_create(NULL, &vm), VMM_EINVAL);
}

static void bad_kernels(void **state)
{
	struct vmm_vm *vm = new_vm(16 << 20);
	uint8_t junk[4096];

	(void)state;
	assert_int_equal(vmm_vm_load_kernel(vm, "/nonexistent/kernel", NULL), VMM_ENOENT);
	assert_int_equal(vmm_vm_load_kernel(vm, "/dev/null", NULL), VMM_EIO);
	assert_int_equal(vmm_vm_load_kernel(vm, tu_guest("hello.elf"), "/nonexistent/initrd"),
			 VMM_ENOENT);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 7 + 3);
	assert_int_equal(vmm_vm_load_kernel_image(vm, junk, sizeof(junk), NULL, 0), VMM_EFORMAT);
	assert_int_equal(vmm_vm_load_kernel_image(vm, junk, 0, NULL, 0), VMM_EFORMAT);
	assert_int_equal(vmm_vm_load_kernel_image(vm, "\x7f" "ELF", 4, NULL, 0), VMM_EFORMAT);
	/* The VM is still usable after all that. */
	assert_int_equal(vmm_vm_load_kernel(vm, tu_guest("hello.elf"), NULL), 0);
	vmm_vm_destroy(vm);
}

/* Every truncation and many single-byte corruptions of real images: an error or a
 * successful load, never a crash or a write outside RAM (ASan watches). */
/* Truncated and bit-flipped images: a specific error or a clean load. A VM that refused an
 * image takes the next one (a failed load leaves it as it was); one that loaded is
 * replaced, so every image meets a VM that has none (creating a VM per image cost 100 s in
 * the emulated KVM host). */
static void load_mutant(struct vmm_vm **vm, const uint8_t *img, size_t len)
{
	int r = vmm_vm_load_kernel_image(*vm, img, len, NULL, 0);

	assert_true(r == VMM_EFORMAT || r == VMM_ETOOBIG || r == VMM_EINVAL || r == 0);
	if (r == 0) {
		vmm_vm_destroy(*vm);
		*vm = new_vm(16 << 20);
	}
}

static void mutated_images(void **state)
{
	static const char *const files[] = { "hello.elf", "hello64.elf", "hello.bzimage" };
	struct vmm_vm *vm = new_vm(16 << 20);

	(void)state;
	for (size_t f = 0; f < 3; f++) {
		size_t len;
		uint8_t *img = (uint8_t *)tu_read_file(tu_guest(files[f]), &len), *m = malloc(len);

		for (size_t cut = 0; cut < len; cut += cut < 1024 ? 7 : 997)
			load_mutant(&vm, img, cut);
		srand(42);
		for (int i = 0; i < 300; i++) {
			size_t at = (size_t)rand() % (len < 4096 ? len : 4096);

			memcpy(m, img, len);
			m[at] ^= (uint8_t)(1 + rand() % 255);
			load_mutant(&vm, m, len);
		}
		free(img);
		free(m);
	}
	vmm_vm_destroy(vm);
}

static void too_big(void **state)
{
	struct vmm_vm *vm = new_vm(1 << 20); /* 1 MiB: nothing fits above 1 MiB */
	struct {
		Elf64_Ehdr eh;
		Elf64_Phdr ph;
	} elf;
	uint8_t *initrd;

	(void)state;
	assert_int_equal(vmm_vm_load_kernel(vm, tu_guest("hello.elf"), NULL), VMM_ETOOBIG);
	vmm_vm_destroy(vm);
	/* An ELF whose segment claims 1 TiB of memory. */
	memset(&elf, 0, sizeof(elf));
	memcpy(elf.eh.e_ident, ELFMAG, SELFMAG);
	elf.eh.e_ident[EI_CLASS] = ELFCLASS64;
	elf.eh.e_ident[EI_DATA] = ELFDATA2LSB;
	elf.eh.e_machine = EM_X86_64;
	elf.eh.e_phoff = sizeof(elf.eh);
	elf.eh.e_phentsize = sizeof(elf.ph);
	elf.eh.e_phnum = 1;
	elf.eh.e_entry = 0x100000;
	elf.ph.p_type = PT_LOAD;
	elf.ph.p_paddr = 0x100000;
	elf.ph.p_memsz = 1ull << 40;
	vm = new_vm(16 << 20);
	assert_int_equal(vmm_vm_load_kernel_image(vm, &elf, sizeof(elf), NULL, 0), VMM_ETOOBIG);
	elf.ph.p_memsz = 16;
	elf.ph.p_filesz = 1 << 20; /* more file bytes than memory: malformed */
	assert_int_equal(vmm_vm_load_kernel_image(vm, &elf, sizeof(elf), NULL, 0), VMM_EFORMAT);
	elf.ph.p_filesz = 0;
	elf.ph.p_paddr = ~0ull - 4; /* wraps */
	assert_int_equal(vmm_vm_load_kernel_image(vm, &elf, sizeof(elf), NULL, 0), VMM_EFORMAT);
	/* An initrd bigger than RAM. */
	initrd = calloc(1, 20 << 20);
	assert_int_equal(vmm_vm_load_kernel(vm, tu_guest("hello.elf"), NULL), 0);
	vmm_vm_destroy(vm);
	vm = new_vm(16 << 20);
	{
		size_t len;
		uint8_t *k = (uint8_t *)tu_read_file(tu_guest("hello.bzimage"), &len);

		assert_int_equal(vmm_vm_load_kernel_image(vm, k, len, initrd, 20 << 20),
				 VMM_ETOOBIG);
		free(k);
	}
	vmm_vm_destroy(vm);
	free(initrd);
}

static void noop_io(void *o, uint64_t a, uint8_t *d, uint32_t s, int w)
{
}

static void bad_ranges(void **state)
{
	struct vmm_vm *vm = new_vm(16 << 20);
	uint8_t b[16];

	(void)state;
	assert_int_equal(vmm_vm_mem_read(vm, (16 << 20) - 8, b, 16), VMM_ERANGE);
	assert_int_equal(vmm_vm_mem_write(vm, ~0ull - 4, b, 16), VMM_ERANGE);
	assert_int_equal(vmm_vm_mem_read(vm, 0, NULL, 16), VMM_EINVAL);
	assert_int_equal(vmm_vm_register_pio(vm, 0x3f8, 8, noop_io, NULL), VMM_EBUSY);
	assert_int_equal(vmm_vm_register_pio(vm, 0xfff0, 0x20, noop_io, NULL), VMM_EINVAL);
	assert_int_equal(vmm_vm_register_mmio(vm, 0x1000, 0x1000, noop_io, NULL), VMM_ERANGE);
	assert_int_equal(vmm_vm_register_mmio(vm, 0xd0000000, 0x1000, noop_io, NULL), 0);
	assert_int_equal(vmm_vm_register_mmio(vm, 0xd0000800, 0x1000, noop_io, NULL), VMM_EBUSY);
	vmm_vm_destroy(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bad_config),     cmocka_unit_test(bad_kernels),
		cmocka_unit_test(mutated_images), cmocka_unit_test(too_big),
		cmocka_unit_test(bad_ranges),
	};

	fake_kvm_install();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
