/* The dirty-ring backend: KVM_CAP_DIRTY_LOG_RING(_ACQ_REL) enabled on the new VM, one ring
 * of struct kvm_dirty_gfn per vCPU mapped from its fd, harvested by the sync thread or, when
 * KVM stops a vCPU with KVM_EXIT_DIRTY_RING_FULL, by that vCPU's own thread.
 *
 * Ring protocol: KVM fills an entry's slot and offset, then publishes it by setting flags to
 * DIRTY (release). We read flags with acquire, and only then slot and offset; we hand the
 * entry back by storing RESET (release) after reading them. KVM_RESET_DIRTY_RINGS then
 * re-protects the pages of the handed-back entries and frees their places. Each ring has one
 * harvester at a time (ctx->lock), who alone moves the ring's fetch index. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "libvmm/bitmap.h"
#include "libvmm/dirty.h"
#include "libvmm/error_internal.h"
#include "libvmm/kvm.h"
#include "libvmm/memory.h"

static size_t ring_bytes(const struct vmm__dirty_ctx *ctx)
{
	return (size_t)ctx->ring_entries * sizeof(struct kvm_dirty_gfn);
}

/* The ring capability, sized before the first vCPU exists. */
static int ring_enable(struct vmm__dirty_ctx *ctx)
{
	uint32_t n = ctx->ring_entries;
	uint64_t bytes = (uint64_t)n * sizeof(struct kvm_dirty_gfn);
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	const struct vmm__kvm *kvm = ctx->kvm;
	struct kvm_enable_cap cap = { 0 };

	if (!n)
		return 0;
	if (n & (n - 1))
		return vmm__err(VMM_EINVAL, "dirty_ring_entries %u: not a power of two", n);
	if (!kvm->dirty_ring_max || !KVM_DIRTY_LOG_PAGE_OFFSET)
		return vmm__err(VMM_EUNSUPPORTED,
				"dirty_ring_entries %u: this host's KVM has no dirty ring (KVM_CAP_DIRTY_LOG_RING)",
				n);
	/* KVM wants at least a page of entries (and more than its reserve, which depends on
	 * the CPU: 64 entries, plus 512 where Intel PML is in use). */
	if (bytes < page)
		return vmm__err(VMM_EINVAL, "dirty_ring_entries %u: KVM needs at least %llu", n,
				(unsigned long long)(page / sizeof(struct kvm_dirty_gfn)));
	if (bytes > (uint64_t)kvm->dirty_ring_max)
		return vmm__err(VMM_EUNSUPPORTED,
				"dirty_ring_entries %u: this host's KVM allows at most %llu", n,
				(unsigned long long)(kvm->dirty_ring_max /
						     sizeof(struct kvm_dirty_gfn)));
	/* ACQ_REL where offered: it is the same ring, with the ordering written into the ABI
	 * (the plain one assumes a TSO host, which x86 is). */
	cap.cap = kvm->dirty_ring_acq_rel ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL
					      : KVM_CAP_DIRTY_LOG_RING;
	cap.args[0] = bytes;
	if (vmm__ioctl(ctx->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
		return vmm__err(errno == EINVAL ? VMM_EINVAL : VMM_EKVM,
				"KVM_ENABLE_CAP(DIRTY_LOG_RING%s, %llu bytes): %s (ring too small for KVM's reserve?)",
				kvm->dirty_ring_acq_rel ? "_ACQ_REL" : "",
				(unsigned long long)bytes, strerror(errno));
	return 0;
}

int vmm__dirty_attach(struct vmm__dirty_ctx *ctx, const struct vmm__kvm *kvm, int vm_fd)
{
	ctx->kvm = kvm;
	ctx->vm_fd = vm_fd;
	ctx->rings = calloc(ctx->nrings ? ctx->nrings : 1, sizeof(*ctx->rings));
	if (!ctx->rings)
		return vmm__err(VMM_ENOMEM, "dirty ring table");
	return ring_enable(ctx);
}

int vmm__dirty_ring_map(struct vmm__dirty_ctx *ctx, uint32_t vcpu_id, int vcpu_fd)
{
	struct vmm__dirty_ring *ring = &ctx->rings[vcpu_id];
	void *p;

	ring->gfns = NULL;
	ring->fetch = 0;
	if (!ctx->ring_entries)
		return 0;
	p = vmm__kvm_mmap(vcpu_fd, ring_bytes(ctx),
			  (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * sysconf(_SC_PAGESIZE));
	if (p == MAP_FAILED)
		return vmm__err_sys(VMM_EKVM, "mmap dirty ring");
	ring->gfns = p;
	return 0;
}

void vmm__dirty_ring_unmap_all(struct vmm__dirty_ctx *ctx)
{
	for (uint32_t i = 0; ctx->rings && i < ctx->nrings; i++) {
		if (ctx->rings[i].gfns)
			vmm__kvm_munmap(ctx->rings[i].gfns, ring_bytes(ctx));
		ctx->rings[i].gfns = NULL;
	}
}

/* Page index of a ring entry, or UINT64_MAX for one that names no RAM slot of ours (KVM only
 * logs slots we registered, so this is defence, not a case we expect). */
static uint64_t entry_page(const struct vmm__memory *mem, uint32_t slot, uint64_t offset)
{
	if (slot >> 16) /* address space 1 is SMM, which has no slots of ours */
		return UINT64_MAX;
	for (uint32_t i = 0; i < mem->nregions; i++) {
		const struct vmm__mem_region *r = &mem->regions[i];

		if (r->slot == (slot & 0xffff))
			return offset < r->size / VMM_PAGE_SIZE ? r->offset / VMM_PAGE_SIZE + offset
								: UINT64_MAX;
	}
	return UINT64_MAX;
}

uint32_t vmm__dirty_ring_harvest(struct vmm__dirty_ctx *ctx, uint32_t id, uint64_t *acc)
{
	struct vmm__dirty_ring *ring = &ctx->rings[id];
	uint32_t mask = ctx->ring_entries - 1, n = 0;

	if (!ring->gfns)
		return 0;
	/* Ends: KVM cannot publish into a place we have not handed back and it has not reset,
	 * so at most one ring's worth of entries is DIRTY while we walk. */
	for (;;) {
		struct kvm_dirty_gfn *e = &ring->gfns[ring->fetch & mask];
		uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);

		if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
			break;
		if (acc) {
			uint64_t p = entry_page(ctx->mem, e->slot, e->offset);

			if (p != UINT64_MAX)
				vmm__bitmap_set(acc, p);
		}
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		ring->fetch++;
		n++;
	}
	return n;
}

int vmm__dirty_ring_reset(struct vmm__dirty_ctx *ctx)
{
	/* Resets every vCPU's handed-back entries. It may stop early with EINTR when a signal
	 * is pending (the kick); the work done stays done, so retrying finishes it. */
	if (vmm__ioctl(ctx->vm_fd, KVM_RESET_DIRTY_RINGS, NULL) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_RESET_DIRTY_RINGS");
	return 0;
}

int vmm__dirty_ring_full(struct vmm__dirty_ctx *ctx, uint32_t vcpu_id)
{
	struct vmm__dirty *d;
	uint32_t n;
	int r;

	pthread_mutex_lock(&ctx->lock);
	d = ctx->tracker;
	n = vmm__dirty_ring_harvest(ctx, vcpu_id, d ? d->acc : NULL);
	if (d) {
		d->stats.ring_full++;
		d->stats.ring_harvested += n;
		if (n)
			d->acc_any = 1;
	}
	/* Also when n is 0: KVM keeps exiting until the ring drops below its soft limit. */
	r = vmm__dirty_ring_reset(ctx);
	pthread_mutex_unlock(&ctx->lock);
	return r;
}
