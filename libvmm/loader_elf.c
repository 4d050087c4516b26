/* ELF32/ELF64 PT_LOAD segments into guest RAM at their physical addresses. */
#include <elf.h>
#include <string.h>

#include "libvmm/boot.h"
#include "libvmm/error_internal.h"
#include "libvmm/loader.h"
#include "libvmm/vm_internal.h"

#define ELF_PHNUM_MAX 64

struct seg {
	uint64_t offset, paddr, filesz, memsz;
};

/* Reads program header i into a class-independent form, checking it lies in the file. */
static int read_phdr(const struct vmm__image *img, int cls, uint64_t phoff, uint32_t i,
		     uint32_t *type, struct seg *s)
{
	size_t sz = cls == ELFCLASS64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	uint64_t off = phoff + (uint64_t)i * sz;

	if (phoff > img->len || off > img->len || img->len - off < sz)
		return vmm__err(VMM_EFORMAT, "ELF program header %u outside the file", i);
	if (cls == ELFCLASS64) {
		Elf64_Phdr p;

		memcpy(&p, img->data + off, sizeof(p));
		*type = p.p_type;
		*s = (struct seg){ p.p_offset, p.p_paddr, p.p_filesz, p.p_memsz };
	} else {
		Elf32_Phdr p;

		memcpy(&p, img->data + off, sizeof(p));
		*type = p.p_type;
		*s = (struct seg){ p.p_offset, p.p_paddr, p.p_filesz, p.p_memsz };
	}
	return 0;
}

static int check_segment(struct vmm_vm *vm, const struct vmm__image *img, const struct seg *s,
			 uint32_t i)
{
	if (s->filesz > s->memsz || s->offset > img->len || s->filesz > img->len - s->offset)
		return vmm__err(VMM_EFORMAT, "ELF segment %u: file range outside the file", i);
	if (s->paddr + s->memsz < s->paddr)
		return vmm__err(VMM_EFORMAT, "ELF segment %u: address range wraps", i);
	if (s->paddr < VMM_KERNEL_MIN_ADDR)
		return vmm__err(VMM_EFORMAT, "ELF segment %u at 0x%llx: below 1 MiB", i,
				(unsigned long long)s->paddr);
	if (!vmm__memory_gpa(&vm->mem, s->paddr, s->memsz))
		return vmm__err(VMM_ETOOBIG,
				"ELF segment %u (0x%llx+0x%llx) does not fit in %llu MiB of RAM", i,
				(unsigned long long)s->paddr, (unsigned long long)s->memsz,
				(unsigned long long)(vm->mem.size >> 20));
	return 0;
}

int vmm__elf_load(struct vmm_vm *vm, const struct vmm__image *img, int cls, uint64_t *entry,
		  uint64_t *end)
{
	uint64_t phoff;
	uint32_t phnum, loaded = 0;
	int r;

	if (cls == ELFCLASS64) {
		Elf64_Ehdr eh;

		if (img->len < sizeof(eh))
			return vmm__err(VMM_EFORMAT, "ELF64 header truncated");
		memcpy(&eh, img->data, sizeof(eh));
		if (eh.e_machine != EM_X86_64 || eh.e_phentsize != sizeof(Elf64_Phdr))
			return vmm__err(VMM_EFORMAT, "not an x86-64 ELF64 executable");
		phoff = eh.e_phoff, phnum = eh.e_phnum, *entry = eh.e_entry;
	} else {
		Elf32_Ehdr eh;

		if (img->len < sizeof(eh))
			return vmm__err(VMM_EFORMAT, "ELF32 header truncated");
		memcpy(&eh, img->data, sizeof(eh));
		if (eh.e_machine != EM_386 || eh.e_phentsize != sizeof(Elf32_Phdr))
			return vmm__err(VMM_EFORMAT, "not an i386 ELF32 executable");
		phoff = eh.e_phoff, phnum = eh.e_phnum, *entry = eh.e_entry;
	}
	if (img->data[EI_DATA] != ELFDATA2LSB || phnum == 0 || phnum > ELF_PHNUM_MAX)
		return vmm__err(VMM_EFORMAT, "ELF: not little-endian or %u program headers", phnum);
	*end = 0;
	/* Validate every segment before touching RAM, so a bad image writes nothing. */
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < phnum; i++) {
			uint32_t type = 0;
			struct seg s = { 0 };

			r = read_phdr(img, cls, phoff, i, &type, &s);
			if (r)
				return r;
			if (type != PT_LOAD || !s.memsz)
				continue;
			if (pass == 0) {
				r = check_segment(vm, img, &s, i);
				if (r)
					return r;
				loaded++;
				continue;
			}
			uint8_t *dst = vmm__memory_gpa(&vm->mem, s.paddr, s.memsz);

			memcpy(dst, img->data + s.offset, s.filesz);
			memset(dst + s.filesz, 0, s.memsz - s.filesz);
			if (s.paddr + s.memsz > *end)
				*end = s.paddr + s.memsz;
		}
		if (!loaded)
			return vmm__err(VMM_EFORMAT, "ELF has no loadable segment");
	}
	return 0;
}
