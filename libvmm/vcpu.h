/* One vCPU and its thread: the KVM_RUN loop and exit dispatch to the port-I/O and MMIO
 * buses. It knows the VM only through what the VM hands it below; pause, stop and
 * throttle go through run control. */
#ifndef VMM_VCPU_H
#define VMM_VCPU_H

#include <pthread.h>
#include <stdint.h>

#include "vmm/vm.h"

struct kvm_run;
struct vmm__bus;
struct vmm__run_control;
struct vmm__run_kicker;

struct vmm__vcpu {
	uint32_t id; /* also its number in run control */
	int fd;
	struct kvm_run *run; /* mmap'd, shared with KVM */
	pthread_t thread;
	int thread_started; /* written under run control's lock */

	/* What the run loop works against, filled by the VM before the thread starts. */
	struct vmm__run_control *rc;
	const struct vmm__bus *pio;
	const struct vmm__bus *mmio;
	/* KVM_EXIT_DIRTY_RING_FULL: harvest; nonzero (error set) ends the VM. */
	int (*dirty_ring_full)(struct vmm__vcpu *vcpu);
	vmm_log_fn log; /* NULL: none */
	void *log_opaque;

	struct vmm_vm *vm; /* the owner, for the boot code; not used here */
};

/* The vCPU thread body; arg is the struct vmm__vcpu. */
void *vmm__vcpu_thread(void *arg);
/* Makes a vCPU leave KVM_RUN promptly: immediate_exit plus a signal. */
void vmm__vcpu_kick(struct vmm__vcpu *vcpu);
/* Installs the handler for the kick signal (vmm_kick_signal_set()), once per process;
 * from then on the signal is fixed. */
int vmm__vcpu_signal_setup(void);
/* Run control's kicker over an array of vCPUs (ctx is &vcpus[0]). Spawned threads
 * inherit the caller's signal mask before opening the kick signal alone. */
extern const struct vmm__run_kicker vmm__vcpu_kicker;

#endif
