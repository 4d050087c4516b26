/* VMs on the fake kernel, and hand-made kernel images for the loaders. */
#include <elf.h>
#include <string.h>

#include "fake_vm.h"

struct vmm_vm *fake_vm_new(uint64_t mem_mib, uint32_t vcpus, uint32_t ring_entries,
			   vmm_serial_fn serial, void *opaque)
{
	struct vmm_vm_config cfg;
	struct vmm_vm *vm;

	vmm_vm_config_init(&cfg);
	cfg.mem_size = mem_mib << 20;
	cfg.vcpus = vcpus;
	cfg.dirty_ring_entries = ring_entries;
	cfg.serial_out = serial;
	cfg.serial_opaque = opaque;
	return vmm_vm_create(&cfg, &vm) ? NULL : vm;
}

struct vmm_vm *fake_vm_new_loaded(uint64_t mem_mib, uint32_t vcpus, vmm_serial_fn serial,
				  void *opaque)
{
	static const uint8_t hlt_loop[] = { 0xf4, 0xeb, 0xfd };
	static uint8_t img[8192];
	struct vmm_vm *vm = fake_vm_new(mem_mib, vcpus, 0, serial, opaque);
	size_t len = fake_elf64(img, 0x100000, 0x100000, hlt_loop, sizeof(hlt_loop));

	if (vm && vmm_vm_load_kernel_image(vm, img, len, NULL, 0)) {
		vmm_vm_destroy(vm);
		return NULL;
	}
	return vm;
}

size_t fake_elf64(uint8_t *buf, uint64_t load, uint64_t entry, const void *code, size_t len)
{
	Elf64_Ehdr eh = {
		.e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT },
		.e_type = ET_EXEC, .e_machine = EM_X86_64, .e_version = EV_CURRENT,
		.e_entry = entry, .e_phoff = sizeof(Elf64_Ehdr), .e_ehsize = sizeof(Elf64_Ehdr),
		.e_phentsize = sizeof(Elf64_Phdr), .e_phnum = 1,
	};
	Elf64_Phdr ph = {
		.p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = 4096, .p_vaddr = load,
		.p_paddr = load, .p_filesz = len, .p_memsz = len + 4096, .p_align = 4096,
	};

	memset(buf, 0, 4096);
	memcpy(buf, &eh, sizeof(eh));
	memcpy(buf + sizeof(eh), &ph, sizeof(ph));
	memcpy(buf + 4096, code, len);
	return 4096 + len;
}

size_t fake_multiboot(uint8_t *buf, uint32_t load, uint32_t entry, const void *code, size_t len)
{
	/* magic, flags (memory info + a.out kludge), checksum, header/load/end/bss/entry. */
	uint32_t h[8] = { 0x1BADB002u, (1u << 1) | (1u << 16), 0, load, load, 0, 0, entry };

	h[2] = -(h[0] + h[1]);
	memcpy(buf, h, sizeof(h));
	memcpy(buf + sizeof(h), code, len);
	return sizeof(h) + len;
}

size_t fake_bzimage(uint8_t *buf, const void *code, size_t len)
{
	const size_t setup = 5 * 512; /* boot sector + 4 setup sectors */
	uint16_t version = 0x020f, xlf = 1 /* XLF_KERNEL_64 */;
	uint32_t magic = 0x53726448u, cmdline_size = 2047, init_size = 1 << 20;

	memset(buf, 0, setup);
	buf[0x1f1] = 4;       /* setup_sects */
	buf[0x200] = 0xeb;    /* jmp over the header: its second byte sizes the header */
	buf[0x201] = 0x66;
	memcpy(buf + 0x202, &magic, 4);
	memcpy(buf + 0x206, &version, 2);
	buf[0x211] = 0x01;    /* LOADED_HIGH */
	memcpy(buf + 0x236, &xlf, 2);
	memcpy(buf + 0x238, &cmdline_size, 4);
	memcpy(buf + 0x260, &init_size, 4);
	buf[0x1fe] = 0x55;
	buf[0x1ff] = 0xaa;
	memcpy(buf + setup, code, len);
	return setup + len;
}

int fake_vm_setup(void **state)
{
	(void)state;
	fake_kvm_install();
	return 0;
}
