/* Dirty-page tracking: the tracker's life (start/stop toggle KVM_MEM_LOG_DIRTY_PAGES on every
 * slot), host-side marks, and the bitmap backend, which maps KVM's per-slot bitmaps
 * (KVM_GET_DIRTY_LOG, KVM_CLEAR_DIRTY_LOG) to and from the memfd page index space. The ring
 * backend's harvest is in dirty_ring.c.
 *
 * Why not KVM_DIRTY_LOG_INITIALLY_SET: with it, turning logging on write-protects nothing
 * and KVM's bitmap starts all ones; pages get protected lazily, as the user clears them. The
 * first sync would then report every page of RAM whatever the guest did. That is what round
 * 0 of a pre-copy migration sends anyway, but it breaks "only what was written since start",
 * which an incremental snapshot needs, and what it saves (write-protecting a whole slot in
 * one go under mmu_lock) is small here: with shadow paging (KVM-PVM) only shadow PTEs that
 * exist are touched. Round 0 asks vmm__memory_populated() for the pages worth reading. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libvmm/bitmap.h"
#include "libvmm/dirty.h"
#include "libvmm/error_internal.h"
#include "libvmm/kvm.h"
#include "libvmm/memory.h"

static void warn(struct vmm__dirty_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void warn(struct vmm__dirty_ctx *ctx, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!ctx->log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ctx->log(ctx->log_opaque, VMM_LOG_WARN, msg);
}

void vmm__dirty_init(struct vmm__dirty_ctx *ctx, struct vmm__memory *mem, uint32_t ring_entries,
		     uint32_t nvcpus, vmm_log_fn log, void *log_opaque)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->mem = mem;
	ctx->vm_fd = -1;
	ctx->ring_entries = ring_entries;
	ctx->nrings = nvcpus; /* the table itself comes with the VM fd (vmm__dirty_attach) */
	ctx->log = log;
	ctx->log_opaque = log_opaque;
	pthread_mutex_init(&ctx->lock, NULL);
}

void vmm__dirty_fini(struct vmm__dirty_ctx *ctx)
{
	vmm__dirty_stop(ctx);
	vmm__dirty_ring_unmap_all(ctx);
	free(ctx->rings);
	ctx->rings = NULL;
	pthread_mutex_destroy(&ctx->lock);
}

static uint64_t region_first(const struct vmm__mem_region *r)
{
	return r->offset / VMM_PAGE_SIZE;
}

static uint64_t region_pages(const struct vmm__mem_region *r)
{
	return r->size / VMM_PAGE_SIZE;
}

static void tracker_free(struct vmm__dirty *d)
{
	if (!d)
		return;
	for (uint32_t i = 0; i < VMM_MEM_REGIONS_MAX; i++)
		free(d->slot_bm[i]);
	free(d->acc);
	free(d->since_base);
	free(d);
}

static struct vmm__dirty *tracker_alloc(struct vmm__dirty_ctx *ctx)
{
	struct vmm__dirty *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->npages = ctx->mem->size / VMM_PAGE_SIZE;
	d->acc = calloc(vmm__bitmap_words(d->npages), sizeof(uint64_t));
	d->since_base = calloc(vmm__bitmap_words(d->npages), sizeof(uint64_t));
	if (!d->acc || !d->since_base)
		goto fail;
	if (ctx->ring_entries)
		return d;
	/* KVM writes whole longs: a slot of n pages takes ALIGN(n, 64) / 8 bytes. */
	for (uint32_t i = 0; i < ctx->mem->nregions; i++) {
		d->slot_bm[i] = calloc(vmm__bitmap_words(region_pages(&ctx->mem->regions[i])),
				       sizeof(uint64_t));
		if (!d->slot_bm[i])
			goto fail;
	}
	return d;
fail:
	tracker_free(d);
	return NULL;
}

/* Manual protect when KVM has it; the capability stays on for the VM's life, which changes
 * nothing while no slot logs. */
static enum vmm__dirty_backend bitmap_backend(struct vmm__dirty_ctx *ctx)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE },
	};

	if (!(ctx->kvm->has_manual_dirty_protect & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE))
		return VMM__DIRTY_PLAIN;
	if (vmm__ioctl(ctx->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
		warn(ctx,
		     "KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2): %s; dirty tracking falls back to plain KVM_GET_DIRTY_LOG",
		     strerror(errno));
		return VMM__DIRTY_PLAIN;
	}
	return VMM__DIRTY_MANUAL;
}

