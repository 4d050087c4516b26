/* Multiboot v1 (the format QEMU's -kernel accepts): find the header, load the ELF32
 * segments (or the a.out-kludge ranges), build the multiboot information structure with
 * the command line, memory sizes, a memory map and the initrd as module 0. */
#include <elf.h>
#include <string.h>

#include "libvmm/boot.h"
#include "libvmm/error_internal.h"
#include "libvmm/loader.h"
#include "libvmm/vm_internal.h"

#define MB_MAGIC 0x1BADB002u
#define MB_BOOT_MAGIC 0x2BADB002u
#define MB_SEARCH 8192
#define MB_FLAG_AOUT_KLUDGE (1u << 16)
#define MB_FLAGS_REQUIRED_KNOWN 0x0000ffffu /* bits 0-15: we must honour or refuse */
#define MB_FLAGS_SUPPORTED 0x3u             /* page-align modules, memory info */

#define MBI_MEM (1u << 0)
#define MBI_CMDLINE (1u << 2)
#define MBI_MODS (1u << 3)
#define MBI_MMAP (1u << 6)
#define MBI_LOADER (1u << 9)

struct mb_header {
	uint32_t magic, flags, checksum;
	uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
};

struct mbi {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr;
	uint32_t drives_length, drives_addr, config_table, boot_loader_name;
} __attribute__((packed));

struct mb_mmap_entry {
	uint32_t size;
	uint64_t addr, len;
	uint32_t type;
} __attribute__((packed));

struct mb_module {
	uint32_t start, end, string, reserved;
};

/* Offset of a valid header in the first 8 KiB (4-byte aligned), or -1. */
static long find_header(const struct vmm__image *img, struct mb_header *h)
{
	size_t lim = img->len < MB_SEARCH ? img->len : MB_SEARCH;

	for (size_t off = 0; off + 12 <= lim; off += 4) {
		memset(h, 0, sizeof(*h));
		memcpy(h, img->data + off, off + sizeof(*h) <= img->len ? sizeof(*h) : 12);
		if (h->magic == MB_MAGIC && h->magic + h->flags + h->checksum == 0)
			return (long)off;
	}
	return -1;
}

int vmm__multiboot_detect(const struct vmm__image *img)
{
	struct mb_header h;

	return find_header(img, &h) >= 0;
}

static int load_aout_kludge(struct vmm_vm *vm, const struct vmm__image *img, long hoff,
			    const struct mb_header *h, uint64_t *end)
{
	uint64_t file_off, load_len, mem_end;
	uint8_t *dst;

	if ((size_t)hoff + sizeof(*h) > img->len || h->header_addr < h->load_addr ||
	    h->header_addr - h->load_addr > (uint64_t)hoff)
		return vmm__err(VMM_EFORMAT, "multiboot: inconsistent header/load addresses");
	file_off = hoff - (h->header_addr - h->load_addr);
	load_len = h->load_end_addr ? (uint64_t)h->load_end_addr - h->load_addr
				    : img->len - file_off;
	if (h->load_end_addr && h->load_end_addr < h->load_addr)
		return vmm__err(VMM_EFORMAT, "multiboot: load_end_addr below load_addr");
	if (load_len > img->len - file_off)
		return vmm__err(VMM_EFORMAT, "multiboot: load range beyond the file");
	mem_end = h->bss_end_addr > h->load_addr + load_len ? h->bss_end_addr
							    : h->load_addr + load_len;
	if (h->load_addr < VMM_KERNEL_MIN_ADDR)
		return vmm__err(VMM_EFORMAT, "multiboot: load address below 1 MiB");
	dst = vmm__memory_gpa(&vm->mem, h->load_addr, mem_end - h->load_addr);
	if (!dst)
		return vmm__err(VMM_ETOOBIG, "multiboot image does not fit in RAM");
	memcpy(dst, img->data + file_off, load_len);
	memset(dst + load_len, 0, mem_end - h->load_addr - load_len);
	*end = mem_end;
	return 0;
}

