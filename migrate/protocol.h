/* The live-migration exchange. Every connection starts with the stream preamble
 * (stream.h); records are typed and length-prefixed; RAM travels in batches (ram.h).
 *
 *   source (vmm_migrate_send)                     destination (vmm_migrate_receive)
 *   -------------------------                     ---------------------------------
 *   connect #0 ---------------------------------> accept #0
 *   HELLO {version, features, shape,
 *          connections N, session id} ----------> check version, features, shape;
 *                                                  build an empty VM of that shape
 *              <---------------------------------- HELLO_REPLY {accepted | refused: code, reason;
 *                                                   state rehearsal time: the state's
 *                                                   share of the downtime estimate}
 *   connect #1..N-1, each: HELLO {session id,
 *          conn_index} -------------------------> accept, match the session
 *   start dirty tracking
 *   ROUND {0} on #0, then RAM batches on every
 *   connection (a page always on the same one,   apply batches straight into guest RAM,
 *   by its 2 MiB chunk, so per-page order holds)   one thread per connection
 *   ROUND {k}: what round k-1 saw dirtied ...
 *   (expected downtime <= limit, or a cap)
 *   SYNC on every connection ---------------------> (after applying all before it)
 *              <---------------------------------- SYNC, on each connection
 *   pause the guest; final dirty sync
 *   ROUND {final}, the last RAM batches
 *   END on every connection ---------------------> join the connections
 *   STATE {vmm.state.Machine} on #0 -------------> apply vCPU and device state
 *   COMPLETE {pages_total, state_bytes} ---------> check pages_total against the pages
 *                                                  that arrived (and everything before)
 *              <---------------------------------- READY {apply time, pages}: the guest is
 *                                                  whole here, loaded, never started
 *   let go (cancel refused from here on)
 *   GO (its last word) ---------------------------> start the VM (unless no_start)
 *              <---------------------------------- STARTED {error}
 *   the VM is moved: it stays PAUSED, migrated
 *
 * SYNC exists because "written to the socket" is not "applied": a destination slower than
 * the link (first touch of its fresh memory) holds a backlog in its socket buffers, and
 * without the barrier the guest would stay paused while that backlog drains.
 *
 * The hand-over (stream 1.1, required feature VMM_FEAT_HANDOVER; 1.0 ended with COMMITTED,
 * after which the destination started at once while a source that missed COMMITTED
 * resumed: two guests). Its one rule: at most one side ever runs the guest. The
 * destination starts only on GO, and the source, once it may have written GO, never runs
 * the guest by itself again. Who owns the guest, and what each failure does:
 *
 *   point of failure                    source                  destination
 *   ----------------------------------  ----------------------  --------------------------
 *   up to COMPLETE, any side, any way   resumes (owner)         discards (never started)
 *   COMPLETE wrong (pages_total, state) resumes when told by    discards, says ERROR
 *                                        ERROR (owner)
 *   READY lost, late (timeout_ms), or   resumes, sends ERROR    ERROR arrives: discards.
 *     a cancel or failure before GO      (owner)                 Silence/reset: IN DOUBT (*)
 *   GO written, then no STARTED         IN DOUBT (paused)       GO arrived: starts (owner);
 *     (timeout, reset, a side killed)                            else IN DOUBT (*)
 *   the destination's start fails       resumes on STARTED      discards, STARTED {error}
 *                                        {error} (owner), else   (**)
 *                                        IN DOUBT
 *   STARTED {0} lost                    IN DOUBT                runs (owner)
 *   STARTED {0} arrived                 migrated (PAUSED)       runs (owner)
 *
 * (*) READY is out, so the destination cannot tell "the source resumed and its ERROR was
 * lost" from "the source let go and GO was lost": it keeps the loaded guest paused.
 * (**) vmm_vm_start fails when a vCPU thread cannot be created; the vCPUs started before it
 * may have run for a moment before they were stopped (run control has no start gate). The
 * source takes the guest back all the same: the alternative would lose it.
 *
 * IN DOUBT: the send or receive returns VMM_EINDOUBT, the VM stays paused (source PAUSED
 * and refusing resume; destination loaded, refusing start, handed to the caller) and
 * vmm_vm_in_doubt() is 1. Nothing resumes or discards by itself: whoever sees both sides
 * calls vmm_migrate_resolve(RUN) on the one that is to run and DISCARD on the other. At
 * most one side can then run, unless a resolve says RUN on both. An in-doubt destination
 * never ran the guest, so RUN on either side continues it exactly where it was paused
 * (after STARTED {0} the destination runs and is not in doubt: the source is resolved
 * DISCARD). libvirt's Begin/Prepare/Perform/Finish/Confirm leaves an unclear outcome paused
 * on both sides the same way.
 *
 * Either side may send ERROR {code, message} instead of its next record and close, up to
 * GO. Until the source lets go it owns the VM: on any failure (refusal, a peer gone or
 * silent past the timeout, a bad record, cancel) it resumes the guest as it was, and the
 * destination discards what it built. The destination accepts stream majors
 * VMM_STREAM_MAJOR_MIN..VMM_STREAM_MAJOR (N and N-1). */
#ifndef VMM_PROTOCOL_H
#define VMM_PROTOCOL_H

#include <stdint.h>

#define VMM_MIGRATE_MAX_CONNS 16
#define VMM_MIGRATE_CHUNK_PAGES 512 /* pages map to connections in 2 MiB chunks */

static inline unsigned vmm__page_conn(uint64_t page, unsigned nconns)
{
	return (unsigned)((page / VMM_MIGRATE_CHUNK_PAGES) % nconns);
}

#endif
