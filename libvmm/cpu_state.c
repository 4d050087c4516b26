/* Reads a vCPU's complete architectural state and the VM-wide in-kernel device state out of
 * KVM, and writes them back. The order of the KVM calls is the subtle part: it is written
 * down, with the reasons, at vmm__cpu_state_get(), vmm__cpu_state_set() and the VM calls. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libvmm/cpu_state.h"
#include "libvmm/error_internal.h"

#define MSR_IA32_TSC_DEADLINE 0x6e0

/* KVM_GET_MSRS/KVM_SET_MSRS refuse batches of 256 entries or more (E2BIG). */
#define MSR_BATCH 255
#define CPUID_MAX 256
/* Frequencies this close count as equal: calibration of the same model differs by about
 * this much, and KVM itself treats a difference under 250 ppm as no scaling needed. */
#define TSC_KHZ_PPM 250

static int kvm_call(int fd, unsigned long req, void *arg, const char *name)
{
	if (vmm__ioctl(fd, req, arg) < 0)
		return vmm__err_sys(VMM_EKVM, name);
	return 0;
}

static struct kvm_msrs *msr_buf_alloc(void)
{
	return calloc(1, sizeof(struct kvm_msrs) + MSR_BATCH * sizeof(struct kvm_msr_entry));
}

static struct kvm_cpuid2 *cpuid_alloc(uint32_t n)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	if (c)
		c->nent = n;
	return c;
}

/* ---------------------------------------------------------------- get */

/* Every MSR of KVM's list that KVM_GET_MSRS can read. KVM reads a batch in order and returns
 * how many it read, so a short count points at an MSR it cannot read (for example one that
 * the guest's CPUID does not enable): leave that one out and carry on after it. */
static int get_msrs(const struct vmm__kvm *kvm, int fd, struct vmm__cpu_state *st)
{
	uint32_t n = kvm->msrs ? kvm->msrs->nmsrs : 0, i = 0;
	struct kvm_msrs *buf;
	int r = 0;

	st->msrs = calloc(n ? n : 1, sizeof(*st->msrs));
	buf = msr_buf_alloc();
	if (!st->msrs || !buf) {
		free(buf);
		return vmm__err(VMM_ENOMEM, "MSR buffer");
	}
	while (i < n) {
		uint32_t chunk = n - i < MSR_BATCH ? n - i : MSR_BATCH;

		buf->nmsrs = chunk;
		memset(buf->entries, 0, chunk * sizeof(buf->entries[0]));
		for (uint32_t j = 0; j < chunk; j++)
			buf->entries[j].index = kvm->msrs->indices[i + j];
		r = vmm__ioctl(fd, KVM_GET_MSRS, buf);
		if (r < 0) {
			r = vmm__err_sys(VMM_EKVM, "KVM_GET_MSRS");
			break;
		}
		if ((uint32_t)r > chunk)
			r = chunk;
		memcpy(&st->msrs[st->nmsrs], buf->entries, r * sizeof(buf->entries[0]));
		st->nmsrs += r;
		i += r;
		if ((uint32_t)r < chunk)
			i++;
		r = 0;
	}
	free(buf);
	return r;
}

static int get_xsave(const struct vmm__kvm *kvm, int fd, struct vmm__cpu_state *st)
{
	uint32_t size = sizeof(struct kvm_xsave);

	/* KVM_GET_XSAVE2 writes KVM_CAP_XSAVE2's size, which grows past 4096 bytes with
	 * components such as AMX; KVM_GET_XSAVE writes exactly struct kvm_xsave. */
	if (kvm->has_xsave2 && kvm->xsave_size > (int)size)
		size = kvm->xsave_size;
	st->xsave = calloc(1, size);
	if (!st->xsave)
		return vmm__err(VMM_ENOMEM, "XSAVE area");
	st->xsave_size = size;
	if (kvm->has_xsave2)
		return kvm_call(fd, KVM_GET_XSAVE2, st->xsave, "KVM_GET_XSAVE2");
	return kvm_call(fd, KVM_GET_XSAVE, st->xsave, "KVM_GET_XSAVE");
}

