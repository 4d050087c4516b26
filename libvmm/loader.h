/* Guest image loaders. Each validates its input completely before writing guest RAM:
 * every offset and size is checked against the file and against RAM. */
#ifndef VMM_LOADER_H
#define VMM_LOADER_H

#include <stddef.h>
#include <stdint.h>

struct vmm_vm;

struct vmm__image {
	const uint8_t *data;
	size_t len;
};

/* Loads PT_LOAD segments of an ELF of the given class (1: ELF32, 2: ELF64) at their
 * physical addresses. *entry is e_entry, *end the highest byte loaded. */
int vmm__elf_load(struct vmm_vm *vm, const struct vmm__image *img, int elf_class,
		  uint64_t *entry, uint64_t *end);

/* Returns 1 if img carries a multiboot v1 header. */
int vmm__multiboot_detect(const struct vmm__image *img);
int vmm__multiboot_load(struct vmm_vm *vm, const struct vmm__image *img,
			const struct vmm__image *initrd);

/* Returns 1 if img is a Linux bzImage. */
int vmm__linux_detect(const struct vmm__image *img);
int vmm__linux_load_bzimage(struct vmm_vm *vm, const struct vmm__image *img,
			    const struct vmm__image *initrd);
/* ELF64 kernel (vmlinux style): long mode, RSI = a boot_params built from scratch. */
int vmm__linux_load_elf64(struct vmm_vm *vm, const struct vmm__image *img,
			  const struct vmm__image *initrd);

/* Copies initrd to the highest page-aligned spot in low RAM above min_addr and below
 * max_end. Returns its address in *addr. */
int vmm__initrd_place(struct vmm_vm *vm, const struct vmm__image *initrd, uint64_t min_addr,
		      uint64_t max_end, uint64_t *addr);

#endif
