/* The RAM rounds engine (rounds.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "libvmm/bitmap.h"
#include "libvmm/clock.h"
#include "libvmm/dirty.h"
#include "libvmm/error_internal.h"
#include "libvmm/memory.h"
#include "migrate/rounds.h"
#include "libvmm/vm_move.h"

struct vmm__rounds {
	struct vmm_vm *vm;
	const struct vmm__rounds_opts *o;
	const struct vmm__rounds_sink *sink;
	struct vmm__rounds_result *res;
	uint64_t npages;
	uint64_t *pages;            /* this pass's set */
	int clear;                  /* re-protect each chunk before it is read */
	pthread_mutex_t clear_lock; /* vmm__dirty_clear is one caller at a time */
};

int vmm__rounds_walk(struct vmm__rounds *rs, unsigned lane, unsigned nlanes,
		     int (*fn)(void *arg, const uint64_t *pages, uint64_t first, uint64_t n),
		     void *arg)
{
	const uint64_t step = (uint64_t)nlanes * VMM_ROUNDS_CHUNK_PAGES;
	int r = 0;

	for (uint64_t first = (uint64_t)lane * VMM_ROUNDS_CHUNK_PAGES; first < rs->npages && !r;
	     first += step) {
		uint64_t n = rs->npages - first < VMM_ROUNDS_CHUNK_PAGES ? rs->npages - first
									 : VMM_ROUNDS_CHUNK_PAGES;

		if (!vmm__bitmap_any(rs->pages + first / 64, (n + 63) / 64))
			continue;
		/* A snapshot file behind the RAM that changed since the last chunk stops the
		 * pass before fn reads from it (two system calls per 2 MiB, lazy RAM only). */
		r = vmm__memory_check(vmm__move_ram(rs->vm));
		if (!r && rs->clear) {
			pthread_mutex_lock(&rs->clear_lock);
			r = vmm__dirty_clear(vmm__move_dirty(rs->vm), rs->pages, first, VMM_ROUNDS_CHUNK_PAGES);
			pthread_mutex_unlock(&rs->clear_lock);
		}
		if (!r)
			r = fn(arg, rs->pages, first, n);
	}
	return r;
}

/* RAM mapped from a snapshot (lazy restore) is read only while that file is as it was:
 * checked before each pass, so a truncated file is an error rather than a SIGBUS in the
 * sink's reads, and after it, so a pass that read a file changing under it fails too. */
static int ram_intact(const struct vmm__rounds *rs)
{
	return vmm__memory_check(vmm__move_ram(rs->vm));
}

static uint64_t set_weight(const struct vmm__rounds *rs)
{
	return vmm__bitmap_weight(rs->pages, rs->npages);
}

/* The first pass: what the tracker saw since the parent (incremental: its since-base set,
 * which this sync feeds and which other jobs' syncs fed too), else every page ever written
 * (never-touched pages are holes, never read). */
static int first_set(struct vmm__rounds *rs)
{
	struct vmm__memory *mem = vmm__move_ram(rs->vm);

	memset(rs->pages, 0, vmm__bitmap_words(rs->npages) * 8);
	if (rs->o->first_from_tracker) {
		int r = vmm__dirty_sync(vmm__move_dirty(rs->vm), rs->pages);

		return r ? r : vmm__dirty_since_base(vmm__move_dirty(rs->vm), rs->pages);
	}
	if (mem->memfd < 0) { /* RAM mapped from a file: no holes to find */
		vmm__bitmap_set_range(rs->pages, 0, rs->npages);
		return 0;
	}
	/* RAM a pager fills on demand (uffd restore) has holes that are not zero pages yet:
	 * loaded first, in one pass in file order, rather than page by page through faults. */
	int r = vmm__memory_fill(mem);

	return r ? r : vmm__memory_populated(mem, rs->pages);
}

static int converge(struct vmm__rounds *rs, const struct vmm__round_measure *m, uint32_t round)
{
	uint32_t now = vmm__move_throttle(rs->vm);
	uint32_t pct = vmm__policy_next_throttle(now, round, vmm__policy_dirty_rate(m),
						 vmm__policy_bandwidth(m));

	if (pct > rs->res->max_throttle_pct)
		rs->res->max_throttle_pct = pct;
	return pct != now ? vmm__move_set_throttle(rs->vm, pct) : 0;
}

/* One pass over the set while the guest runs, then the next set synced in its place.
 * Sets *done when the rest fits the pause (or a cap is reached). */
