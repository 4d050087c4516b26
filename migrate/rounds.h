/* RAM rounds, the one engine behind live migration and live snapshots: pick the first set
 * of pages, copy it while the guest runs, re-copy what the guest dirtied meanwhile until
 * the rest fits the pause (policy.h), pause, sync once more and copy the last pages. Where
 * the pages go is a sink's business: the migration sink sends them over its connections,
 * the snapshot sink writes them at fixed file offsets or as batches.
 *
 * Each chunk of the set is re-protected (vmm__dirty_clear) right before the sink reads it,
 * so a write that lands after the read shows up in the next round: pages are sent twice at
 * worst, never lost. */
#ifndef VMM_ROUNDS_H
#define VMM_ROUNDS_H

#include <stdint.h>

#include "migrate/policy.h"

struct vmm_vm;
struct vmm__rounds;

/* Pages are re-protected and handed to the sink 512 at a time (2 MiB, a huge page): the
 * unit in which a migration spreads pages over its connections (protocol.h), a multiple
 * of the 64 pages vmm__dirty_clear wants, and small enough that the clear lands just
 * before the read (the live snapshot's 16 MiB chunks left more time for writes to slip in
 * between and be copied twice) while a 4 GiB guest still needs only 2048 clears a round. */
#define VMM_ROUNDS_CHUNK_PAGES 512

/* What a live round measured, as the sink is told. */
struct vmm__rounds_report {
	uint32_t round;
	uint32_t throttle_pct;     /* the vCPU throttle during the round */
	uint32_t max_throttle_pct; /* the highest before this round's decision */
	struct vmm__round_measure m;
	uint64_t expected_downtime_ns;
	int last; /* the guest is paused after this round */
};

/* Where the pages go. Called on the engine's thread, one call at a time. */
struct vmm__rounds_sink {
	void *ctx;
	/* Opens a pass over npages pages; final: the guest is paused, the last pass. */
	int (*begin)(void *ctx, uint32_t round, uint64_t npages, int final);
	/* Copies every page of the pass's set, walking it with vmm__rounds_walk, and returns
	 * once they have arrived (acknowledged by the socket, or on disk). */
	int (*copy)(void *ctx, struct vmm__rounds *rs);
	/* Bytes this pass delivered so far (for the bandwidth). */
	uint64_t (*pass_bytes)(void *ctx);
	/* What the pause costs beyond its pages and the final sync: a migration's round trip
	 * and the state's load on the destination. NULL: nothing. */
	uint64_t (*fixed_ns)(void *ctx);
	/* Bytes outside RAM still to copy (a migration's dirty disk blocks): they count in
	 * the estimate like dirty pages. NULL: none. */
	uint64_t (*extra_bytes)(void *ctx);
	/* A live round measured (NULL: not wanted). */
	void (*report)(void *ctx, const struct vmm__rounds_report *rep);
	/* After the live rounds, before the pause (NULL: nothing). */
	int (*before_pause)(void *ctx);
	/* The guest is paused and synced: nothing changes under the final pass (NULL: nothing). */
	void (*stable)(void *ctx);
};

struct vmm__rounds_opts {
	int live;               /* rounds while the guest runs; else pause first, one pass */
	int first_from_tracker; /* the first set is what the tracker saw (incremental) */
	int clear_final;        /* the final pass re-protects too: the tracker outlives the job */
	uint64_t downtime_limit_ns;
	uint32_t max_rounds;
	uint64_t max_time_ns;   /* 0: no cap */
	uint64_t t0;            /* when the job started, for max_time_ns */
	int auto_converge;      /* throttle the vCPUs while the guest outruns the copy */
	const char *stopped_why; /* the error detail if the guest ended before the pause */
};

/* How the rounds went; filled as they go, so also valid after a failure. */
struct vmm__rounds_result {
	uint32_t rounds;           /* passes, the final one included */
	uint64_t t_pause;          /* when the pause was asked for */
	uint64_t pause_ns;         /* how long the pause itself took */
	uint64_t final_sync_ns;    /* the dirty sync with the guest paused */
	uint32_t max_throttle_pct;
	int paused_by_us;          /* the engine paused the guest: resume it on failure */
};

/* Runs the rounds of one job on vm (a dirty tracker must run for live rounds) into sink.
 * Returns with the guest paused (unless it already was) and every page copied. */
int vmm__rounds_run(struct vmm_vm *vm, const struct vmm__rounds_opts *o,
		    const struct vmm__rounds_sink *sink, struct vmm__rounds_result *res);

/* For a sink's copy(): hands fn the chunks of lane (chunk k goes to lane k % nlanes) that
 * hold pages of the set, each re-protected just before. Lanes may run on threads of their
 * own. fn copies the pages of [first, first + n) set in pages. */
int vmm__rounds_walk(struct vmm__rounds *rs, unsigned lane, unsigned nlanes,
		     int (*fn)(void *arg, const uint64_t *pages, uint64_t first, uint64_t n),
		     void *arg);

#endif