/* Drops what the rings hold from before this tracker (a previous one's tail) and hands the
 * entries back, so the first sync reports only writes made from now on. */
static int ring_drain_locked(struct vmm__dirty_ctx *ctx)
{
	for (uint32_t i = 0; i < ctx->nrings; i++)
		vmm__dirty_ring_harvest(ctx, i, NULL);
	return vmm__dirty_ring_reset(ctx);
}

static int set_logging(struct vmm__dirty_ctx *ctx, int on)
{
	if (on)
		ctx->mem->slot_flags |= KVM_MEM_LOG_DIRTY_PAGES;
	else
		ctx->mem->slot_flags &= ~(uint32_t)KVM_MEM_LOG_DIRTY_PAGES;
	return vmm__memory_map(ctx->mem, ctx->vm_fd);
}

int vmm__dirty_start(struct vmm__dirty_ctx *ctx)
{
	struct vmm__dirty *d;
	int r = 0;

	if (!ctx)
		return vmm__err(VMM_EINVAL, "vm is NULL");
	d = tracker_alloc(ctx);
	if (!d)
		return vmm__err(VMM_ENOMEM, "dirty tracking bitmaps for %llu pages",
				(unsigned long long)(ctx->mem->size / VMM_PAGE_SIZE));
	pthread_mutex_lock(&ctx->lock);
	if (ctx->tracker) {
		r = vmm__err(VMM_EBUSY, "dirty tracking already started on this VM");
	} else {
		if (ctx->ring_entries) {
			d->backend = VMM__DIRTY_RING;
			r = ring_drain_locked(ctx);
		} else {
			d->backend = bitmap_backend(ctx);
		}
		/* Published before logging starts: a ring-full exit from the first logged write
		 * must find the tracker, or its pages would be dropped. */
		if (!r)
			ctx->tracker = d;
	}
	pthread_mutex_unlock(&ctx->lock);
	if (r) {
		tracker_free(d);
		return r;
	}
	r = set_logging(ctx, 1);
	if (r) {
		int e = r;

		/* Leave every slot as it was; a slot that did switch just stops logging. */
		set_logging(ctx, 0);
		pthread_mutex_lock(&ctx->lock);
		ctx->tracker = NULL;
		pthread_mutex_unlock(&ctx->lock);
		tracker_free(d);
		return e;
	}
	return 0;
}

void vmm__dirty_stop(struct vmm__dirty_ctx *ctx)
{
	struct vmm__dirty *d;

	if (!ctx)
		return;
	pthread_mutex_lock(&ctx->lock);
	d = ctx->tracker;
	ctx->tracker = NULL;
	pthread_mutex_unlock(&ctx->lock);
	if (!d)
		return;
	/* Entries the rings still get until the flags change are dropped by the ring-full hook
	 * or by the next start's drain. */
	if (ctx->vm_fd >= 0 && set_logging(ctx, 0))
		warn(ctx, "stopping dirty logging: %s", vmm_last_error());
	tracker_free(d);
}

/* The bitmap backends: one KVM_GET_DIRTY_LOG per slot. With manual protect KVM only copies
 * its bitmap out (clearing is vmm__dirty_clear's job); without, it also clears the bitmap and
 * write-protects the pages it reports, before returning. */
