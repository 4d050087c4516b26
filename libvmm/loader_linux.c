/* The Linux x86 boot protocol (Documentation/arch/x86/boot.rst), 64-bit entry: a bzImage's
 * protected-mode part at 1 MiB entered at +0x200, or an ELF64 vmlinux at its own entry,
 * both in long mode with RSI pointing at a boot_params ("zero page") that carries the
 * command line, the initrd and the e820 map. No real-mode setup code ever runs. */
#include <elf.h>
#include <string.h>

#include "libvmm/acpi.h"
#include "libvmm/boot.h"
#include "libvmm/devices/virtio_mmio.h"
#include "libvmm/error_internal.h"
#include "libvmm/kvm.h"
#include "libvmm/le_bytes.h"
#include "libvmm/loader.h"
#include "libvmm/mptable.h"
#include "libvmm/vm_internal.h"

/* Offsets in boot_params and in the setup header (which starts at 0x1f1 in both). */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_SETUP_SECTS 0x1f1
#define BP_BOOT_FLAG 0x1fe
#define BP_JUMP 0x200
#define BP_HEADER 0x202
#define BP_VERSION 0x206
#define BP_TYPE_OF_LOADER 0x210
#define BP_LOADFLAGS 0x211
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_CMD_LINE_PTR 0x228
#define BP_INITRD_ADDR_MAX 0x22c
#define BP_XLOADFLAGS 0x236
#define BP_CMDLINE_SIZE 0x238
#define BP_INIT_SIZE 0x260
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128

#define HDRS_MAGIC 0x53726448u /* "HdrS" */
#define LOADED_HIGH 0x01
#define XLF_KERNEL_64 0x01
#define BZ_LOAD_ADDR 0x100000ull
#define BZ_ENTRY64_OFFSET 0x200

int vmm__linux_detect(const struct vmm__image *img)
{
	return img->len >= 0x240 && vmm__le16(img->data + BP_BOOT_FLAG) == 0xAA55 &&
	       vmm__le32(img->data + BP_HEADER) == HDRS_MAGIC;
}

/* The MP table, so that Linux finds every vCPU and routes ISA interrupts through the I/O
 * APIC (without it: one CPU, PIT through the PIC only). The processor entries carry the
 * CPUID signature and features KVM offers, as firmware copies the boot CPU's. */
static int write_mptable(struct vmm_vm *vm)
{
	size_t room = 0x100000 - VMM_BOOT_MPTABLE;
	uint8_t *p = vmm__memory_gpa(&vm->mem, VMM_BOOT_MPTABLE, room);
	uint32_t sig = 0, features = 0;

	if (!p)
		return vmm__err(VMM_ETOOBIG, "no RAM for the MP table");
	for (uint32_t i = 0; i < vm->kvm->cpuid->nent; i++)
		if (vm->kvm->cpuid->entries[i].function == 1) {
			sig = vm->kvm->cpuid->entries[i].eax;
			features = vm->kvm->cpuid->entries[i].edx;
		}
	return vmm__mptable_write(p, room, VMM_BOOT_MPTABLE, vm->nvcpus, sig, features);
}

/* With virtio devices: the ACPI tables that describe them (acpi.h says why ACPI), and
 * the in-kernel 8259s masked, as a hardware-reduced ACPI platform has none: Linux then
 * never programs them, and unmasked and unprogrammed they would pass ISA interrupts
 * (the UART's) to the boot CPU's LINT0 as ExtINT with vectors 0-15. Without devices the
 * guest sees no ACPI at all, as before. */
static int write_acpi(struct vmm_vm *vm)
{
	struct vmm__acpi_mmio devs[VMM_VIRTIO_SLOTS];
	uint8_t *p = vmm__memory_gpa(&vm->mem, VMM_BOOT_ACPI, VMM_ACPI_ROOM);
	int r;

	if (!vm->nvirtio)
		return 0;
	if (!p)
		return vmm__err(VMM_ETOOBIG, "no RAM for the ACPI tables");
	for (uint32_t i = 0; i < vm->nvirtio; i++)
		devs[i] = (struct vmm__acpi_mmio){ VMM_VIRTIO_MMIO_BASE + i * VMM_VIRTIO_MMIO_SIZE,
						   VMM_VIRTIO_MMIO_SIZE, VMM_VIRTIO_IRQ_BASE + i };
	r = vmm__acpi_write(p, VMM_ACPI_ROOM, VMM_BOOT_ACPI, vm->nvcpus, devs, vm->nvirtio);
	for (uint32_t chip = 0; chip < 2 && !r; chip++) {
		struct kvm_irqchip c = { .chip_id = chip };

		if (vmm__ioctl(vm->fd, KVM_GET_IRQCHIP, &c) < 0)
			return vmm__err_sys(VMM_EKVM, "KVM_GET_IRQCHIP (PIC)");
		c.chip.pic.imr = 0xff;
		if (vmm__ioctl(vm->fd, KVM_SET_IRQCHIP, &c) < 0)
			return vmm__err_sys(VMM_EKVM, "KVM_SET_IRQCHIP (PIC)");
	}
	return r;
}

/* Fills the zero page: command line, initrd, e820. hdr/hdr_len: the image's setup header
 * to copy in (bzImage), or NULL (ELF64) for a minimal one. */
