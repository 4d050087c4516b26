/* All architectural state of one vCPU and the VM-wide in-kernel devices, held in KVM's own
 * structures; get/set talk to KVM, encode/decode (state_codec.h) turn them into protobuf.
 * Kept apart so that the codec is testable without /dev/kvm. */
#ifndef VMM_CPU_STATE_H
#define VMM_CPU_STATE_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "libvmm/kvm.h"

struct vmm__cpu_state {
	uint32_t id; /* vCPU index */
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint8_t *xsave; /* KVM_GET_XSAVE2/KVM_GET_XSAVE area */
	uint32_t xsave_size;
	struct kvm_xcrs xcrs;
	uint32_t nmsrs;
	struct kvm_msr_entry *msrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_debugregs debugregs;
	uint32_t ncpuid;
	struct kvm_cpuid_entry2 *cpuid;
	uint32_t tsc_khz; /* 0 if KVM_GET_TSC_KHZ failed */
};

/* VM-wide in-kernel state: kvmclock, the two PICs, the IOAPIC and the PIT. */
struct vmm__vm_kstate {
	struct kvm_clock_data clock;
	struct kvm_irqchip pic_master;
	struct kvm_irqchip pic_slave;
	struct kvm_irqchip ioapic;
	struct kvm_pit_state2 pit;
};

/* Called for each MSR KVM refuses on set (and so skips): index and why. */
typedef void (*vmm__msr_skip_fn)(void *opaque, uint32_t index, const char *why);

/* Reads every piece of state of a vCPU that is not inside KVM_RUN. On error st is left
 * freeable. */
int vmm__cpu_state_get(const struct vmm__kvm *kvm, int vcpu_fd, struct vmm__cpu_state *st);
/* Writes it back into a vCPU that has not run yet (or is parked). Refused MSRs are skipped
 * and reported through skip; every other failure is an error naming the ioctl. */
int vmm__cpu_state_set(const struct vmm__kvm *kvm, int vcpu_fd, const struct vmm__cpu_state *st,
		       vmm__msr_skip_fn skip, void *opaque);
void vmm__cpu_state_free(struct vmm__cpu_state *st);

/* Puts a fresh vCPU at the guest's TSC rate khz (0: unknown, nothing to do). 0 if it runs
 * at that rate now (within 250 ppm); 1, with the reason in why, if this host cannot give
 * it steadily (no TSC scaling, or KVM refused). Not an error by itself: the caller decides
 * (VMM_ECPU, or a warning when the caller allows a CPU mismatch). */
int vmm__cpu_tsc_prepare(const struct vmm__kvm *kvm, int vcpu_fd, uint32_t khz, char *why,
			 size_t len);

int vmm__vm_kstate_get(int vm_fd, struct vmm__vm_kstate *ks);
int vmm__vm_kstate_set(int vm_fd, const struct vmm__vm_kstate *ks);

#endif
