/* Dirty-page tracking of guest RAM, for pre-copy migration and live/incremental snapshots.
 * Two KVM backends behind one interface: the per-slot dirty bitmap (with manual protect when
 * KVM has it) and the per-vCPU dirty ring, chosen by vm->cfg.dirty_ring_entries.
 *
 * Page index space: memfd offset / 4096, i.e. vm->mem pages in region order,
 * 0..mem.size/4096. Bitmaps are uint64_t words, bit i of word i / 64 is page i (bitmap.h).
 *
 * Thread rule: start, sync, clear and stop are called by one controlling thread at a time
 * (the migration or snapshot thread) while the vCPUs run; vmm__dirty_mark may be called
 * from any thread; vmm__dirty_ring_full runs on the vCPU threads. vm->dirty_lock guards
 * what they share: the tracker pointer, its accumulated bitmap and the rings' harvest. */
#ifndef VMM_DIRTY_H
#define VMM_DIRTY_H

#include <stdint.h>

#include "memory.h"

struct vmm_vm;
struct vmm__vcpu;
struct vmm__dirty;

enum vmm__dirty_backend {
	VMM__DIRTY_MANUAL = 1, /* KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG (manual protect) */
	VMM__DIRTY_PLAIN = 2,  /* KVM_GET_DIRTY_LOG alone: it clears and re-protects */
	VMM__DIRTY_RING = 3,   /* per-vCPU ring + KVM_RESET_DIRTY_RINGS */
};

/* Enables dirty logging on every RAM slot and starts tracking. Backend: the bitmap with
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 when vm->cfg.dirty_ring_entries == 0 (plain
 * KVM_GET_DIRTY_LOG if manual protect is missing), the per-vCPU dirty ring otherwise.
 * Everything written from now on is reported by later syncs, and nothing written before:
 * the first sync is exact, not "every page" (see dirty.c on KVM_DIRTY_LOG_INITIALLY_SET).
 * Only one tracker per VM (vm->dirty): VMM_EBUSY if one exists. Any VM state but destroyed;
 * on a RUNNING VM logging starts while the vCPUs run. */
int vmm__dirty_start(struct vmm_vm *vm);

/* ORs into bitmap (caller-allocated, mem.size/4096 bits) every page written since the
 * previous sync (or start), by the guest or through vmm__dirty_mark.
 * Bitmap backend with manual protect: the sync does NOT re-protect; the caller calls
 * vmm__dirty_clear for a range right before it reads those pages, so that a write after the
 * read is caught again. A page reported and never cleared is reported again by the next
 * sync (KVM still holds its bit): over-reporting, never losing.
 * Ring and plain bitmap backends: the sync itself re-protects what it reports (the caller
 * reads the pages after the sync returns) and vmm__dirty_clear is a no-op.
 * VMM_ESTATE without a tracker, VMM_EKVM if KVM refuses. */
int vmm__dirty_sync(struct vmm_vm *vm, uint64_t *bitmap);

/* Re-protects the pages set in bitmap (indexed like the sync's, whole RAM) within
 * [first, first + npages); first and npages are multiples of 64, the range is clipped to
 * RAM. Pages not set are left alone. VMM_EINVAL on a misaligned range. A no-op returning 0
 * for the ring and plain backends. */
int vmm__dirty_clear(struct vmm_vm *vm, const uint64_t *bitmap, uint64_t first, uint64_t npages);

/* Marks [offset, offset + len) of the memfd as written by the host (vmm_vm_mem_write, a
 * restore) so trackers see it too. Call it after the write: a sync that sees the mark must
 * find the new bytes. No-op without a tracker. Any thread. */
void vmm__dirty_mark(struct vmm_vm *vm, uint64_t offset, uint64_t len);

/* Stops logging (slot flags back) and frees the tracker. No-op without one. */
void vmm__dirty_stop(struct vmm_vm *vm);

/* Which backend the running tracker uses, 0 without one. */
int vmm__dirty_backend(struct vmm_vm *vm);

/* Counters of the running tracker (zeros without one), for dirty-rate statistics and
 * tests. */
struct vmm__dirty_stats {
	uint64_t syncs;          /* vmm__dirty_sync calls */
	uint64_t ring_full;      /* KVM_EXIT_DIRTY_RING_FULL exits served */
	uint64_t ring_harvested; /* ring entries harvested, repeats of a page included */
};
void vmm__dirty_get_stats(struct vmm_vm *vm, struct vmm__dirty_stats *st);

/* vCPU thread hook for KVM_EXIT_DIRTY_RING_FULL: harvests this vCPU's ring into the
 * tracker's accumulated bitmap (or drops it without a tracker) and resets the rings, so the
 * vCPU can continue. Returns 0 or an error. */
int vmm__dirty_ring_full(struct vmm__vcpu *vcpu);

/* Enables the ring capability on a new VM when cfg.dirty_ring_entries != 0: called after
 * KVM_CREATE_VM and before the first vCPU. VMM_EUNSUPPORTED (no ring, or larger than this
 * host allows) or VMM_EINVAL (not a power of two, smaller than one page) with detail. */
int vmm__dirty_ring_enable(struct vmm_vm *vm);

/* Maps the vCPU's ring (after KVM_CREATE_VCPU) when the ring is enabled; no-op otherwise. */
int vmm__dirty_ring_map(struct vmm__vcpu *vcpu);
void vmm__dirty_ring_unmap(struct vmm__vcpu *vcpu);

/* Pages of the memfd that have ever been written (or read: a shmem read fault allocates
 * too), found with SEEK_DATA/SEEK_HOLE, ORed into bitmap (mem.size/4096 bits). Never-touched
 * pages are holes: a snapshot or round 0 of a migration need not read them. With huge shmem
 * pages (shmem_enabled) a touch populates a whole 2 MiB folio, and the answer is that
 * coarse. Any thread; the memfd's file offset is not used. */
int vmm__memory_populated(const struct vmm__memory *m, uint64_t *bitmap);

/* Internal to dirty.c and dirty_ring.c. */
struct vmm__dirty {
	enum vmm__dirty_backend backend;
	uint64_t npages; /* mem.size / 4096 */
	/* Under vm->dirty_lock: pages marked by the host or harvested from a ring and not yet
	 * reported by a sync (acc_any says whether any is), and the counters. */
	uint64_t *acc;
	int acc_any;
	struct vmm__dirty_stats stats;
	/* Per-slot bitmaps exchanged with KVM by sync and clear: controlling thread only. */
	uint64_t *slot_bm[VMM_MEM_REGIONS_MAX];
};

/* Harvests every entry KVM published in vcpu's ring: marks its page in acc (NULL: drop it)
 * and hands the entry back (RESET). Returns how many. Caller holds vm->dirty_lock. */
uint32_t vmm__dirty_ring_harvest(struct vmm__vcpu *vcpu, uint64_t *acc);
/* KVM_RESET_DIRTY_RINGS: re-protects the pages of every harvested entry. */
int vmm__dirty_ring_reset(struct vmm_vm *vm);

#endif
