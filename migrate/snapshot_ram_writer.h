/* A snapshot's RAM as the rounds engine's sink (rounds.h): either an image, every page at
 * its fixed offset with its XXH3 kept for the file's hash table, or batches appended one
 * after another (compressed or incremental snapshots). */
#ifndef VMM_SNAPSHOT_RAM_WRITER_H
#define VMM_SNAPSHOT_RAM_WRITER_H

#include <stdint.h>

#include "migrate/rounds.h"
#include "vmm/snapshot.h"

struct vmm__xport;
struct vmm__ram_tx;

struct vmm__snap_ram_writer {
	const uint8_t *host; /* guest RAM */
	uint64_t npages;
	int image;           /* fixed offsets, else batches */
	int fd;              /* the file, to punch out pages that became zero */
	struct vmm__xport *qx; /* image: queued writes (O_DIRECT where allowed) */
	struct vmm__xport *sx; /* batches: sequential writes */
	struct vmm__ram_tx *tx; /* batches */
	uint64_t *hashes;    /* image: XXH3 of each page as last written */
	uint64_t *written;   /* image: pages holding data in the file */
	uint64_t zero_hash;
	struct vmm_snapshot_stats *st; /* ram_bytes, pages_written, zero_pages, rounds */
	uint64_t pass_bytes0;  /* st->ram_bytes as the pass began */
};

/* Allocates the image's hash table and written set (every page a hole, hashed as zeros). */
int vmm__snap_ram_writer_init(struct vmm__snap_ram_writer *w, const uint8_t *host,
			      uint64_t npages, int image, struct vmm_snapshot_stats *st);
void vmm__snap_ram_writer_free(struct vmm__snap_ram_writer *w);
/* The sink writing into w (its files and tx set). */
void vmm__snap_ram_writer_sink(struct vmm__snap_ram_writer *w, struct vmm__rounds_sink *sink);

#endif