static int get_cpuid(int fd, struct vmm__cpu_state *st)
{
	struct kvm_cpuid2 *c = cpuid_alloc(CPUID_MAX);

	if (!c)
		return vmm__err(VMM_ENOMEM, "CPUID table");
	if (vmm__ioctl(fd, KVM_GET_CPUID2, c) < 0) {
		free(c);
		return vmm__err_sys(VMM_EKVM, "KVM_GET_CPUID2");
	}
	st->ncpuid = c->nent;
	st->cpuid = calloc(c->nent ? c->nent : 1, sizeof(*st->cpuid));
	if (st->cpuid)
		memcpy(st->cpuid, c->entries, c->nent * sizeof(*st->cpuid));
	free(c);
	return st->cpuid ? 0 : vmm__err(VMM_ENOMEM, "CPUID table");
}

/* Ordering requirements on save (the vCPU must be outside KVM_RUN; KVM_GET_VCPU_EVENTS is
 * only consistent while no other vCPU of the VM runs either):
 *
 * - KVM_GET_MP_STATE first: it runs kvm_apic_accept_events(), which acts on a latched
 *   INIT or SIPI and so may reset the vCPU (regs, sregs, pending events) or move CS:RIP to
 *   the SIPI vector. Everything read after it sees that result (Firecracker; QEMU reads it
 *   before REGS/SREGS for the same reason).
 * - KVM_GET_VCPU_EVENTS right after, before SREGS and DEBUGREGS: it folds queued NMIs into
 *   nmi.pending, latches a pending SMI, and, unless the VM enabled
 *   KVM_CAP_EXCEPTION_PAYLOAD, delivers a pending #PF/#DB payload into CR2/DR6. CR2 and DR6
 *   must be read after that or the saved exception and its payload disagree. (QEMU reads
 *   events first of all, before MP_STATE; but an INIT taken by MP_STATE resets the event
 *   state, so events read before it can be stale.) Nothing read later changes the events.
 * - REGS, SREGS, XSAVE, XCRS, DEBUGREGS, LAPIC, MSRs, CPUID, TSC_KHZ: plain reads. GET_LAPIC
 *   folds posted interrupts into IRR and computes the timer's current count; MSRs include
 *   the TSC, which keeps running, so the vCPU's TSC is the value at that instant.
 */
int vmm__cpu_state_get(const struct vmm__kvm *kvm, int vcpu_fd, struct vmm__cpu_state *st)
{
	uint32_t id = st->id;
	int r;

	memset(st, 0, sizeof(*st));
	st->id = id;
	if ((r = kvm_call(vcpu_fd, KVM_GET_MP_STATE, &st->mp_state, "KVM_GET_MP_STATE")) ||
	    (r = kvm_call(vcpu_fd, KVM_GET_VCPU_EVENTS, &st->events, "KVM_GET_VCPU_EVENTS")) ||
	    (r = kvm_call(vcpu_fd, KVM_GET_REGS, &st->regs, "KVM_GET_REGS")) ||
	    (r = kvm_call(vcpu_fd, KVM_GET_SREGS, &st->sregs, "KVM_GET_SREGS")) ||
	    (r = get_xsave(kvm, vcpu_fd, st)))
		return r;
	if (kvm->has_xcrs &&
	    (r = kvm_call(vcpu_fd, KVM_GET_XCRS, &st->xcrs, "KVM_GET_XCRS")))
		return r;
	if ((r = kvm_call(vcpu_fd, KVM_GET_DEBUGREGS, &st->debugregs, "KVM_GET_DEBUGREGS")) ||
	    (r = kvm_call(vcpu_fd, KVM_GET_LAPIC, &st->lapic, "KVM_GET_LAPIC")) ||
	    (r = get_msrs(kvm, vcpu_fd, st)) || (r = get_cpuid(vcpu_fd, st)))
		return r;
	r = vmm__ioctl(vcpu_fd, KVM_GET_TSC_KHZ, NULL);
	st->tsc_khz = r > 0 ? (uint32_t)r : 0;
	return 0;
}

/* ---------------------------------------------------------------- set */

static int cpuid_entry_eq(const struct kvm_cpuid_entry2 *a, const struct kvm_cpuid_entry2 *b)
{
	return a->function == b->function && a->index == b->index && a->flags == b->flags &&
	       a->eax == b->eax && a->ebx == b->ebx && a->ecx == b->ecx && a->edx == b->edx;
}