static int live_round(struct vmm__rounds *rs, uint32_t round, int *done)
{
	const struct vmm__rounds_sink *k = rs->sink;
	struct vmm__rounds_report rep = { .round = round };
	uint64_t t0 = vmm__now_ns(), t_end, sync_ns;
	int r;

	rep.throttle_pct = vmm__move_throttle(rs->vm);
	r = ram_intact(rs);
	if (!r)
		r = k->begin(k->ctx, round, set_weight(rs), 0);
	if (!r)
		r = k->copy(k->ctx, rs);
	if (!r)
		r = ram_intact(rs);
	rs->res->rounds++;
	if (r)
		return r;
	t_end = vmm__now_ns();
	memset(rs->pages, 0, vmm__bitmap_words(rs->npages) * 8);
	r = vmm__dirty_sync(vmm__move_dirty(rs->vm), rs->pages);
	if (r)
		return r;
	sync_ns = vmm__now_ns() - t_end;
	rep.m = (struct vmm__round_measure){
		.wire_bytes = k->pass_bytes(k->ctx),
		.duration_ns = t_end - t0,
		.elapsed_ns = vmm__now_ns() - t0,
		.remaining_bytes = set_weight(rs) * VMM_PAGE_SIZE +
				   (k->extra_bytes ? k->extra_bytes(k->ctx) : 0),
		/* What the pause costs besides the pages: the final sync, and what the sink
		 * adds (a migration's state load and round trip: without the state, a slow
		 * host's downtime exceeded its estimate 70-fold). */
		.fixed_ns = sync_ns + (k->fixed_ns ? k->fixed_ns(k->ctx) : 0),
	};
	rep.expected_downtime_ns = vmm__policy_expected_downtime(&rep.m);
	/* Against a limit below the fixed cost, pre-copy used to send nothing round after
	 * round until the round cap (the emulated host: 80 ms of state load, a 50 ms limit,
	 * 31 rounds). */
	*done = vmm__policy_should_stop(rep.expected_downtime_ns,
					vmm__policy_reachable_limit(rs->o->downtime_limit_ns,
								    rep.m.fixed_ns),
					round, rs->o->max_rounds, vmm__now_ns() - rs->o->t0,
					rs->o->max_time_ns);
	rep.last = *done;
	rep.max_throttle_pct = rs->res->max_throttle_pct;
	if (k->report)
		k->report(k->ctx, &rep);
	return !*done && rs->o->auto_converge ? converge(rs, &rep.m, round) : 0;
}

/* Pauses the guest and copies what is left; a paused-only job copies its first set. */
static int final_pass(struct vmm__rounds *rs)
{
	const struct vmm__rounds_sink *k = rs->sink;
	uint64_t t_sync;
	int r;

	/* The downtime starts as the pause does: the vCPUs stop during the call. */
	rs->res->t_pause = vmm__now_ns();
	r = vmm__move_pause(rs->vm, &rs->res->paused_by_us, rs->o->stopped_why);
	if (r)
		return r;
	t_sync = vmm__now_ns();
	rs->res->pause_ns = t_sync - rs->res->t_pause;
	if (rs->o->live) {
		vmm__move_set_throttle(rs->vm, 0);
		/* The last sync happened while the guest ran: one more catches what the last
		 * round missed, now that it cannot write. */
		r = vmm__dirty_sync(vmm__move_dirty(rs->vm), rs->pages);
	} else {
		r = first_set(rs);
	}
	if (r)
		return r;
	rs->res->final_sync_ns = vmm__now_ns() - t_sync;
	rs->clear = rs->o->clear_final && vmm__dirty_backend(vmm__move_dirty(rs->vm));
	if (k->stable)
		k->stable(k->ctx);
	r = ram_intact(rs);
	if (!r)
		r = k->begin(k->ctx, rs->res->rounds, set_weight(rs), 1);
	if (!r)
		r = k->copy(k->ctx, rs);
	if (!r)
		r = ram_intact(rs);
	rs->res->rounds++;
	return r;
}

int vmm__rounds_run(struct vmm_vm *vm, const struct vmm__rounds_opts *o,
		    const struct vmm__rounds_sink *sink, struct vmm__rounds_result *res)
{
	struct vmm__rounds rs = { .vm = vm, .o = o, .sink = sink, .res = res, .clear = 1 };
	int done = 0, r = 0;

	memset(res, 0, sizeof(*res));
	rs.npages = vmm__move_ram(vm)->size / VMM_PAGE_SIZE;
	rs.pages = calloc(vmm__bitmap_words(rs.npages), 8);
	if (!rs.pages)
		return vmm__err(VMM_ENOMEM, "dirty bitmap");
	pthread_mutex_init(&rs.clear_lock, NULL);
	if (o->live) {
		r = first_set(&rs);
		for (uint32_t round = 0; !r && !done; round++)
			r = live_round(&rs, round, &done);
		if (!r && sink->before_pause)
			r = sink->before_pause(sink->ctx);
	}
	if (!r)
		r = final_pass(&rs);
	pthread_mutex_destroy(&rs.clear_lock);
	free(rs.pages);
	return r;
}
