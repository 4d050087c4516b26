/* Guest RAM: one memfd holding all of it, mapped shared once, exposed to KVM as up to two
 * slots around the 32-bit PCI/APIC hole. The memfd lets snapshots write straight from RAM,
 * find never-touched pages with SEEK_DATA, and lets a restore map a file instead. */
#ifndef VMM_MEMORY_H
#define VMM_MEMORY_H

#include <stdint.h>

#define VMM_PAGE_SIZE 4096ull
/* RAM above this is placed at 4 GiB, leaving room for the LAPIC, IOAPIC and TSS. */
#define VMM_MEM_HOLE_START 0xC0000000ull
#define VMM_MEM_HOLE_END 0x100000000ull
#define VMM_MEM_REGIONS_MAX 2

struct vmm__mem_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t offset; /* in the memfd and in host */
	uint32_t slot;
};

struct vmm__memory {
	int memfd;
	uint8_t *host; /* the whole memfd, MAP_SHARED */
	uint64_t size;
	uint32_t nregions;
	struct vmm__mem_region regions[VMM_MEM_REGIONS_MAX];
	uint32_t slot_flags; /* KVM_MEM_LOG_DIRTY_PAGES while dirty tracking */
};

/* Lays out and allocates RAM (not yet given to KVM). */
int vmm__memory_init(struct vmm__memory *m, uint64_t size);
/* Lays out RAM as a private copy-on-write mapping of fd at offset (a snapshot's RAM
 * image): pages load from the file on first touch and writes stay in this process. There
 * is no memfd then (memfd = -1). */
int vmm__memory_init_file(struct vmm__memory *m, uint64_t size, int fd, uint64_t offset);
/* Registers every region as a KVM memory slot with the current slot_flags. */
int vmm__memory_map(struct vmm__memory *m, int vm_fd);
void vmm__memory_free(struct vmm__memory *m);
/* Host pointer for [gpa, gpa+len), or NULL if the range is not entirely in one region. */
void *vmm__memory_gpa(const struct vmm__memory *m, uint64_t gpa, uint64_t len);
/* Top of RAM below the hole (end of region 0). */
uint64_t vmm__memory_low_end(const struct vmm__memory *m);

#endif
