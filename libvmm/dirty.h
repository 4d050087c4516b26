/* Dirty-page tracking of guest RAM, for pre-copy migration and live/incremental snapshots.
 * Two KVM backends behind one interface: the per-slot dirty bitmap (with manual protect when
 * KVM has it) and the per-vCPU dirty ring, chosen by the VM's
 * cfg.dirty_ring_entries.
 *
 * Page index space: memfd offset / 4096, i.e. the RAM's pages in region order,
 * 0..mem.size/4096. Bitmaps are uint64_t words, bit i of word i / 64 is page i (bitmap.h).
 *
 * The tracker works on a struct vmm__dirty_ctx, the part of a VM it needs (its RAM, its KVM
 * VM fd, the vCPUs' rings), which the VM embeds as vm->dirty: it knows nothing else of the
 * VM, so it can be tested on its own.
 *
 * Thread rule: start, sync, clear and stop are called by one controlling thread at a time
 * (the migration or snapshot thread) while the vCPUs run; vmm__dirty_mark may be called
 * from any thread; vmm__dirty_ring_full runs on the vCPU threads. ctx->lock guards what
 * they share: the tracker pointer, its accumulated bitmap and the rings' harvest. */
#ifndef VMM_DIRTY_H
#define VMM_DIRTY_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdint.h>

#include "vmm/vm.h"
#include "libvmm/kvm.h"
#include "libvmm/memory.h"

struct vmm__dirty;

/* One vCPU's dirty ring, mapped when ring_entries != 0; fetch is the next entry to
 * harvest, moved only under the context's lock. */
struct vmm__dirty_ring {
	struct kvm_dirty_gfn *gfns;
	uint32_t fetch;
};

/* What dirty tracking needs of its VM. */
struct vmm__dirty_ctx {
	struct vmm__memory *mem;
	const struct vmm__kvm *kvm; /* set by vmm__dirty_attach */
	int vm_fd;                  /* the KVM VM, likewise */
	uint32_t ring_entries;      /* cfg.dirty_ring_entries: 0 for the bitmap backends */
	uint32_t nrings;            /* one per vCPU */
	struct vmm__dirty_ring *rings;
	vmm_log_fn log;             /* warnings, as the VM's log callback */
	void *log_opaque;
	pthread_mutex_t lock;
	struct vmm__dirty *tracker; /* while one runs */
};

/* Sets up ctx for a VM with nvcpus vCPUs and RAM mem, first thing (it cannot fail). */
void vmm__dirty_init(struct vmm__dirty_ctx *ctx, struct vmm__memory *mem, uint32_t ring_entries,
		    uint32_t nvcpus, vmm_log_fn log, void *log_opaque);
/* Stops a running tracker, unmaps the rings and frees ctx's own memory. Before the VM fd
 * closes (stopping restores the slots' flags). Safe on a ctx that init failed on. */
void vmm__dirty_fini(struct vmm__dirty_ctx *ctx);

enum vmm__dirty_backend {
	VMM__DIRTY_MANUAL = 1, /* KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG (manual protect) */
	VMM__DIRTY_PLAIN = 2,  /* KVM_GET_DIRTY_LOG alone: it clears and re-protects */
	VMM__DIRTY_RING = 3,   /* per-vCPU ring + KVM_RESET_DIRTY_RINGS */
};

/* Enables dirty logging on every RAM slot and starts tracking. Backend: the bitmap with
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 when ctx->ring_entries == 0 (plain
 * KVM_GET_DIRTY_LOG if manual protect is missing), the per-vCPU dirty ring otherwise.
 * Everything written from now on is reported by later syncs, and nothing written before:
 * the first sync is exact, not "every page" (see dirty.c on KVM_DIRTY_LOG_INITIALLY_SET).
 * Only one tracker per VM (ctx->tracker): VMM_EBUSY if one exists. Any VM state but destroyed;
 * on a RUNNING VM logging starts while the vCPUs run. */
int vmm__dirty_start(struct vmm__dirty_ctx *ctx);

/* ORs into bitmap (caller-allocated, mem.size/4096 bits) every page written since the
 * previous sync (or start), by the guest or through vmm__dirty_mark.
 * Bitmap backend with manual protect: the sync does NOT re-protect; the caller calls
 * vmm__dirty_clear for a range right before it reads those pages, so that a write after the
 * read is caught again. A page reported and never cleared is reported again by the next
 * sync (KVM still holds its bit): over-reporting, never losing.
 * Ring and plain bitmap backends: the sync itself re-protects what it reports (the caller
 * reads the pages after the sync returns) and vmm__dirty_clear is a no-op.
 * VMM_ESTATE without a tracker, VMM_EKVM if KVM refuses. */
int vmm__dirty_sync(struct vmm__dirty_ctx *ctx, uint64_t *bitmap);

