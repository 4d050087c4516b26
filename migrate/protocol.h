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
 *   COMPLETE {pages} ----------------------------> check
 *              <---------------------------------- COMMITTED {apply time}; start the VM
 *   the VM is moved: it stays PAUSED, migrated
 *
 * SYNC exists because "written to the socket" is not "applied": a destination slower than
 * the link (first touch of its fresh memory) holds a backlog in its socket buffers, and
 * without the barrier the guest would stay paused while that backlog drains.
 *
 * Either side may send ERROR {code, message} instead of its next record and close. Until
 * COMMITTED arrives the source owns the VM: on any failure (refusal, a peer gone or
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
