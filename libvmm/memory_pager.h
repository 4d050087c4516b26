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

struct vmm__pager;

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
 * the first failure. Concurrent faults are fine (a page installed twice is skipped). */
int vmm__pager_load_all(struct vmm__pager *p);
/* Whether every page is in (then holes in the memfd are zero pages again). */
int vmm__pager_complete(const struct vmm__pager *p);

/* Counters (atomically read): faults served by the thread, pages installed in all. */
struct vmm__pager_stats {
	uint64_t faults;
	uint64_t loaded;
	uint64_t npages;
};
void vmm__pager_stats(const struct vmm__pager *p, struct vmm__pager_stats *st);

/* Tests only: every page the pager thread serves waits this long first (0: none), so a
 * test can have faults pending. Process-wide. */
void vmm__pager_test_delay_us(unsigned us);

#endif