/* Whether the vCPU already holds exactly this table, in any order. */
static int cpuid_in_place(int fd, const struct vmm__cpu_state *st)
{
	struct kvm_cpuid2 *cur = cpuid_alloc(CPUID_MAX);
	int same = 0;

	if (cur && vmm__ioctl(fd, KVM_GET_CPUID2, cur) == 0 && cur->nent == st->ncpuid) {
		same = 1;
		for (uint32_t i = 0; same && i < st->ncpuid; i++) {
			same = 0;
			for (uint32_t j = 0; !same && j < cur->nent; j++)
				same = cpuid_entry_eq(&st->cpuid[i], &cur->entries[j]);
		}
	}
	free(cur);
	return same;
}

/* Since Linux 5.16 KVM_SET_CPUID2 on a vCPU that has run fails with EINVAL unless the table
 * is identical to the current one. libvmm sets state into fresh vCPUs, but setting a state
 * back into the vCPU it came from must work too: an identical table is left alone. */
static int set_cpuid(int fd, const struct vmm__cpu_state *st)
{
	struct kvm_cpuid2 *c;
	int r = 0;

	if (st->ncpuid > CPUID_MAX)
		return vmm__err(VMM_EINVAL, "CPUID table of %u entries", st->ncpuid);
	if (cpuid_in_place(fd, st))
		return 0;
	c = cpuid_alloc(st->ncpuid);
	if (!c)
		return vmm__err(VMM_ENOMEM, "CPUID table");
	for (uint32_t i = 0; i < st->ncpuid; i++) {
		c->entries[i] = st->cpuid[i];
		memset(c->entries[i].padding, 0, sizeof(c->entries[i].padding));
	}
	if (vmm__ioctl(fd, KVM_SET_CPUID2, c) < 0)
		r = vmm__err(VMM_EKVM, "KVM_SET_CPUID2: %s%s", strerror(errno),
			     errno == EINVAL ? " (a vCPU that has run takes only its own)" : "");
	free(c);
	return r;
}

/* Within TSC_KHZ_PPM of each other. */
static int tsc_same(uint32_t a, uint32_t b)
{
	uint64_t diff = a > b ? (uint64_t)a - b : (uint64_t)b - a;

	return diff * 1000000 <= (uint64_t)b * TSC_KHZ_PPM;
}

/* The rate is set only when it differs by more than TSC_KHZ_PPM. Whether this host can run
 * the guest at its rate at all is vmm__cpu_tsc_prepare()'s question, asked before the state
 * is installed; here a refusal is left as it is (vmm__cpu_state_set's callers that did not
 * ask, such as a state set back into the vCPU it came from, keep today's behaviour). */
static void set_tsc_khz(int fd, uint32_t khz)
{
	int cur;

	if (!khz)
		return;
	cur = vmm__ioctl(fd, KVM_GET_TSC_KHZ, NULL);
	if (cur > 0 && tsc_same((uint32_t)cur, khz))
		return;
	(void)vmm__ioctl(fd, KVM_SET_TSC_KHZ, (void *)(uintptr_t)khz);
}

/* A guest clocked by its TSC (calibrated once at boot) runs at the wrong rate if the TSC
 * does: every timeout, sleep and clock drifts by the ratio. KVM runs a guest at another
 * rate only with TSC scaling (KVM_CAP_TSC_CONTROL: VMX/SVM TSC multipliers). Without it KVM
 * refuses a slower rate (EINVAL) and takes a faster one by jumping the TSC forward at each
 * entry (catch-up), which is no steady clock either: both count as cannot. The rate is set
 * here, on the fresh vCPU (where vmm__cpu_state_set would set it: before the MSRs). */
int vmm__cpu_tsc_prepare(const struct vmm__kvm *kvm, int fd, uint32_t khz, char *why, size_t len)
{
	int cur, scaling;

	if (!khz)
		return 0;
	cur = vmm__ioctl(fd, KVM_GET_TSC_KHZ, NULL);
	if (cur > 0 && tsc_same((uint32_t)cur, khz))
		return 0;
	scaling = vmm__ioctl(kvm->fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_TSC_CONTROL) > 0;
	if (vmm__ioctl(fd, KVM_SET_TSC_KHZ, (void *)(uintptr_t)khz) < 0)
		snprintf(why, len, "TSC of %u kHz: this host runs at %d kHz and KVM_SET_TSC_KHZ "
			 "refused the guest's rate (%s)", khz, cur, strerror(errno));
	else if (!scaling)
		snprintf(why, len, "TSC of %u kHz: this host runs at %d kHz and cannot scale it "
			 "(no KVM_CAP_TSC_CONTROL)", khz, cur);
	else
		return 0;
	return 1;
}

