/* RAM batch encoding (sender) and decoding (receiver). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>

#include "libvmm/bitmap.h"
#include "libvmm/error_internal.h"
#include "libvmm/memory.h"
#include "migrate/ram.h"
#include "migrate/stream.h"

#define PAGE VMM_PAGE_SIZE
#define IDX_MAX (VMM_BATCH_PAGES * 10) /* LEB128 of a 64-bit delta is at most 10 bytes */
#define BM_LEN(n) (((n) + 7) / 8)

int vmm__page_is_zero(const void *p)
{
	const uint64_t *w = p;
	uint64_t acc = 0;

	/* OR a whole page at a time: the compiler vectorises this, and non-zero pages are
	 * usually caught in the first cache line anyway. */
	for (size_t i = 0; i < 8; i++)
		acc |= w[i];
	if (acc)
		return 0;
	for (size_t i = 8; i < PAGE / 8; i++)
		acc |= w[i];
	return acc == 0;
}

static size_t leb128_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	do {
		p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return n;
}

/* Returns bytes consumed, 0 on malformed input. */
static size_t leb128_get(const uint8_t *p, size_t avail, uint64_t *v)
{
	uint64_t r = 0;

	for (size_t i = 0; i < avail && i < 10; i++) {
		if (i == 9 && p[i] > 1)
			return 0; /* would overflow 64 bits */
		r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = r;
			return i + 1;
		}
	}
	return 0;
}

/* ---- sender */

struct vmm__ram_tx {
	const uint8_t *ram;
	uint64_t npages;
	enum vmm__compress mode;
	int level;
	int stable;
	ZSTD_CCtx *cctx;
	uint64_t pages[VMM_BATCH_PAGES];
	uint32_t n;
	uint8_t idx[IDX_MAX];
	uint8_t bm[BM_LEN(VMM_BATCH_PAGES)];
	uint8_t *stage; /* a stable copy of the non-zero pages (compression) */
	uint8_t *zbuf;
	size_t zcap;
	struct iovec iov[4 + VMM_BATCH_PAGES];
	struct vmm__ram_tx_stats stats;
};

int vmm__ram_tx_new(const uint8_t *ram, uint64_t npages, enum vmm__compress mode, int level,
		    struct vmm__ram_tx **out)
{
	struct vmm__ram_tx *tx = calloc(1, sizeof(*tx));

	if (!tx)
		return vmm__err(VMM_ENOMEM, "RAM sender");
	tx->ram = ram;
	tx->npages = npages;
	tx->mode = mode;
	tx->level = level ? level : 1;
	if (mode != VMM_COMPRESS_OFF) {
		tx->cctx = ZSTD_createCCtx();
		tx->stage = malloc(VMM_BATCH_PAGES * PAGE);
		tx->zcap = ZSTD_compressBound(VMM_BATCH_PAGES * PAGE);
		tx->zbuf = malloc(tx->zcap);
		if (!tx->cctx || !tx->stage || !tx->zbuf) {
			vmm__ram_tx_free(tx);
			return vmm__err(VMM_ENOMEM, "zstd context");
		}
		ZSTD_CCtx_setParameter(tx->cctx, ZSTD_c_compressionLevel, tx->level);
	}
	*out = tx;
	return 0;
}

void vmm__ram_tx_free(struct vmm__ram_tx *tx)
{
	if (!tx)
		return;
	ZSTD_freeCCtx(tx->cctx);
	free(tx->stage);
	free(tx->zbuf);
	free(tx);
}

void vmm__ram_tx_set_stable(struct vmm__ram_tx *tx, int stable)
{
	tx->stable = stable;
}

const struct vmm__ram_tx_stats *vmm__ram_tx_stats(const struct vmm__ram_tx *tx)
{
	return &tx->stats;
}

/* Appends page p to the iovec list, merging with the previous vector when adjacent; the
 * first `first` vectors are headers, never merged into (the sender's are filled in after
 * its pages: comparing against them did arithmetic on a NULL base, clang's UBSan says). */