static int sync_bitmap(struct vmm__dirty_ctx *ctx, struct vmm__dirty *d, uint64_t *bitmap)
{
	for (uint32_t i = 0; i < ctx->mem->nregions; i++) {
		const struct vmm__mem_region *r = &ctx->mem->regions[i];
		struct kvm_dirty_log log = { .slot = r->slot, .dirty_bitmap = d->slot_bm[i] };

		if (vmm__ioctl(ctx->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			return vmm__err(VMM_EKVM, "KVM_GET_DIRTY_LOG slot %u: %s", r->slot,
					strerror(errno));
		vmm__bitmap_or_at(bitmap, region_first(r), d->slot_bm[i], region_pages(r));
		pthread_mutex_lock(&ctx->lock);
		vmm__bitmap_or_at(d->since_base, region_first(r), d->slot_bm[i], region_pages(r));
		pthread_mutex_unlock(&ctx->lock);
	}
	return 0;
}

/* The ring backend: harvest every vCPU's ring, then KVM_RESET_DIRTY_RINGS re-protects the
 * harvested pages before the caller reads them. A write that lands between the harvest and
 * the reset is not logged again, but the caller's read comes after the reset and sees it.
 * Under dirty_lock, so a vCPU's ring-full harvest never interleaves with this one. */
static int sync_ring_locked(struct vmm__dirty_ctx *ctx, struct vmm__dirty *d)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < ctx->nrings; i++)
		n += vmm__dirty_ring_harvest(ctx, i, d->acc);
	d->stats.ring_harvested += n;
	if (n)
		d->acc_any = 1;
	return vmm__dirty_ring_reset(ctx);
}

int vmm__dirty_sync(struct vmm__dirty_ctx *ctx, uint64_t *bitmap)
{
	struct vmm__dirty *d;
	int r = 0;

	if (!ctx || !bitmap)
		return vmm__err(VMM_EINVAL, "NULL argument");
	/* Read without the lock: only this (controlling) thread changes it. */
	d = ctx->tracker;
	if (!d)
		return vmm__err(VMM_ESTATE, "dirty sync: tracking not started");
	if (d->backend != VMM__DIRTY_RING)
		r = sync_bitmap(ctx, d, bitmap);
	pthread_mutex_lock(&ctx->lock);
	if (!r && d->backend == VMM__DIRTY_RING)
		r = sync_ring_locked(ctx, d);
	/* Host marks (and ring harvests) are reported even if KVM failed: they are gone from
	 * acc now, and over-reporting is harmless where losing is not. */
	if (d->acc_any) {
		vmm__bitmap_or(bitmap, d->acc, vmm__bitmap_words(d->npages));
		vmm__bitmap_or(d->since_base, d->acc, vmm__bitmap_words(d->npages));
		memset(d->acc, 0, vmm__bitmap_words(d->npages) * sizeof(uint64_t));
		d->acc_any = 0;
	}
	d->stats.syncs++;
	pthread_mutex_unlock(&ctx->lock);
	return r;
}

int vmm__dirty_since_base(struct vmm__dirty_ctx *ctx, uint64_t *bitmap)
{
	struct vmm__dirty *d;

	if (!ctx || !bitmap)
		return vmm__err(VMM_EINVAL, "NULL argument");
	pthread_mutex_lock(&ctx->lock);
	d = ctx->tracker;
	if (d)
		vmm__bitmap_or(bitmap, d->since_base, vmm__bitmap_words(d->npages));
	pthread_mutex_unlock(&ctx->lock);
	return d ? 0 : vmm__err(VMM_ESTATE, "dirty pages since the base: tracking not started");
}

void vmm__dirty_rebase(struct vmm__dirty_ctx *ctx)
{
	struct vmm__dirty *d;

	if (!ctx)
		return;
	pthread_mutex_lock(&ctx->lock);
	d = ctx->tracker;
	if (d)
		memset(d->since_base, 0, vmm__bitmap_words(d->npages) * sizeof(uint64_t));
	pthread_mutex_unlock(&ctx->lock);
}

/* KVM_CLEAR_DIRTY_LOG for pages [lo, hi) of region i (memfd page numbers). KVM wants a
 * slot-relative first_page that is a multiple of 64, and num_pages a multiple of 64 unless
 * it ends at the slot's end; pad bits outside [lo, hi) are zero, so they clear nothing. */