static int set_xsave(const struct vmm__kvm *kvm, int fd, const struct vmm__cpu_state *st)
{
	size_t size = sizeof(struct kvm_xsave);
	uint8_t *buf;
	int r;

	if (!st->xsave || st->xsave_size < sizeof(struct kvm_xsave))
		return vmm__err(VMM_EINVAL, "XSAVE area of %u bytes", st->xsave_size);
	/* KVM_SET_XSAVE reads as many bytes as this host's guest XSAVE layout has (KVM_CAP_XSAVE2),
	 * whatever size the state came with: pad a smaller area with zeros (XSTATE_BV tells KVM
	 * which components are present). A larger one is passed whole; KVM refuses it only if it
	 * holds components this host cannot give the guest. */
	if (kvm->has_xsave2 && (size_t)kvm->xsave_size > size)
		size = kvm->xsave_size;
	if (st->xsave_size > size)
		size = st->xsave_size;
	buf = calloc(1, size);
	if (!buf)
		return vmm__err(VMM_ENOMEM, "XSAVE area");
	memcpy(buf, st->xsave, st->xsave_size);
	r = kvm_call(fd, KVM_SET_XSAVE, buf, "KVM_SET_XSAVE");
	free(buf);
	return r;
}

static int set_xcrs(const struct vmm__kvm *kvm, int fd, const struct vmm__cpu_state *st)
{
	struct kvm_xcrs x = st->xcrs;

	if (!x.nr_xcrs)
		return 0;
	if (!kvm->has_xcrs)
		return vmm__err(VMM_EUNSUPPORTED, "state has XCRs but KVM lacks KVM_CAP_XCRS");
	if (x.nr_xcrs > KVM_MAX_XCRS)
		return vmm__err(VMM_EINVAL, "%u XCRs", x.nr_xcrs);
	return kvm_call(fd, KVM_SET_XCRS, &x, "KVM_SET_XCRS");
}

static void report_skip(vmm__msr_skip_fn skip, void *opaque, const struct kvm_msr_entry *e)
{
	char why[80];

	if (!skip)
		return;
	snprintf(why, sizeof(why), "KVM_SET_MSRS refused value 0x%llx",
		 (unsigned long long)e->data);
	skip(opaque, e->index, why);
}

/* KVM_SET_MSRS writes a batch in order and returns how many it wrote: a short count means
 * the entry at that position was refused. Report it, skip it, write the rest. */
static int set_msr_list(int fd, const struct kvm_msr_entry *e, uint32_t n, struct kvm_msrs *buf,
			vmm__msr_skip_fn skip, void *opaque)
{
	uint32_t i = 0;

	while (i < n) {
		uint32_t chunk = n - i < MSR_BATCH ? n - i : MSR_BATCH;
		int r;

		buf->nmsrs = chunk;
		for (uint32_t j = 0; j < chunk; j++)
			buf->entries[j] = (struct kvm_msr_entry){ .index = e[i + j].index,
								  .data = e[i + j].data };
		r = vmm__ioctl(fd, KVM_SET_MSRS, buf);
		if (r < 0)
			return vmm__err_sys(VMM_EKVM, "KVM_SET_MSRS");
		if ((uint32_t)r > chunk)
			r = chunk;
		i += r;
		if ((uint32_t)r < chunk)
			report_skip(skip, opaque, &e[i++]);
	}
	return 0;
}

/* All MSRs but the TSC deadline, then the TSC deadline. KVM arms the LAPIC timer from a
 * TSC_DEADLINE write by comparing it with the guest TSC, so the TSC must already hold its
 * restored value (Firecracker defers it the same way, QEMU writes it last). */
