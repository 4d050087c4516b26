/* The VM object and what its parts share. Only libvmm/ and migrate/ include this. */
#ifndef VMM_VM_INTERNAL_H
#define VMM_VM_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "vmm/vm.h"
#include "bus.h"
#include "device.h"
#include "kvm.h"
#include "memory.h"
#include "vm_move.h"

struct vmm__vcpu {
	struct vmm_vm *vm;
	uint32_t id;
	int fd;
	struct kvm_run *run; /* mmap'd, shared with KVM */
	pthread_t thread;
	int thread_started;
	/* Dirty ring (dirty_ring.c), mapped when cfg.dirty_ring_entries != 0; ring_fetch is
	 * the next entry to harvest, moved only under vm->dirty_lock. */
	struct kvm_dirty_gfn *ring;
	uint32_t ring_fetch;
	int throttle_req; /* the throttle thread asks this vCPU to sleep once (vm->lock) */
};

struct vmm__dirty;

struct vmm_vm {
	struct vmm_vm_config cfg;
	char *cmdline;
	struct vmm__kvm *kvm;
	int fd; /* the KVM VM */
	struct vmm__memory mem;
	uint32_t nvcpus;
	struct vmm__vcpu *vcpus;
	struct vmm__bus pio;
	struct vmm__bus mmio;
	struct vmm__devices devices;
	/* Dirty-page tracking (dirty.c): the tracker while one runs. dirty_lock guards it,
	 * its accumulated bitmap and the rings' harvest against the vCPU threads. */
	pthread_mutex_t dirty_lock;
	struct vmm__dirty *dirty;

	/* Run state, guarded by lock. The vCPU threads park on cond while pause_req is set;
	 * the controller waits on cond for nparked to reach the number of live vCPUs. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vmm_vm_state state;
	int pause_req;
	int stop_req;
	uint32_t nparked;
	uint32_t nexited;
	struct vmm_exit exit;
	int loaded; /* a kernel or a saved state is in place: the VM can start */
	/* Auto-converge: each vCPU sleeps throttle_pct% of every VMM_THROTTLE_SLICE_NS,
	 * kicked out of KVM_RUN by the throttle thread (throttle.c). */
	uint32_t throttle_pct;
	pthread_t throttle_thread;
	int throttle_running;
	struct vmm__move_state move; /* snapshots and migration only (vm_move.c) */
	int threads_joined;
};

/* Guest RAM from a file instead of a fresh memfd (lazy snapshot restore). */
struct vmm__mem_backing {
	int fd;
	uint64_t offset;
};

/* vmm_vm_create with an optional RAM backing. */
int vmm__vm_create(const struct vmm_vm_config *cfg, const struct vmm__mem_backing *backing,
		   struct vmm_vm **out);

/* Logs through the config's callback, if any. */
void vmm__log(struct vmm_vm *vm, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Ends the VM from a vCPU thread or a device: records the first reason, asks every vCPU
 * to leave and marks the VM STOPPED. Takes vm->lock. */
void vmm__vm_request_stop(struct vmm_vm *vm, enum vmm_exit_reason reason, int status,
			  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define VMM_THROTTLE_SLICE_NS 10000000ull

/* Sets the vCPU throttle (0..99 %), starting or stopping the throttle thread. Controller
 * thread only. */
int vmm__vm_set_throttle(struct vmm_vm *vm, uint32_t pct);

/* The vCPU thread body (vcpu.c). */
void *vmm__vcpu_thread(void *arg);
/* Makes a vCPU leave KVM_RUN promptly: immediate_exit plus a signal. */
void vmm__vcpu_kick(struct vmm__vcpu *vcpu);
/* Installs the no-op handler for the kick signal, once per process. */
int vmm__vcpu_signal_setup(void);

/* Raise/lower an interrupt line on the in-kernel irqchip. */
int vmm__vm_irq_line(struct vmm_vm *vm, uint32_t irq, int level);

#endif
