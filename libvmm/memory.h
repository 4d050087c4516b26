/* Guest RAM: one memfd holding all of it, mapped shared once, exposed to KVM as up to two
 * slots around the 32-bit PCI/APIC hole. The memfd lets snapshots write straight from RAM,
 * find never-touched pages with SEEK_DATA, and lets a restore map a file instead. */
#ifndef VMM_MEMORY_H
#define VMM_MEMORY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define VMM_PAGE_SIZE 4096ull
/* RAM above this is placed at 4 GiB, leaving room for the LAPIC, IOAPIC and TSS. */
#define VMM_MEM_HOLE_START 0xC0000000ull
#define VMM_MEM_HOLE_END 0x100000000ull
#define VMM_MEM_REGIONS_MAX 2

struct vmm__pager;

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
	/* RAM mapped from a file (lazy restore): that file, held open, and what it was like
	 * when mapped; file_fd = -1 otherwise. */
	int file_fd;
	int file_leased;        /* holds a read lease (F_SETLEASE) on it */
	uint64_t file_need;     /* offset + size: the bytes the mapping reads */
	uint64_t file_size;
	struct timespec file_mtime;
	/* RAM filled on demand from a snapshot through userfaultfd (memory_pager.h), or
	 * NULL. Owned: stopped by vmm__memory_free before RAM is unmapped. */
	struct vmm__pager *pager;
};

/* Lays out and allocates RAM (not yet given to KVM). */
int vmm__memory_init(struct vmm__memory *m, uint64_t size);
/* Lays out RAM as a private copy-on-write mapping of fd at offset (a snapshot's RAM
 * image): pages load from the file on first touch and writes stay in this process. There
 * is no memfd then (memfd = -1). The file must not change while the mapping lives: a page
 * not yet copied would change under the guest, and one past a truncated end raises SIGBUS
 * in whoever touches it. So: VMM_ETRUNCATED if the file is shorter than offset + size;
 * fd is kept (duplicated) with its size and mtime, and a read lease is taken where the
 * file system and our rights allow it (a writer's open then waits, up to the kernel's
 * lease-break-time, and vmm__memory_check sees the break). */
int vmm__memory_init_file(struct vmm__memory *m, uint64_t size, int fd, uint64_t offset);
/* Copies len bytes between buf and RAM at host pointer p (inside m->host). For RAM mapped
 * from a file the copy goes through process_vm_readv/writev, which fail with EFAULT where
 * a plain memcpy would raise SIGBUS (the file was truncated): then VMM_ETRUNCATED or
 * VMM_ECORRUPT as vmm__memory_check says. Any thread. */
int vmm__memory_read(const struct vmm__memory *m, const void *p, void *buf, size_t len);
int vmm__memory_write(const struct vmm__memory *m, void *p, const void *buf, size_t len);
/* Whether RAM can be read safely: 0 for RAM of our own (a memfd; with a pager, none of
 * whose pages failed: else its error, VMM_ECORRUPT for a page whose hash did not match)
 * or a file as it was when mapped; VMM_ETRUNCATED if the file was cut shorter than the
 * mapping, VMM_ECORRUPT if it was written to or someone opened it for writing (the lease
 * broke), with detail. Called before the library itself reads a whole RAM (snapshot,
 * migration), so that a changed file is an error instead of stale pages or a SIGBUS. Any
 * thread. */
int vmm__memory_check(const struct vmm__memory *m);
/* Hands the fresh memfd RAM to a pager loading it from fd at offset (memory_pager.h;
 * hashes taken over). VMM_ESYS if RAM is not a fresh, untouched memfd; VMM_EUNSUPPORTED
 * without userfaultfd. */
int vmm__memory_pager_start(struct vmm__memory *m, int fd, uint64_t offset, uint64_t *hashes,
			    void (*fail)(void *ctx, int err, const char *detail), void *ctx);
/* Post-copy: hands memfd RAM to a pager whose pages come from src (an asynchronous source,
 * memory_pager.h). The pages of have (bit p: page p; NULL: none) hold valid bytes already
 * (hybrid: pre-copy rounds sent them) and stay; every other page is punched out of the
 * memfd first (stale, or never sent) and arrives through vmm__pager_supply. VMM_ESYS if
 * RAM is not a memfd of our own or has a pager; VMM_EUNSUPPORTED without userfaultfd. */
struct vmm__pager_source;
int vmm__memory_postcopy_start(struct vmm__memory *m, const struct vmm__pager_source *src,
				const uint64_t *have,
				void (*fail)(void *ctx, int err, const char *detail), void *ctx);
/* Makes every page of RAM present (a pager loads what it has not yet): afterwards holes in
 * the memfd are zero pages, as vmm__memory_populated assumes. 0 or the pager's failure. */
int vmm__memory_fill(struct vmm__memory *m);
/* Registers every region as a KVM memory slot with the current slot_flags. */
int vmm__memory_map(struct vmm__memory *m, int vm_fd);
void vmm__memory_free(struct vmm__memory *m);
/* Host pointer for [gpa, gpa+len), or NULL if the range is not entirely in one region. */
void *vmm__memory_gpa(const struct vmm__memory *m, uint64_t gpa, uint64_t len);
/* Top of RAM below the hole (end of region 0). */
uint64_t vmm__memory_low_end(const struct vmm__memory *m);

#endif