static int set_msrs(int fd, const struct vmm__cpu_state *st, vmm__msr_skip_fn skip, void *opaque)
{
	struct kvm_msr_entry *order = calloc(st->nmsrs ? st->nmsrs : 1, sizeof(*order));
	struct kvm_msrs *buf = msr_buf_alloc();
	uint32_t n = 0, late;
	int r;

	if (!order || !buf) {
		free(order);
		free(buf);
		return vmm__err(VMM_ENOMEM, "MSR buffer");
	}
	for (uint32_t i = 0; i < st->nmsrs; i++)
		if (st->msrs[i].index != MSR_IA32_TSC_DEADLINE)
			order[n++] = st->msrs[i];
	late = n;
	for (uint32_t i = 0; i < st->nmsrs; i++)
		if (st->msrs[i].index == MSR_IA32_TSC_DEADLINE)
			order[n++] = st->msrs[i];
	r = set_msr_list(fd, order, late, buf, skip, opaque);
	if (!r)
		r = set_msr_list(fd, order + late, n - late, buf, skip, opaque);
	free(order);
	free(buf);
	return r;
}

/* Ordering requirements on restore (fresh vCPU, or one parked outside KVM_RUN; guest RAM
 * must already hold its contents, because SET_SREGS in PAE mode loads the PDPTEs from it):
 *
 * 1. KVM_SET_CPUID2 first. KVM validates much of what follows against the guest's CPUID:
 *    CR4 bits in SREGS (OSXSAVE, PKE, LA57, ...), XSTATE_BV in XSAVE and XCR0 against
 *    leaf 0xD, and which MSRs exist and take which values.
 * 2. KVM_SET_TSC_KHZ before the MSRs: the write of MSR_IA32_TSC computes the TSC offset at
 *    the vCPU's rate, so the rate must be in place first (QEMU sets it before its MSRs).
 * 3. KVM_SET_SREGS, then KVM_SET_REGS (QEMU's order): SREGS puts the vCPU in its mode (CR0,
 *    EFER, CS) before REGS' RFLAGS is applied in it (VMX without unrestricted guest runs real
 *    mode as vm86 and keeps RFLAGS accordingly). SREGS also carries APIC_BASE, needed by 5.
 * 4. KVM_SET_XSAVE, KVM_SET_XCRS, KVM_SET_DEBUGREGS: after CPUID, no other dependency.
 * 5. KVM_SET_LAPIC after SREGS: KVM reads the register page according to the APIC mode
 *    in APIC_BASE (the x2APIC ID format differs) (Firecracker; QEMU sets APIC_BASE right
 *    before SET_LAPIC).
 * 6. KVM_SET_MSRS after LAPIC: the TSC deadline is accepted only while the LAPIC timer is
 *    in TSC-deadline mode; and MSR_IA32_TSC before MSR_IA32_TSC_DEADLINE (set_msrs()).
 * 7. KVM_SET_VCPU_EVENTS after REGS (SET_REGS drops a pending exception), after SREGS (its
 *    interrupt bitmap queues an interrupt; the events are the authority), after LAPIC
 *    (the events write smi.latched_init into the LAPIC's pending events, and an NMI pending
 *    in them must meet the restored LVTs) and after the MSRs (Firecracker's and QEMU's
 *    order).
 * 8. KVM_SET_MP_STATE last (QEMU's order): SET_SREGS forces a BSP whose CS:RIP is the reset
 *    vector to RUNNABLE, which must not win over the saved state; and KVM refuses
 *    INIT_RECEIVED for a vCPU in SMM, which it judges from the events set in 7.
 * 9. KVM_KVMCLOCK_CTRL: tells a kvmclock guest it was stopped, so its soft-lockup watchdog
 *    does not fire on the time that passed (Firecracker does this on restore). It fails with
 *    EINVAL when the guest has no kvmclock; that is not an error.
 */
