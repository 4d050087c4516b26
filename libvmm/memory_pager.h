/* The pager: guest RAM (the fresh memfd's shared mapping) filled on demand from a file
 * through userfaultfd (VMM_RESTORE_UFFD). RAM is registered in MISSING mode; the pager's
 * thread, owned by the memory (started here, joined by vmm__pager_stop from
 * vmm__memory_free), reads each faulting page from the file, checks its XXH3 against the
 * table and installs it with UFFDIO_COPY. Any thread that touches a missing page waits for
 * it: a vCPU inside KVM_RUN, the library's own reads, a snapshot's writev from RAM.
 *
 * A page that fails (hash mismatch, a file cut short, a read error) must not reach the
 * guest, and no thread may be left waiting for it (on Linux < 6.3 a vCPU waiting on a
 * userfault inside KVM cannot be interrupted). So, in this order: the page is marked bad,
 * the error is recorded (first one wins), the owner's fail callback stops the VM (which
 * queues the kick signal on every vCPU thread), and only then is the fault released with
 * a zero page. A vCPU whose fault that was returns to KVM's run loop with the signal
 * pending and leaves KVM_RUN before re-entering the guest: the zeros are never executed
 * on. The library's reads check the bad set after copying, so vmm_vm_mem_read/write of a
 * range holding a bad page return the error instead of the bytes, and a whole-RAM read
 * (snapshot, migration) refuses through vmm__memory_check. */
#ifndef VMM_MEMORY_PAGER_H
#define VMM_MEMORY_PAGER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct vmm__pager;

/* Where pages come from. Exactly one of read and request:
 * - read (synchronous, the snapshot file): n pages from first into buf, returning the bytes
 *   read (fewer where the source ends) or -errno; called by the pager's thread for a
 *   fault and by vmm__pager_load_all's caller, so it must be safe from both at once.
 * - request (asynchronous, a post-copy migration link): ask for page and the n - 1 after
 *   it; the pages come later through vmm__pager_supply, from the caller's own thread (the
 *   one reading the link). Called on the pager's thread, sandboxed as a migration thread:
 *   it must not block for long (queue the request, wake a sender). Nonzero: the request
 *   could not be made (the page fails: the VM stops, the guest never runs on it).
 * release (may be NULL) is called once by vmm__pager_stop after the thread is joined.
 * what names the source in errors ("the snapshot file"). */
struct vmm__pager_source {
	ssize_t (*read)(void *ctx, uint64_t first, uint64_t n, uint8_t *buf);
	int (*request)(void *ctx, uint64_t page, uint64_t n);
	void (*release)(void *ctx);
	void *ctx;
	const char *what;
};

/* Neighbours asked for with a faulting page (that page included), fault latency samples
 * kept for the statistics (the first ones). */
#define VMM__PAGER_NEIGHBOURS 8
#define VMM__PAGER_LAT_SAMPLES 4096

/* Called once, from whichever thread saw the first failure (the pager's own, or one
 * loading every page), with the error and its detail. Must not block on guest RAM. */
typedef void (*vmm__pager_fail_fn)(void *ctx, int err, const char *detail);

/* Registers host[0, npages pages) with a new userfaultfd and starts the thread. Page p
 * comes from fd at offset + p * 4096 and must hash (XXH3_64bits) to hashes[p]; the pager
 * takes hashes over (it frees them) and duplicates fd. VMM_ENOSYS where userfaultfd is
 * missing or refused (not root, vm.unprivileged_userfaultfd off), with detail: the caller
 * may fall back. Nothing is left behind on failure (hashes freed). */
int vmm__pager_start(uint8_t *host, uint64_t npages, int fd, uint64_t offset, uint64_t *hashes,
		     vmm__pager_fail_fn fail, void *ctx, struct vmm__pager **out);
/* The same with another source (src copied; its ctx must outlive the pager). hashes may
 * be NULL for a source that vouches for its own pages (an authenticated migration link):
 * then nothing is checked. Nothing is left behind on failure (hashes freed). */
int vmm__pager_start_source(uint8_t *host, uint64_t npages, const struct vmm__pager_source *src,
			    uint64_t *hashes, vmm__pager_fail_fn fail, void *ctx,
			    struct vmm__pager **out);
/* An asynchronous source's page arrived (asked for or pushed): checked (hashes), installed
 * unless already in, its waiters woken. 0, VMM_EPROTO for a page past RAM, or the page's
 * failure. Any one thread at a time per page. */
int vmm__pager_supply(struct vmm__pager *p, uint64_t page, const void *buf);
/* Hybrid post-copy: the pages of the have bitmap (bit p: page p) already hold their valid
 * bytes in RAM (sent by pre-copy rounds): counted as in, never asked for. Every other page
 * must be a hole (the stale ones punched out of the memfd before the pager starts), else
 * its stale bytes stay: a supplied page over a present one is a no-op. Call after start,
 * before the guest runs. */
