/* A snapshot's RAM pages into its file (snapshot_ram_writer.h). */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <xxhash.h>

#include "libvmm/bitmap.h"
#include "libvmm/error_internal.h"
#include "libvmm/memory.h"
#include "migrate/ram.h"
#include "migrate/snapshot_file.h"
#include "migrate/snapshot_ram_writer.h"
#include "migrate/xport.h"

#define RUN_PAGES 256 /* largest single write: 1 MiB */

int vmm__snap_ram_writer_init(struct vmm__snap_ram_writer *w, const uint8_t *host,
			      uint64_t npages, int image, struct vmm_snapshot_stats *st)
{
	uint8_t zero[VMM_PAGE_SIZE] = { 0 };

	w->host = host;
	w->npages = npages;
	w->image = image;
	w->fd = -1;
	w->st = st;
	w->zero_hash = XXH3_64bits(zero, sizeof(zero));
	if (!image)
		return 0;
	w->hashes = malloc(npages * 8);
	w->written = calloc(vmm__bitmap_words(npages), 8);
	if (!w->hashes || !w->written)
		return vmm__err(VMM_ENOMEM, "snapshot bitmaps");
	for (uint64_t i = 0; i < npages; i++)
		w->hashes[i] = w->zero_hash;
	return 0;
}

void vmm__snap_ram_writer_free(struct vmm__snap_ram_writer *w)
{
	free(w->hashes);
	free(w->written);
	w->hashes = w->written = NULL;
}

/* ---- the image: pages at fixed offsets */

static int queue_run(struct vmm__snap_ram_writer *w, uint64_t first, uint64_t n)
{
	struct iovec iov = { (void *)(w->host + first * VMM_PAGE_SIZE), n * VMM_PAGE_SIZE };

	w->st->ram_bytes += iov.iov_len;
	return vmm__xport_pwritev_queued(w->qx, VMM_SNAP_RAM_OFFSET + first * VMM_PAGE_SIZE, &iov, 1);
}

/* A zero page that leaves the file: punched out if an earlier round wrote it. */
static int drop_zero_page(struct vmm__snap_ram_writer *w, uint64_t p)
{
	if (!vmm__bitmap_test(w->written, p))
		return 0;
	w->written[p / 64] &= ~(1ull << (p % 64));
	if (fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(VMM_SNAP_RAM_OFFSET + p * VMM_PAGE_SIZE), VMM_PAGE_SIZE) < 0)
		return vmm__err_sys(VMM_EIO, "punch a zero page");
	return 0;
}

/* The write run being built: [start, start + len) holds data; the `zeros` zero pages
 * after it join the run (written as zeros) if more data follows within ZERO_GAP_PAGES,
 * because one 4 KiB O_DIRECT write per isolated data page costs far more than writing a
 * few zero pages (measured: half-zero memory saved at 0.3x dd before this). */
#define ZERO_GAP_PAGES 16

struct run {
	uint64_t start, len, zeros;
};

static int run_close(struct vmm__snap_ram_writer *w, struct run *rn)
{
	int r = rn->len ? queue_run(w, rn->start, rn->len) : 0;

	for (uint64_t i = 0; i < rn->zeros && !r; i++)
		r = drop_zero_page(w, rn->start + rn->len + i);
	*rn = (struct run){ 0 };
	return r;
}

/* Writes the pages of [first, first + n) set in pages, hashing each; all-zero pages stay
 * holes unless they fill a short gap inside a run of data. */
static int image_chunk(void *arg, const uint64_t *pages, uint64_t first, uint64_t n)
{
	struct vmm__snap_ram_writer *w = arg;
	struct run rn = { 0 };
	int r = 0;

	for (uint64_t p = first; p < first + n && !r; p++) {
		const uint8_t *pg = w->host + p * VMM_PAGE_SIZE;
		int adjacent = rn.len && p == rn.start + rn.len + rn.zeros;

		if (!vmm__bitmap_test(pages, p)) {
			if (rn.len)
				r = run_close(w, &rn);
			continue;
		}
		if (vmm__page_is_zero(pg)) {
			w->st->zero_pages++;
			w->hashes[p] = w->zero_hash;
			if (adjacent && rn.zeros < ZERO_GAP_PAGES)
				rn.zeros++;
			else if (rn.len)
				r = run_close(w, &rn) ?: drop_zero_page(w, p);
			else
				r = drop_zero_page(w, p);
			continue;
		}
		w->hashes[p] = XXH3_64bits(pg, VMM_PAGE_SIZE);
		w->st->pages_written++;
		if (adjacent && rn.len + rn.zeros < RUN_PAGES) {
			/* the gap's zero pages are written too: they are data in the file now */
			for (uint64_t z = rn.start + rn.len; z < p; z++)
				vmm__bitmap_set(w->written, z);
			rn.len += rn.zeros + 1;
			rn.zeros = 0;
		} else {
			r = run_close(w, &rn);
			rn = (struct run){ p, 1, 0 };
		}
		vmm__bitmap_set(w->written, p);
	}
	if (!r)
		r = run_close(w, &rn);
	return r;
}

/* ---- batches, appended */

static int batch_chunk(void *arg, const uint64_t *pages, uint64_t first, uint64_t n)
{
	struct vmm__snap_ram_writer *w = arg;
	int r = 0;

	for (uint64_t p = first; p < first + n && !r; p++)
		if (vmm__bitmap_test(pages, p))
			r = vmm__ram_tx_add(w->tx, w->sx, p);
	return r;
}

/* ---- the sink */

static int sink_begin(void *ctx, uint32_t round, uint64_t npages, int final)
{
	struct vmm__snap_ram_writer *w = ctx;

	w->pass_bytes0 = w->st->ram_bytes;
	return 0;
}

/* One pass over the set, on disk (or queued to it in order) before it returns. */
static int sink_copy(void *ctx, struct vmm__rounds *rs)
{
	struct vmm__snap_ram_writer *w = ctx;
	int r = vmm__rounds_walk(rs, 0, 1, w->image ? image_chunk : batch_chunk, w);

	if (!r)
		r = w->image ? vmm__xport_drain(w->qx) : vmm__ram_tx_flush(w->tx, w->sx);
	if (!w->image) { /* batches count their own pages */
		const struct vmm__ram_tx_stats *t = vmm__ram_tx_stats(w->tx);

		w->st->pages_written = t->pages - t->zero_pages;
		w->st->zero_pages = t->zero_pages;
		w->st->ram_bytes = t->wire_bytes;
	}
	w->st->rounds++;
	return r;
}

static uint64_t sink_pass_bytes(void *ctx)
{
	struct vmm__snap_ram_writer *w = ctx;

	return w->st->ram_bytes - w->pass_bytes0;
}

static void sink_stable(void *ctx)
{
	struct vmm__snap_ram_writer *w = ctx;

	if (w->tx)
		vmm__ram_tx_set_stable(w->tx, 1);
}

void vmm__snap_ram_writer_sink(struct vmm__snap_ram_writer *w, struct vmm__rounds_sink *sink)
{
	*sink = (struct vmm__rounds_sink){
		.ctx = w,
		.begin = sink_begin,
		.copy = sink_copy,
		.pass_bytes = sink_pass_bytes,
		.stable = sink_stable,
	};
}