int vmm__cpu_state_set(const struct vmm__kvm *kvm, int vcpu_fd, const struct vmm__cpu_state *st,
		       vmm__msr_skip_fn skip, void *opaque)
{
	struct kvm_regs regs = st->regs;
	struct kvm_sregs sregs = st->sregs;
	struct kvm_debugregs dbg = st->debugregs;
	struct kvm_lapic_state lapic = st->lapic;
	struct kvm_vcpu_events events = st->events;
	struct kvm_mp_state mp = st->mp_state;
	int r;

	if ((r = set_cpuid(vcpu_fd, st)))
		return r;
	set_tsc_khz(vcpu_fd, st->tsc_khz);
	if ((r = kvm_call(vcpu_fd, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS")) ||
	    (r = kvm_call(vcpu_fd, KVM_SET_REGS, &regs, "KVM_SET_REGS")) ||
	    (r = set_xsave(kvm, vcpu_fd, st)) || (r = set_xcrs(kvm, vcpu_fd, st)) ||
	    (r = kvm_call(vcpu_fd, KVM_SET_DEBUGREGS, &dbg, "KVM_SET_DEBUGREGS")) ||
	    (r = kvm_call(vcpu_fd, KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC")) ||
	    (r = set_msrs(vcpu_fd, st, skip, opaque)) ||
	    (r = kvm_call(vcpu_fd, KVM_SET_VCPU_EVENTS, &events, "KVM_SET_VCPU_EVENTS")) ||
	    (r = kvm_call(vcpu_fd, KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE")))
		return r;
	(void)vmm__ioctl(vcpu_fd, KVM_KVMCLOCK_CTRL, NULL);
	return 0;
}

void vmm__cpu_state_free(struct vmm__cpu_state *st)
{
	if (!st)
		return;
	free(st->xsave);
	free(st->msrs);
	free(st->cpuid);
	st->xsave = NULL;
	st->xsave_size = 0;
	st->msrs = NULL;
	st->nmsrs = 0;
	st->cpuid = NULL;
	st->ncpuid = 0;
}

/* ---------------------------------------------------------------- VM-wide state */

static int get_chip(int vm_fd, uint32_t id, struct kvm_irqchip *chip)
{
	memset(chip, 0, sizeof(*chip));
	chip->chip_id = id;
	return kvm_call(vm_fd, KVM_GET_IRQCHIP, chip, "KVM_GET_IRQCHIP");
}

int vmm__vm_kstate_get(int vm_fd, struct vmm__vm_kstate *ks)
{
	int r;

	memset(ks, 0, sizeof(*ks));
	if ((r = get_chip(vm_fd, KVM_IRQCHIP_PIC_MASTER, &ks->pic_master)) ||
	    (r = get_chip(vm_fd, KVM_IRQCHIP_PIC_SLAVE, &ks->pic_slave)) ||
	    (r = get_chip(vm_fd, KVM_IRQCHIP_IOAPIC, &ks->ioapic)) ||
	    (r = kvm_call(vm_fd, KVM_GET_PIT2, &ks->pit, "KVM_GET_PIT2")))
		return r;
	return kvm_call(vm_fd, KVM_GET_CLOCK, &ks->clock, "KVM_GET_CLOCK");
}

static int set_chip(int vm_fd, uint32_t id, const struct kvm_irqchip *saved)
{
	struct kvm_irqchip chip = *saved;

	chip.chip_id = id;
	chip.pad = 0;
	return kvm_call(vm_fd, KVM_SET_IRQCHIP, &chip, "KVM_SET_IRQCHIP");
}

/* Ordering requirements for the VM-wide state, restored after every vCPU's state (as
 * Firecracker does):
 *
 * - PICs and IOAPIC after the LAPICs: setting the IOAPIC re-delivers the lines it holds
 *   pending, and SET_LAPIC would overwrite an interrupt already delivered to a LAPIC.
 * - PIT after the interrupt controllers: it restarts counting at once and its first tick
 *   must land in the restored controllers.
 * - kvmclock last, as close to resuming as possible. Only the clock value is restored, with
 *   flags 0: KVM refuses TSC_STABLE and HOST_TSC on older kernels, and REALTIME would advance
 *   kvmclock by the wall time since the save while the TSC (restored through its MSR) does
 *   not advance, so the guest's two clocks would disagree. Both resume where they stopped,
 *   as in QEMU.
 */
int vmm__vm_kstate_set(int vm_fd, const struct vmm__vm_kstate *ks)
{
	struct kvm_pit_state2 pit = ks->pit;
	struct kvm_clock_data clock = { .clock = ks->clock.clock };
	int r;

	memset(pit.reserved, 0, sizeof(pit.reserved));
	if ((r = set_chip(vm_fd, KVM_IRQCHIP_PIC_MASTER, &ks->pic_master)) ||
	    (r = set_chip(vm_fd, KVM_IRQCHIP_PIC_SLAVE, &ks->pic_slave)) ||
	    (r = set_chip(vm_fd, KVM_IRQCHIP_IOAPIC, &ks->ioapic)) ||
	    (r = kvm_call(vm_fd, KVM_SET_PIT2, &pit, "KVM_SET_PIT2")))
		return r;
	return kvm_call(vm_fd, KVM_SET_CLOCK, &clock, "KVM_SET_CLOCK");
}