void vmm__pager_have(struct vmm__pager *p, const uint64_t *have);
/* The asynchronous source is gone (a broken link) with err (e.g. VMM_EINDOUBT) and detail:
 * the error is recorded and the owner's fail callback stops the VM first; then every page
 * asked for and not in, and every later fault on a missing page, fails (released with
 * zeros the guest never runs on, as for a damaged page above; the library's reads of it
 * return the error). Nothing hangs and no vCPU gets a wrong page. No-op for a file.
 * The link's owner must call it before the VM is destroyed while pages are missing: a
 * vCPU waiting inside KVM for a page that will never come could not be joined (Linux <
 * 6.3 cannot interrupt that wait). */
void vmm__pager_source_lost(struct vmm__pager *p, int err, const char *detail);
/* Stops and joins the thread, closes the userfaultfd (a fault still pending then gets a
 * zero page from the kernel: only at destroy, after the vCPUs are joined) and frees p
 * (may be NULL). Call before RAM is unmapped. */
void vmm__pager_stop(struct vmm__pager *p);
/* 0, or the first failure (error set with its detail). Any thread. */
int vmm__pager_error(const struct vmm__pager *p);
/* 0 if no page of [first, first + n) failed, else the failure (error set). Any thread. */
int vmm__pager_range_ok(const struct vmm__pager *p, uint64_t first, uint64_t n);
/* Loads every page not yet present from the calling thread, in file order (so a
 * snapshot of the VM can walk the memfd's extents, and the file may be let go of): 0 or
 * the first failure. Concurrent faults are fine (a page installed twice is skipped). With
 * an asynchronous source: waits until the source has pushed every page, or is lost. */
int vmm__pager_load_all(struct vmm__pager *p);
/* Whether every page is in (then holes in the memfd are zero pages again). */
int vmm__pager_complete(const struct vmm__pager *p);

/* Counters (atomically read): faults served by the thread, pages installed in all. For an
 * asynchronous source also: pages supplied after a request (pulled) or without (pushed),
 * fault latency (a fault's request to its page's arrival: median, p99, over the first
 * VMM__PAGER_LAT_SAMPLES) and when the last page came in, from the start (0: not yet). */
struct vmm__pager_stats {
	uint64_t faults;
	uint64_t loaded;
	uint64_t npages;
	uint64_t pulled, pushed;
	uint64_t lat_median_ns, lat_p99_ns, lat_samples;
	uint64_t complete_ns;
};
void vmm__pager_stats(const struct vmm__pager *p, struct vmm__pager_stats *st);

/* ---- working set (REAP-style prefetch)
 *
 * A set file: "LIBVMMWS", version 1 (u32), count (u32), tag (u64), npages (u64), count
 * page numbers (u64, strictly ascending, each < npages), XXH3 of all of that (u64), then
 * a copy of each of those pages (4096 bytes each, in list order) so that a prefetch is
 * one sequential read. The tag names the snapshot it was recorded on; a file with another
 * tag, or whose list fails any check, is refused (the caller logs and ignores it). The
 * copies are never trusted: each must match the snapshot's hash for its page, else that
 * page loads from the snapshot as usual. */

/* Records the pages that fault from now until ms after vmm__pager_started (or until stop,
 * if sooner); vmm__pager_stop writes them to path (under a temporary name, renamed when
 * complete), if the VM started. Call before the VM starts. 0, or VMM_ENOMEM. */
int vmm__pager_record(struct vmm__pager *p, const char *path, uint64_t tag, uint32_t ms);
/* The VM started: the recording window runs from here. p may be NULL. Any thread. */
void vmm__pager_started(struct vmm__pager *p);
/* Loads the pages the set file at path holds, in one sequential read, on the calling
 * thread (before the guest runs). *loaded (may be NULL): pages it loaded. VMM_ENOENT if
 * there is no file; VMM_ECORRUPT / VMM_ETRUNCATED / VMM_ESTATEDATA (another snapshot's
 * set) for a list not to be trusted, with detail: then nothing was loaded. VMM_ECORRUPT
 * also when some copies did not match their hashes (the others were loaded; those fault
 * in from the snapshot). Never a failure of the VM. */
int vmm__pager_prefetch(struct vmm__pager *p, const char *path, uint64_t tag,
			uint64_t *loaded);

/* Tests only: every page the pager thread serves waits this long first (0: none), so a
 * test can have faults pending. Process-wide. */
void vmm__pager_test_delay_us(unsigned us);

#endif
