/* RAM batches: the unit in which pages travel in a stream. A batch names up to
 * VMM_BATCH_PAGES pages (delta-encoded page numbers), marks the all-zero ones in a bitmap
 * (zero pages travel as a bit, never as 4096 zeros) and carries the rest raw or as one
 * zstd frame. Raw pages go from guest RAM to the transport without a copy and are received
 * straight into guest RAM. Page numbers index the VM's RAM in memfd order (offset / 4096).
 *
 * On the wire (little-endian), after the record header:
 *   struct vmm__batch_hdr | page numbers (LEB128 deltas) | zero bitmap | data
 * The checksum (XXH3) covers the page numbers and the bitmap, and the page data too when
 * VMM_BATCH_HASHED is set (the sender read the pages from a stable copy: compressed
 * batches, or a paused guest). */
#ifndef VMM_RAM_H
#define VMM_RAM_H

#include <stddef.h>
#include <stdint.h>

#include "migrate/xport.h"

#define VMM_BATCH_PAGES 256
#define VMM_BATCH_ZSTD 0x1u
#define VMM_BATCH_HASHED 0x2u

struct vmm__batch_hdr {
	uint32_t count;
	uint32_t flags;
	uint32_t idx_len;  /* bytes of page numbers */
	uint32_t data_len; /* bytes of data on the wire */
	uint64_t checksum;
} __attribute__((packed));

/* OFF sends raw pages straight from guest RAM; COPY stages them first so they are hashed
 * (files, where nothing else checks them); ZSTD always compresses; AUTO keeps compression
 * only for batches it shrinks. */
enum vmm__compress {
	VMM_COMPRESS_OFF = 0,
	VMM_COMPRESS_ZSTD = 1,
	VMM_COMPRESS_AUTO = 2,
	VMM_COMPRESS_COPY = 3,
};

struct vmm__ram_tx_stats {
	uint64_t pages;      /* pages named in batches */
	uint64_t zero_pages; /* of which sent as a bit */
	uint64_t raw_bytes;  /* page data before compression */
	uint64_t wire_bytes; /* everything written, headers included */
};

/* Sender side: batches pages of one VM's RAM into records. */
struct vmm__ram_tx;
int vmm__ram_tx_new(const uint8_t *ram, uint64_t npages, enum vmm__compress mode, int level,
		    struct vmm__ram_tx **out);
void vmm__ram_tx_free(struct vmm__ram_tx *tx);
/* Whether page data is hashed (set when the guest is paused; compressed data always is). */
void vmm__ram_tx_set_stable(struct vmm__ram_tx *tx, int stable);
/* Adds page p to the current batch, sending the batch through xp when it is full. */
int vmm__ram_tx_add(struct vmm__ram_tx *tx, struct vmm__xport *xp, uint64_t page);
/* Sends the partial batch, if any. */
int vmm__ram_tx_flush(struct vmm__ram_tx *tx, struct vmm__xport *xp);
const struct vmm__ram_tx_stats *vmm__ram_tx_stats(const struct vmm__ram_tx *tx);

/* Receiver side: applies RAM records to guest RAM. fresh: the RAM is known to be all zero
 * (a new VM), so zero pages need no write. ram NULL: only verify (snapshot-info). */
struct vmm__ram_rx;
int vmm__ram_rx_new(uint8_t *ram, uint64_t npages, int fresh, struct vmm__ram_rx **out);
void vmm__ram_rx_free(struct vmm__ram_rx *rx);
/* Makes rx as vmm__ram_rx_new() left it (nothing applied, no page written; a fresh rx
 * again takes its RAM as all zero), keeping its buffers and zstd context: the stream fuzzer
 * applies millions of streams without paying for 2 MiB of buffers each time. */
void vmm__ram_rx_reset(struct vmm__ram_rx *rx);
/* on: vmm__ram_rx_free keeps the buffers of one freed receiver (about 2 MiB and a zstd
 * context) and the next vmm__ram_rx_new takes them instead of allocating; off (the
 * default, and what turning it off does): none kept, the kept ones freed. For a process
 * that makes receivers back to back: the receiver fuzzer builds one per input, and the
 * allocation and release of those buffers (mapped and unmapped under ASan each time) was
 * two thirds of its time. Any thread. */
void vmm__ram_rx_keep_idle(int on);
/* Reads the payload of a RAM record whose header was just read, and applies it. Every page
 * number is checked against npages and must increase within a batch. Errors: VMM_EPROTO,
 * VMM_ECORRUPT (checksum), transport errors. */
int vmm__ram_rx_apply(struct vmm__ram_rx *rx, struct vmm__xport *xp, uint32_t rec_len);
uint64_t vmm__ram_rx_pages(const struct vmm__ram_rx *rx);
/* The last batch applied: its last page (returned), its page count and how many of them
 * were zero pages (the receiver's populate-ahead follows these). */
uint64_t vmm__ram_rx_last_batch(const struct vmm__ram_rx *rx, uint32_t *count, uint32_t *zeros);
/* 1 if this receiver wrote page (always 1 for RAM not known fresh). */
int vmm__ram_rx_written(const struct vmm__ram_rx *rx, uint64_t page);

/* 1 if the 4 KiB at p are all zero. */
int vmm__page_is_zero(const void *p);

#endif