static int build_mbi(struct vmm_vm *vm, uint64_t initrd_addr, size_t initrd_len, int has_initrd)
{
	struct vmm__e820 e820[8];
	uint32_t n = vmm__boot_e820(vm, e820, 8);
	uint8_t *base = vmm__memory_gpa(&vm->mem, VMM_BOOT_MBI, 0x1000);
	char *cmdline = vmm__memory_gpa(&vm->mem, VMM_BOOT_CMDLINE, VMM_CMDLINE_MAX);
	uint64_t low = vmm__memory_low_end(&vm->mem);

	if (!base || !cmdline)
		return vmm__err(VMM_ETOOBIG, "no RAM for the multiboot information");
	/* One page: the structure, then the memory map, the module list and strings. */
	struct mbi *mbi = (struct mbi *)base;
	struct mb_mmap_entry *mm = (struct mb_mmap_entry *)(base + 0x100);
	struct mb_module *mod = (struct mb_module *)(base + 0x300);
	char *strings = (char *)(base + 0x400);
	memset(base, 0, 0x1000);
	mbi->flags = MBI_MEM | MBI_CMDLINE | MBI_MMAP | MBI_LOADER;
	mbi->mem_lower = VMM_LOW_RAM_END >> 10;
	mbi->mem_upper = (uint32_t)((low - 0x100000) >> 10);
	strcpy(cmdline, vm->cmdline);
	mbi->cmdline = VMM_BOOT_CMDLINE;
	for (uint32_t i = 0; i < n; i++)
		mm[i] = (struct mb_mmap_entry){ 20, e820[i].addr, e820[i].size, e820[i].type };
	mbi->mmap_addr = VMM_BOOT_MBI + 0x100;
	mbi->mmap_length = n * sizeof(*mm);
	strcpy(strings, "libvmm");
	mbi->boot_loader_name = VMM_BOOT_MBI + 0x400;
	if (has_initrd) {
		strcpy(strings + 16, "initrd");
		*mod = (struct mb_module){ (uint32_t)initrd_addr,
					   (uint32_t)(initrd_addr + initrd_len),
					   VMM_BOOT_MBI + 0x410, 0 };
		mbi->flags |= MBI_MODS;
		mbi->mods_count = 1;
		mbi->mods_addr = VMM_BOOT_MBI + 0x300;
	}
	return 0;
}

int vmm__multiboot_load(struct vmm_vm *vm, const struct vmm__image *img,
			const struct vmm__image *initrd)
{
	struct mb_header h;
	long hoff = find_header(img, &h);
	uint64_t entry, end = 0, rd_addr = 0;
	int r;

	if (hoff < 0)
		return vmm__err(VMM_EFORMAT, "no multiboot header");
	if (h.flags & MB_FLAGS_REQUIRED_KNOWN & ~MB_FLAGS_SUPPORTED)
		return vmm__err(VMM_EFORMAT, "multiboot: required flags 0x%x not supported",
				h.flags & MB_FLAGS_REQUIRED_KNOWN & ~MB_FLAGS_SUPPORTED);
	if (h.flags & MB_FLAG_AOUT_KLUDGE) {
		r = load_aout_kludge(vm, img, hoff, &h, &end);
		entry = h.entry_addr;
	} else {
		r = vmm__elf_load(vm, img, ELFCLASS32, &entry, &end);
	}
	if (r)
		return r;
	if (!vmm__memory_gpa(&vm->mem, entry, 1) || entry >= (1ull << 32))
		return vmm__err(VMM_EFORMAT, "multiboot entry 0x%llx is not in RAM",
				(unsigned long long)entry);
	/* Modules must stay below 4 GiB: the structure has 32-bit addresses. */
	if (initrd) {
		r = vmm__initrd_place(vm, initrd, (end + VMM_PAGE_SIZE - 1) & ~(VMM_PAGE_SIZE - 1),
				      1ull << 32, &rd_addr);
		if (r)
			return r;
	}
	r = build_mbi(vm, rd_addr, initrd ? initrd->len : 0, initrd != NULL);
	if (r)
		return r;
	return vmm__boot_enter_protected(vm, (uint32_t)entry, MB_BOOT_MAGIC, VMM_BOOT_MBI);
}