static int build_boot_params(struct vmm_vm *vm, const uint8_t *hdr, size_t hdr_len,
			     const struct vmm__image *initrd, uint64_t kernel_end)
{
	uint8_t *bp = vmm__memory_gpa(&vm->mem, VMM_BOOT_PARAMS, 4096);
	char *cmdline = vmm__memory_gpa(&vm->mem, VMM_BOOT_CMDLINE, VMM_CMDLINE_MAX);
	struct vmm__e820 e820[8];
	uint32_t n = vmm__boot_e820(vm, e820, 8);
	uint64_t rd_addr = 0, rd_max = 0x37ffffffull + 1;
	int r;

	if (!bp || !cmdline)
		return vmm__err(VMM_ETOOBIG, "no RAM for boot_params");
	r = write_mptable(vm);
	if (!r)
		r = write_acpi(vm);
	if (r)
		return r;
	memset(bp, 0, 4096);
	if (hdr) {
		memcpy(bp + BP_SETUP_SECTS, hdr, hdr_len);
		if (vmm__le32(bp + BP_INITRD_ADDR_MAX))
			rd_max = (uint64_t)vmm__le32(bp + BP_INITRD_ADDR_MAX) + 1;
	} else {
		bp[BP_BOOT_FLAG] = 0x55, bp[BP_BOOT_FLAG + 1] = 0xaa;
		vmm__put_le32(bp + BP_HEADER, HDRS_MAGIC);
		bp[BP_VERSION] = 0x0c, bp[BP_VERSION + 1] = 0x02;
	}
	bp[BP_TYPE_OF_LOADER] = 0xff; /* undefined boot loader */
	bp[BP_LOADFLAGS] |= LOADED_HIGH;
	strcpy(cmdline, vm->cmdline);
	vmm__put_le32(bp + BP_CMD_LINE_PTR, VMM_BOOT_CMDLINE);
	vmm__put_le32(bp + BP_EXT_CMD_LINE_PTR, 0);
	if (initrd) {
		r = vmm__initrd_place(vm, initrd, kernel_end, rd_max, &rd_addr);
		if (r)
			return r;
		vmm__put_le32(bp + BP_RAMDISK_IMAGE, (uint32_t)rd_addr);
		vmm__put_le32(bp + BP_RAMDISK_SIZE, (uint32_t)initrd->len);
		vmm__put_le32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(rd_addr >> 32));
		vmm__put_le32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)initrd->len >> 32));
	}
	bp[BP_E820_ENTRIES] = (uint8_t)n; /* n <= 8 < BP_E820_MAX */
	for (uint32_t i = 0; i < n; i++)
		memcpy(bp + BP_E820_TABLE + i * 20, &e820[i], 20);
	return 0;
}

int vmm__linux_load_bzimage(struct vmm_vm *vm, const struct vmm__image *img,
			    const struct vmm__image *initrd)
{
	const uint8_t *d = img->data;
	unsigned setup_sects = d[BP_SETUP_SECTS] ? d[BP_SETUP_SECTS] : 4;
	uint64_t payload_off = (uint64_t)(setup_sects + 1) * 512, payload_len, need;
	size_t hdr_len = (size_t)BP_HEADER + d[BP_JUMP + 1] - BP_SETUP_SECTS;
	uint16_t version = vmm__le16(d + BP_VERSION);
	uint8_t *dst;
	int r;

	if (version < 0x020c || !(vmm__le16(d + BP_XLOADFLAGS) & XLF_KERNEL_64))
		return vmm__err(VMM_EFORMAT,
				"bzImage boot protocol %x.%02x without a 64-bit entry (needs 2.12+)",
				version >> 8, version & 0xff);
	if (payload_off >= img->len || BP_SETUP_SECTS + hdr_len > img->len ||
	    BP_SETUP_SECTS + hdr_len > 4096)
		return vmm__err(VMM_EFORMAT, "bzImage truncated (setup %u sectors, %zu bytes)",
				setup_sects, img->len);
	if (strlen(vm->cmdline) >= vmm__le32(d + BP_CMDLINE_SIZE) + 1ull)
		return vmm__err(VMM_EINVAL, "command line longer than the kernel accepts (%u)",
				vmm__le32(d + BP_CMDLINE_SIZE));
	payload_len = img->len - payload_off;
	/* The kernel decompresses in place and needs init_size bytes from its load address. */
	need = payload_len > vmm__le32(d + BP_INIT_SIZE) ? payload_len : vmm__le32(d + BP_INIT_SIZE);
	dst = vmm__memory_gpa(&vm->mem, BZ_LOAD_ADDR, need);
	if (!dst)
		return vmm__err(VMM_ETOOBIG, "kernel needs %llu MiB above 1 MiB, RAM is %llu MiB",
				(unsigned long long)(need >> 20),
				(unsigned long long)(vm->mem.size >> 20));
	memcpy(dst, d + payload_off, payload_len);
	r = build_boot_params(vm, d + BP_SETUP_SECTS, hdr_len, initrd, BZ_LOAD_ADDR + need);
	if (r)
		return r;
	return vmm__boot_enter_long(vm, BZ_LOAD_ADDR + BZ_ENTRY64_OFFSET, VMM_BOOT_PARAMS);
}

int vmm__linux_load_elf64(struct vmm_vm *vm, const struct vmm__image *img,
			  const struct vmm__image *initrd)
{
	uint64_t entry, end;
	int r = vmm__elf_load(vm, img, ELFCLASS64, &entry, &end);

	if (r)
		return r;
	if (!vmm__memory_gpa(&vm->mem, entry, 1) || entry >= (1ull << 32))
		return vmm__err(VMM_EFORMAT, "ELF64 entry 0x%llx is not in the low 4 GiB of RAM",
				(unsigned long long)entry);
	r = build_boot_params(vm, NULL, 0, initrd, (end + VMM_PAGE_SIZE - 1) & ~(VMM_PAGE_SIZE - 1));
	if (r)
		return r;
	return vmm__boot_enter_long(vm, entry, VMM_BOOT_PARAMS);
}