/* The tracker's own set of every page any sync reported since the tracker started or was
 * last rebased: what an incremental snapshot must hold beyond its parent. Every consumer
 * syncs (a save's rounds, a migration's rounds) and gets its own copy of what KVM
 * reported; this set is fed by all of them and emptied only by vmm__dirty_rebase, so a
 * consumer that fails, or one that is not the snapshot chain's, takes nothing away from it.
 * vmm__dirty_since_base ORs it into bitmap (mem.size/4096 bits); VMM_ESTATE without a
 * tracker. Controlling thread. */
int vmm__dirty_since_base(struct vmm__dirty_ctx *ctx, uint64_t *bitmap);

/* Empties the since-base set: a snapshot now holds every page as of the tracker's last
 * sync. Call it only once that snapshot is safely written (a failed save leaves the set
 * whole, so its retry loses nothing), and with no sync between the snapshot's final one
 * and this call: pages written since are still in KVM's log or acc, reported by the next
 * sync. No-op without a tracker. Controlling thread. */
void vmm__dirty_rebase(struct vmm__dirty_ctx *ctx);

/* Re-protects the pages set in bitmap (indexed like the sync's, whole RAM) within
 * [first, first + npages); first and npages are multiples of 64, the range is clipped to
 * RAM. Pages not set are left alone; the ones it re-protects join the since-base set
 * (what KVM logged for them since the last sync is dropped, and the chain must not lose
 * it). VMM_EINVAL on a misaligned range. A no-op returning 0
 * for the ring and plain backends. */
int vmm__dirty_clear(struct vmm__dirty_ctx *ctx, const uint64_t *bitmap, uint64_t first,
		     uint64_t npages);

/* Marks [offset, offset + len) of the memfd as written by the host (vmm_vm_mem_write, a
 * restore) so trackers see it too. Call it after the write: a sync that sees the mark must
 * find the new bytes. No-op without a tracker. Any thread. */
void vmm__dirty_mark(struct vmm__dirty_ctx *ctx, uint64_t offset, uint64_t len);

/* Stops logging (slot flags back) and frees the tracker. No-op without one. */
void vmm__dirty_stop(struct vmm__dirty_ctx *ctx);

/* Which backend the running tracker uses, 0 without one. */
int vmm__dirty_backend(struct vmm__dirty_ctx *ctx);

/* Counters of the running tracker (zeros without one), for dirty-rate statistics and
 * tests. */
struct vmm__dirty_stats {
	uint64_t syncs;          /* vmm__dirty_sync calls */
	uint64_t ring_full;      /* KVM_EXIT_DIRTY_RING_FULL exits served */
	uint64_t ring_harvested; /* ring entries harvested, repeats of a page included */
};
void vmm__dirty_get_stats(struct vmm__dirty_ctx *ctx, struct vmm__dirty_stats *st);

/* vCPU thread hook for KVM_EXIT_DIRTY_RING_FULL: harvests this vCPU's ring into the
 * tracker's accumulated bitmap (or drops it without a tracker) and resets the rings, so the
 * vCPU can continue. Returns 0 or an error. */
int vmm__dirty_ring_full(struct vmm__dirty_ctx *ctx, uint32_t vcpu_id);

/* Gives ctx its KVM VM, right after KVM_CREATE_VM and before the first vCPU, and enables
 * the ring capability when ring_entries != 0. VMM_ENOMEM, VMM_EUNSUPPORTED (no ring, or larger than
 * this host allows) or VMM_EINVAL (not a power of two, smaller than one page) with detail. */
int vmm__dirty_attach(struct vmm__dirty_ctx *ctx, const struct vmm__kvm *kvm, int vm_fd);

/* Maps vCPU vcpu_id's ring (after KVM_CREATE_VCPU) when the ring is enabled; no-op
 * otherwise. */
int vmm__dirty_ring_map(struct vmm__dirty_ctx *ctx, uint32_t vcpu_id, int vcpu_fd);

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
	/* Under ctx->lock: pages marked by the host or harvested from a ring and not yet
	 * reported by a sync (acc_any says whether any is), and the counters. */
	uint64_t *acc;
	int acc_any;
	struct vmm__dirty_stats stats;
	/* Under ctx->lock: every page reported by a sync since start or the last rebase. */
	uint64_t *since_base;
	/* Per-slot bitmaps exchanged with KVM by sync and clear: controlling thread only. */
	uint64_t *slot_bm[VMM_MEM_REGIONS_MAX];
};

/* Harvests every entry KVM published in vCPU id's ring: marks its page in acc (NULL: drop
 * it) and hands the entry back (RESET). Returns how many. Caller holds ctx->lock. */
uint32_t vmm__dirty_ring_harvest(struct vmm__dirty_ctx *ctx, uint32_t id, uint64_t *acc);
/* KVM_RESET_DIRTY_RINGS: re-protects the pages of every harvested entry. */
int vmm__dirty_ring_reset(struct vmm__dirty_ctx *ctx);
/* Unmaps every vCPU's ring. */
void vmm__dirty_ring_unmap_all(struct vmm__dirty_ctx *ctx);

#endif