static int clear_region(struct vmm__dirty_ctx *ctx, struct vmm__dirty *d, uint32_t i,
			const uint64_t *bitmap, uint64_t lo, uint64_t hi)
{
	const struct vmm__mem_region *r = &ctx->mem->regions[i];
	uint64_t rp = region_pages(r), s = lo - region_first(r), pad = s % 64, n;
	uint64_t *buf = d->slot_bm[i];
	struct kvm_clear_dirty_log cl;

	s -= pad;
	n = hi - lo + pad;
	vmm__bitmap_extract(buf, bitmap, region_first(r) + s, n);
	if (pad)
		buf[0] &= ~vmm__bitmap_mask(0, pad);
	if (!vmm__bitmap_any(buf, vmm__bitmap_words(n)))
		return 0;
	/* Re-protecting drops whatever KVM logged for these pages since the last sync, and
	 * only this caller (who reads them next) would know: a page no sync has reported
	 * (round 0 of a migration, a full save, clear pages chosen from the populated set)
	 * joins the since-base set here, so the snapshot chain does not lose it. */
	pthread_mutex_lock(&ctx->lock);
	vmm__bitmap_or_at(d->since_base, region_first(r) + s, buf, n);
	pthread_mutex_unlock(&ctx->lock);
	n = (n + 63) & ~63ull;
	if (n > rp - s)
		n = rp - s;
	cl = (struct kvm_clear_dirty_log){
		.slot = r->slot, .num_pages = (uint32_t)n, .first_page = s, .dirty_bitmap = buf,
	};
	/* num_pages is 32 bits: a slot of 16 TiB or more would need several calls, but RAM
	 * is at most VMM_MEM_MAX (1 TiB, 2^28 pages). */
	if (vmm__ioctl(ctx->vm_fd, KVM_CLEAR_DIRTY_LOG, &cl) < 0)
		return vmm__err(VMM_EKVM, "KVM_CLEAR_DIRTY_LOG slot %u pages %llu+%llu: %s", r->slot,
				(unsigned long long)s, (unsigned long long)n, strerror(errno));
	return 0;
}

int vmm__dirty_clear(struct vmm__dirty_ctx *ctx, const uint64_t *bitmap, uint64_t first,
		     uint64_t npages)
{
	struct vmm__dirty *d;
	uint64_t end;

	if (!ctx || (!bitmap && npages))
		return vmm__err(VMM_EINVAL, "NULL argument");
	if (first % 64 || npages % 64)
		return vmm__err(VMM_EINVAL, "dirty clear: pages %llu+%llu not multiples of 64",
				(unsigned long long)first, (unsigned long long)npages);
	d = ctx->tracker;
	if (!d)
		return vmm__err(VMM_ESTATE, "dirty clear: tracking not started");
	if (d->backend != VMM__DIRTY_MANUAL)
		return 0;
	end = first < d->npages && npages < d->npages - first ? first + npages : d->npages;
	for (uint32_t i = 0; i < ctx->mem->nregions; i++) {
		const struct vmm__mem_region *r = &ctx->mem->regions[i];
		uint64_t lo = first > region_first(r) ? first : region_first(r);
		uint64_t hi = end < region_first(r) + region_pages(r) ? end
								      : region_first(r) + region_pages(r);
		int e;

		if (lo >= hi)
			continue;
		e = clear_region(ctx, d, i, bitmap, lo, hi);
		if (e)
			return e;
	}
	return 0;
}

void vmm__dirty_mark(struct vmm__dirty_ctx *ctx, uint64_t offset, uint64_t len)
{
	uint64_t size = ctx ? ctx->mem->size : 0;
	struct vmm__dirty *d;

	if (!ctx || !len)
		return;
	pthread_mutex_lock(&ctx->lock);
	d = ctx->tracker;
	if (d && offset < size) {
		uint64_t last = len - 1 < size - offset ? offset + len - 1 : size - 1;
		uint64_t p = offset / VMM_PAGE_SIZE;

		vmm__bitmap_set_range(d->acc, p, last / VMM_PAGE_SIZE - p + 1);
		d->acc_any = 1;
	}
	pthread_mutex_unlock(&ctx->lock);
}

int vmm__dirty_backend(struct vmm__dirty_ctx *ctx)
{
	int b;

	pthread_mutex_lock(&ctx->lock);
	b = ctx->tracker ? (int)ctx->tracker->backend : 0;
	pthread_mutex_unlock(&ctx->lock);
	return b;
}

void vmm__dirty_get_stats(struct vmm__dirty_ctx *ctx, struct vmm__dirty_stats *st)
{
	pthread_mutex_lock(&ctx->lock);
	if (ctx->tracker)
		*st = ctx->tracker->stats;
	else
		memset(st, 0, sizeof(*st));
	pthread_mutex_unlock(&ctx->lock);
}
