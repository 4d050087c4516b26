/* The kernel loaders (multiboot, ELF64, bzImage) on the fake kernel: where each puts the
 * image, the entry state it gives the boot vCPU, and the headers it refuses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "fake_vm.h"

static const uint8_t code[] = { 0xf4, 0xeb, 0xfd, 0x90, 0x12, 0x34, 0x56, 0x78 };
static uint8_t img[16384];

static struct vmm_vm *vm_new(void)
{
	struct vmm_vm *vm = fake_vm_new(16, 1, 0, NULL, NULL);

	assert_non_null(vm);
	return vm;
}

static void assert_ram(struct vmm_vm *vm, uint64_t gpa, const void *want, size_t len)
{
	uint8_t got[64];

	assert_true(len <= sizeof(got));
	assert_int_equal(vmm_vm_mem_read(vm, gpa, got, len), 0);
	assert_memory_equal(got, want, len);
}

static void elf64_long_mode_entry(void **state)
{
	struct vmm_vm *vm = vm_new();
	size_t len = fake_elf64(img, 0x200000, 0x200004, code, sizeof(code));
	struct fake_kvm_vcpu_state *s = fake_kvm_vcpu(0);
	uint8_t zero[16] = { 0 };

	(void)state;
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), 0);
	assert_ram(vm, 0x200000, code, sizeof(code));
	assert_ram(vm, 0x200000 + sizeof(code), zero, sizeof(zero)); /* bss zeroed */
	assert_int_equal(s->regs.rip, 0x200004);
	assert_int_equal(s->regs.rsi, 0x7000); /* boot_params */
	assert_true(s->sregs.efer & (1 << 10));    /* LMA */
	assert_true(s->sregs.cr0 & (1u << 31));   /* paging */
	assert_int_equal(s->sregs.cs.l, 1);
	assert_ram(vm, 0x7000 + 0x202, "HdrS", 4);
	/* Loaded once only. */
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), VMM_ESTATE);
	vmm_vm_destroy(vm);
}

static void multiboot_protected_entry(void **state)
{
	struct vmm_vm *vm = vm_new();
	size_t len = fake_multiboot(img, 0x100000, 0x100020, code, sizeof(code));
	struct fake_kvm_vcpu_state *s = fake_kvm_vcpu(0);

	(void)state;
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, "initrd!", 7), 0);
	assert_ram(vm, 0x100020, code, sizeof(code)); /* the header is at load_addr */
	assert_int_equal(s->regs.rip, 0x100020);
	assert_int_equal(s->regs.rax, 0x2BADB002);
	assert_int_equal(s->regs.rbx, 0x6000); /* the multiboot information */
	assert_true(s->sregs.cr0 & 1);             /* protected mode */
	assert_false(s->sregs.cr0 & (1u << 31)); /* paging off */
	assert_false(s->sregs.efer & (1 << 10));
	vmm_vm_destroy(vm);
}

static void bzimage_at_1mib(void **state)
{
	struct vmm_vm *vm = vm_new();
	size_t len = fake_bzimage(img, code, sizeof(code));
	struct fake_kvm_vcpu_state *s = fake_kvm_vcpu(0);
	uint8_t sig[2];

	(void)state;
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), 0);
	assert_ram(vm, 0x100000, code, sizeof(code));
	assert_int_equal(s->regs.rip, 0x100200);
	assert_int_equal(s->regs.rsi, 0x7000);
	assert_ram(vm, 0x7000 + 0x202, "HdrS", 4);
	assert_int_equal(vmm_vm_mem_read(vm, 0x7000 + 0x210, sig, 1), 0);
	assert_int_equal(sig[0], 0xff); /* type_of_loader: undefined */
	vmm_vm_destroy(vm);
}

/* Each header damaged one way; every one a specific error, the VM still loadable. */
static void bad_headers(void **state)
{
	struct vmm_vm *vm = vm_new();
	size_t len;

	(void)state;
	assert_int_equal(vmm_vm_load_kernel_image(vm, "hello", 5, NULL, 0), VMM_EFORMAT);
	len = fake_elf64(img, 0x1000, 0x1000, code, sizeof(code)); /* below 1 MiB */
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), VMM_EFORMAT);
	len = fake_elf64(img, 0x100000, 0x100000, code, sizeof(code));
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, 40, NULL, 0), VMM_EFORMAT); /* cut */
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len - 4, NULL, 0), VMM_EFORMAT);
	len = fake_elf64(img, 0x3000000, 0x3000000, code, sizeof(code)); /* past 16 MiB */
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), VMM_ETOOBIG);
	len = fake_elf64(img, 0x100000, 0x100000, code, sizeof(code));
	img[18] = 3; /* e_machine: i386 */
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), VMM_EFORMAT);
	img[4] = 1; /* ELF32 without multiboot */
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), VMM_EFORMAT);

	len = fake_multiboot(img, 0x100000, 0x100020, code, sizeof(code));
	((uint32_t *)img)[1] |= 1u << 2, ((uint32_t *)img)[2] -= 1u << 2; /* video mode */
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), VMM_EFORMAT);
	len = fake_multiboot(img, 0x1000, 0x1020, code, sizeof(code)); /* below 1 MiB */
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), VMM_EFORMAT);
	len = fake_multiboot(img, 0x100000, 0x100020, code, sizeof(code));
	((uint32_t *)img)[5] = 0x0fffff; /* load_end_addr below load_addr */
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), VMM_EFORMAT);

	len = fake_bzimage(img, code, sizeof(code));
	img[0x206] = 0x0b; /* protocol 2.11: no 64-bit entry */
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), VMM_EFORMAT);
	len = fake_bzimage(img, code, sizeof(code));
	img[0x236] = 0; /* no XLF_KERNEL_64 */
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), VMM_EFORMAT);
	len = fake_bzimage(img, code, sizeof(code));
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, 5 * 512, NULL, 0), VMM_EFORMAT);
	img[0x260] = 0, img[0x262] = 0, img[0x263] = 0x10; /* init_size 256 MiB */
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), VMM_ETOOBIG);

	/* None of that loaded anything: a good image still goes in. */
	len = fake_elf64(img, 0x100000, 0x100000, code, sizeof(code));
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), 0);
	vmm_vm_destroy(vm);
}

/* The fuzz target's seeds (tests/fuzz/corpus/loader) are good images, one per format. */
static void fuzz_seeds_load(void **state)
{
	static const char *const seeds[] = { "seed-elf64", "seed-multiboot", "seed-bzimage" };

	(void)state;
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		char path[512];
		size_t len;
		char *data;
		struct vmm_vm *vm = vm_new();

		snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/loader/%s", VMM_SOURCE_DIR,
			 seeds[i]);
		data = tu_read_file(path, &len);
		if (vmm_vm_load_kernel_image(vm, data, len, NULL, 0))
			fail_msg("%s: %s", seeds[i], vmm_last_error());
		free(data);
		vmm_vm_destroy(vm);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(elf64_long_mode_entry, fake_vm_setup),
		cmocka_unit_test_setup(multiboot_protected_entry, fake_vm_setup),
		cmocka_unit_test_setup(bzimage_at_1mib, fake_vm_setup),
		cmocka_unit_test_setup(bad_headers, fake_vm_setup),
		cmocka_unit_test_setup(fuzz_seeds_load, fake_vm_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