static int iov_add(struct iovec *iov, int n, int first, const uint8_t *p)
{
	if (n > first && (const uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == p) {
		iov[n - 1].iov_len += PAGE;
		return n;
	}
	iov[n].iov_base = (void *)p;
	iov[n].iov_len = PAGE;
	return n + 1;
}

/* Compresses the staged pages; returns 1 if the frame is worth sending. */
static int compress_stage(struct vmm__ram_tx *tx, size_t raw, size_t *zlen)
{
	size_t r;

	if (tx->mode == VMM_COMPRESS_COPY)
		return 0;
	r = ZSTD_compress2(tx->cctx, tx->zbuf, tx->zcap, tx->stage, raw);

	if (ZSTD_isError(r))
		return 0;
	*zlen = r;
	/* auto: keep compression only for batches it shrinks by at least an eighth */
	return tx->mode == VMM_COMPRESS_ZSTD || (tx->mode == VMM_COMPRESS_AUTO && r < raw - raw / 8);
}

static int send_batch(struct vmm__ram_tx *tx, struct vmm__xport *xp)
{
	struct vmm__rec_hdr rh = { VMM_REC_HDR_MAGIC, VMM_REC_RAM, 0, 0 };
	struct vmm__batch_hdr bh = { .count = tx->n };
	size_t idx_len = 0, raw = 0, zlen = 0;
	XXH3_state_t hs;
	int niov = 4, r;

	memset(tx->bm, 0, sizeof(tx->bm));
	for (uint32_t i = 0; i < tx->n; i++) {
		const uint8_t *p = tx->ram + tx->pages[i] * PAGE;

		idx_len += leb128_put(tx->idx + idx_len, i ? tx->pages[i] - tx->pages[i - 1]
							     : tx->pages[0]);
		if (vmm__page_is_zero(p)) {
			tx->bm[i / 8] |= (uint8_t)(1u << (i % 8));
			tx->stats.zero_pages++;
			continue;
		}
		if (tx->stage)
			memcpy(tx->stage + raw, p, PAGE);
		else
			niov = iov_add(tx->iov, niov, 4, p);
		raw += PAGE;
	}
	XXH3_64bits_reset(&hs);
	XXH3_64bits_update(&hs, tx->idx, idx_len);
	XXH3_64bits_update(&hs, tx->bm, BM_LEN(tx->n));
	if (tx->stage && raw) {
		/* A stable copy: hash it, then send it compressed or raw. */
		XXH3_64bits_update(&hs, tx->stage, raw);
		bh.flags |= VMM_BATCH_HASHED;
		if (compress_stage(tx, raw, &zlen)) {
			bh.flags |= VMM_BATCH_ZSTD;
			tx->iov[niov++] = (struct iovec){ tx->zbuf, zlen };
		} else {
			tx->iov[niov++] = (struct iovec){ tx->stage, raw };
		}
	} else if (tx->stable) {
		for (int i = 4; i < niov; i++)
			XXH3_64bits_update(&hs, tx->iov[i].iov_base, tx->iov[i].iov_len);
		bh.flags |= VMM_BATCH_HASHED;
	}
	bh.idx_len = (uint32_t)idx_len;
	bh.data_len = (uint32_t)(bh.flags & VMM_BATCH_ZSTD ? zlen : raw);
	bh.checksum = XXH3_64bits_digest(&hs);
	rh.len = (uint32_t)(sizeof(bh) + idx_len + BM_LEN(tx->n) + bh.data_len);
	tx->iov[0] = (struct iovec){ &rh, sizeof(rh) };
	tx->iov[1] = (struct iovec){ &bh, sizeof(bh) };
	tx->iov[2] = (struct iovec){ tx->idx, idx_len };
	tx->iov[3] = (struct iovec){ tx->bm, BM_LEN(tx->n) };
	r = vmm__xport_writev(xp, tx->iov, niov);
	if (r)
		return r;
	tx->stats.pages += tx->n;
	tx->stats.raw_bytes += raw;
	tx->stats.wire_bytes += sizeof(rh) + rh.len;
	tx->n = 0;
	return 0;
}

int vmm__ram_tx_add(struct vmm__ram_tx *tx, struct vmm__xport *xp, uint64_t page)
{
	int r;

	if (page >= tx->npages)
		return vmm__err(VMM_EINVAL, "page %llu beyond RAM", (unsigned long long)page);
	/* Page numbers are delta-encoded and must increase within a batch. */
	if (tx->n && page <= tx->pages[tx->n - 1]) {
		r = send_batch(tx, xp);
		if (r)
			return r;
	}
	tx->pages[tx->n++] = page;
	return tx->n == VMM_BATCH_PAGES ? send_batch(tx, xp) : 0;
}

int vmm__ram_tx_flush(struct vmm__ram_tx *tx, struct vmm__xport *xp)
{
	return tx->n ? send_batch(tx, xp) : 0;
}

/* ---- receiver */

struct vmm__ram_rx {
	uint8_t *ram;
	uint64_t npages;
	int fresh;
	uint64_t *written; /* fresh RAM: pages this receiver wrote, so a later zero page is
			    * only cleared where it is not zero already */
	uint64_t applied;
	uint32_t last_count, last_zeros; /* the last batch applied */
	ZSTD_DCtx *dctx;
	uint8_t meta[IDX_MAX + BM_LEN(VMM_BATCH_PAGES)];
	uint64_t pages[VMM_BATCH_PAGES];
	uint8_t *stage;
	uint8_t *zbuf;
	size_t zcap;
	struct iovec iov[VMM_BATCH_PAGES];
};

/* The decoding buffers of one receiver that has been freed (zstd context, staging and
 * compressed-data buffers: about 2 MiB), kept for the next vmm__ram_rx_new while
 * vmm__ram_rx_keep_idle is on. A lock, not a lock-free slot: receivers are made and freed
 * a few times per migration or snapshot, from any thread. */
static struct {
	pthread_mutex_t lock;
	int on;
	ZSTD_DCtx *dctx;
	uint8_t *stage;
	uint8_t *zbuf;
} idle = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void idle_take(struct vmm__ram_rx *rx)
{
	pthread_mutex_lock(&idle.lock);
	if (idle.dctx) {
		rx->dctx = idle.dctx, rx->stage = idle.stage, rx->zbuf = idle.zbuf;
		idle.dctx = NULL, idle.stage = NULL, idle.zbuf = NULL;
	}
	pthread_mutex_unlock(&idle.lock);
	/* A new frame resets a context anyway; this also drops anything a failed frame of
	 * the previous owner left. */
	if (rx->dctx)
		ZSTD_DCtx_reset(rx->dctx, ZSTD_reset_session_and_parameters);
}

/* 1 if rx's buffers were parked (they are the idle ones now), 0 if the caller frees them. */
static int idle_park(struct vmm__ram_rx *rx)
{
	int parked = 0;

	if (!rx->dctx || !rx->stage || !rx->zbuf)
		return 0;
	pthread_mutex_lock(&idle.lock);
	if (idle.on && !idle.dctx) {
		idle.dctx = rx->dctx, idle.stage = rx->stage, idle.zbuf = rx->zbuf;
		parked = 1;
	}
	pthread_mutex_unlock(&idle.lock);
	return parked;
}

void vmm__ram_rx_keep_idle(int on)
{
	ZSTD_DCtx *dctx;
	uint8_t *stage, *zbuf;

	pthread_mutex_lock(&idle.lock);
	idle.on = on;
	dctx = on ? NULL : idle.dctx;
	stage = on ? NULL : idle.stage;
	zbuf = on ? NULL : idle.zbuf;
	if (!on)
		idle.dctx = NULL, idle.stage = NULL, idle.zbuf = NULL;
	pthread_mutex_unlock(&idle.lock);
	ZSTD_freeDCtx(dctx);
	free(stage);
	free(zbuf);
}

int vmm__ram_rx_new(uint8_t *ram, uint64_t npages, int fresh, struct vmm__ram_rx **out)
{
	struct vmm__ram_rx *rx = calloc(1, sizeof(*rx));

	if (!rx)
		return vmm__err(VMM_ENOMEM, "RAM receiver");
	rx->ram = ram;
	rx->npages = npages;
	rx->fresh = fresh;
	if (fresh && ram) {
		rx->written = calloc((npages + 63) / 64, 8);
		if (!rx->written) {
			free(rx);
			return vmm__err(VMM_ENOMEM, "RAM receiver bitmap");
		}
	}
	rx->zcap = ZSTD_compressBound(VMM_BATCH_PAGES * PAGE);
	idle_take(rx);
	if (!rx->dctx) {
		rx->dctx = ZSTD_createDCtx();
		rx->stage = malloc(VMM_BATCH_PAGES * PAGE);
		rx->zbuf = malloc(rx->zcap);
	}
	if (!rx->dctx || !rx->stage || !rx->zbuf) {
		vmm__ram_rx_free(rx);
		return vmm__err(VMM_ENOMEM, "RAM receiver buffers");
	}
	*out = rx;
	return 0;
}

void vmm__ram_rx_free(struct vmm__ram_rx *rx)
{
	if (!rx)
		return;
	if (!idle_park(rx)) {
		ZSTD_freeDCtx(rx->dctx);
		free(rx->stage);
		free(rx->zbuf);
	}
	free(rx->written);
	free(rx);
}

void vmm__ram_rx_reset(struct vmm__ram_rx *rx)
{
	if (rx->written)
		memset(rx->written, 0, (rx->npages + 63) / 64 * 8);
	rx->applied = 0;
	rx->last_count = rx->last_zeros = 0;
}

uint64_t vmm__ram_rx_pages(const struct vmm__ram_rx *rx)
{
	return rx->applied;
}

uint64_t vmm__ram_rx_last_batch(const struct vmm__ram_rx *rx, uint32_t *count, uint32_t *zeros)
{
	*count = rx->last_count;
	*zeros = rx->last_zeros;
	return rx->last_count ? rx->pages[rx->last_count - 1] : 0;
}

int vmm__ram_rx_written(const struct vmm__ram_rx *rx, uint64_t page)
{
	return !rx->written || page >= rx->npages || vmm__bitmap_test(rx->written, page);
}

/* Decodes and checks the page numbers; returns the number of non-zero pages or < 0. */
static int decode_index(struct vmm__ram_rx *rx, const struct vmm__batch_hdr *bh)
{
	const uint8_t *bm = rx->meta + bh->idx_len;
	size_t pos = 0;
	int nonzero = 0;

	for (uint32_t i = 0; i < bh->count; i++) {
		uint64_t d;
		size_t n = leb128_get(rx->meta + pos, bh->idx_len - pos, &d);

		if (!n)
			return vmm__err(VMM_EPROTO, "RAM batch: malformed page number %u", i);
		pos += n;
		if (i && (d == 0 || d > rx->npages))
			return vmm__err(VMM_EPROTO, "RAM batch: page numbers must increase");
		rx->pages[i] = i ? rx->pages[i - 1] + d : d;
		if (rx->pages[i] >= rx->npages)
			return vmm__err(VMM_EPROTO, "RAM batch: page %llu beyond RAM (%llu pages)",
					(unsigned long long)rx->pages[i],
					(unsigned long long)rx->npages);
		nonzero += !(bm[i / 8] & (1u << (i % 8)));
	}
	if (pos != bh->idx_len)
		return vmm__err(VMM_EPROTO, "RAM batch: %zu stray bytes after the page numbers",
				bh->idx_len - pos);
	return nonzero;
}

static int read_zstd(struct vmm__ram_rx *rx, struct vmm__xport *xp, const struct vmm__batch_hdr *bh,
		     size_t raw)
{
	size_t got;
	int r;

	if (bh->data_len > rx->zcap)
		return vmm__err(VMM_EPROTO, "RAM batch: compressed data of %u bytes", bh->data_len);
	r = vmm__xport_read(xp, rx->zbuf, bh->data_len);
	if (r)
		return r;
	got = ZSTD_decompressDCtx(rx->dctx, rx->stage, raw, rx->zbuf, bh->data_len);
	if (ZSTD_isError(got) || got != raw)
		return vmm__err(VMM_ECORRUPT, "RAM batch: zstd data does not decompress to %zu bytes",
				raw);
	return 0;
}

int vmm__ram_rx_apply(struct vmm__ram_rx *rx, struct vmm__xport *xp, uint32_t rec_len)
{
	struct vmm__batch_hdr bh = { 0 };
	const uint8_t *bm;
	XXH3_state_t hs;
	size_t meta_len, raw;
	int nonzero, niov = 0, r;

	if (rec_len < sizeof(bh))
		return vmm__err(VMM_EPROTO, "RAM record of %u bytes", rec_len);
	r = vmm__xport_read(xp, &bh, sizeof(bh));
	if (r)
		return r;
	meta_len = (size_t)bh.idx_len + BM_LEN(bh.count);
	if (!bh.count || bh.count > VMM_BATCH_PAGES || bh.idx_len > IDX_MAX ||
	    (bh.flags & ~(VMM_BATCH_ZSTD | VMM_BATCH_HASHED)) ||
	    (uint64_t)sizeof(bh) + meta_len + bh.data_len != rec_len)
		return vmm__err(VMM_EPROTO, "RAM batch header inconsistent (count %u, flags 0x%x)",
				bh.count, bh.flags);
	r = vmm__xport_read(xp, rx->meta, meta_len);
	if (r)
		return r;
	nonzero = decode_index(rx, &bh);
	if (nonzero < 0)
		return nonzero;
	raw = (size_t)nonzero * PAGE;
	if (!(bh.flags & VMM_BATCH_ZSTD) && bh.data_len != raw)
		return vmm__err(VMM_EPROTO, "RAM batch: %u data bytes for %d pages", bh.data_len,
				nonzero);
	XXH3_64bits_reset(&hs);
	XXH3_64bits_update(&hs, rx->meta, meta_len);
	/* Unhashed data: check the index before any page is written. */
	if (!(bh.flags & VMM_BATCH_HASHED) && XXH3_64bits_digest(&hs) != bh.checksum)
		return vmm__err(VMM_ECORRUPT, "RAM batch: checksum mismatch");
	bm = rx->meta + bh.idx_len;
	if (bh.flags & VMM_BATCH_ZSTD) {
		r = read_zstd(rx, xp, &bh, raw);
		if (r)
			return r;
		XXH3_64bits_update(&hs, rx->stage, raw);
	}
	for (uint32_t i = 0, k = 0; i < bh.count; i++) {
		/* Verify-only: raw pages land in the staging buffer and are dropped. */
		uint8_t *dst = rx->ram ? rx->ram + rx->pages[i] * PAGE : rx->stage + (size_t)k * PAGE;

		if (!rx->ram) {
			if (!(bm[i / 8] & (1u << (i % 8))) && !(bh.flags & VMM_BATCH_ZSTD)) {
				niov = iov_add(rx->iov, niov, 0, dst);
				k++;
			}
			continue;
		}
		uint64_t p = rx->pages[i];

		if (bm[i / 8] & (1u << (i % 8))) {
			/* Untouched fresh memory is zero already, and stays unallocated. */
			if (!rx->written || vmm__bitmap_test(rx->written, p))
				memset(dst, 0, PAGE);
			continue;
		}
		if (rx->written)
			vmm__bitmap_set(rx->written, p);
		if (bh.flags & VMM_BATCH_ZSTD) {
			memcpy(dst, rx->stage + (size_t)k++ * PAGE, PAGE);
		} else {
			niov = iov_add(rx->iov, niov, 0, dst);
		}
	}
	if (niov) {
		/* Raw pages land straight in guest RAM. */
		r = vmm__xport_readv(xp, rx->iov, niov);
		if (r)
			return r;
		if (bh.flags & VMM_BATCH_HASHED)
			for (int i = 0; i < niov; i++)
				XXH3_64bits_update(&hs, rx->iov[i].iov_base, rx->iov[i].iov_len);
	}
	if ((bh.flags & VMM_BATCH_HASHED) && XXH3_64bits_digest(&hs) != bh.checksum)
		return vmm__err(VMM_ECORRUPT, "RAM batch: checksum mismatch");
	rx->applied += bh.count;
	rx->last_count = bh.count;
	rx->last_zeros = bh.count - (uint32_t)nonzero;
	return 0;
}
