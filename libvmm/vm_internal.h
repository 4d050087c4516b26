/* The VM object and what its parts share. Only libvmm/ and migrate/ include this. */
#ifndef VMM_VM_INTERNAL_H
#define VMM_VM_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "vmm/vm.h"
#include "libvmm/bus.h"
#include "libvmm/device.h"
#include "libvmm/device_host.h"
#include "libvmm/dirty.h"
#include "libvmm/kvm.h"
#include "libvmm/memory.h"
#include "libvmm/run_control.h"
#include "libvmm/vcpu.h"
#include "libvmm/move_state.h"

struct vmm__cpu_model;

struct vmm_vm {
	struct vmm_vm_config cfg;
	char *cmdline;
	struct vmm__kvm *kvm;
	const struct vmm__cpu_model *cpu_model; /* what new vCPUs get (cpu_model.h) */
	/* The model's name, or the one a restored or received state was saved with (which a
	 * newer libvmm may know and this one not). */
	char cpu_model_name[32];
	int fd; /* the KVM VM */
	struct vmm__memory mem;
	uint32_t nvcpus;
	struct vmm__vcpu *vcpus;
	struct vmm__bus pio;
	struct vmm__bus mmio;
	struct vmm__devices devices;
	uint32_t nvirtio; /* virtio-mmio slots taken (vm_devices.c) */
	/* Dirty-page tracking (dirty.h): the vCPUs' rings, and the tracker while one runs. */
	struct vmm__dirty_ctx dirty;

	/* The services devices get from the VM: IRQ lines, stop, log. */
	struct vmm__device_host host;
	/* Lifecycle state, pause, stop and throttle with the vCPU threads. */
	struct vmm__run_control *runctl;
	/* Guards what is loaded and the registrations against a concurrent start; taken
	 * before run control's lock. */
	pthread_mutex_t lock;
	int loaded; /* a kernel or a saved state is in place: the VM can start */
	struct vmm__move_state move; /* snapshots and migration only (vm_move.c) */
	int threads_joined;
};

/* Longest kernel command line, NUL included (config check and loaders). */
#define VMM_CMDLINE_MAX 4096

/* Guest RAM from a file instead of a fresh memfd (lazy snapshot restore). */
struct vmm__mem_backing {
	int fd;
	uint64_t offset;
};

/* vmm_vm_create with an optional RAM backing. */
int vmm__vm_create(const struct vmm_vm_config *cfg, const struct vmm__mem_backing *backing,
		   struct vmm_vm **out);

/* Logs through the config's callback, if any. The embedder's callback may call back into
 * the library, so never call this with vm->lock (or any other lock) held: queue the
 * message with vmm__log_later() and flush it once the lock is dropped. */
void vmm__log(struct vmm_vm *vm, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Log messages kept while a lock is held; zero-initialise, flush exactly once. */
struct vmm__log_queue {
	char *buf; /* records: level byte, text, NUL */
	size_t len, cap;
	unsigned dropped;
};
void vmm__log_later(struct vmm__log_queue *q, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Logs and frees what q holds. No lock held. */
void vmm__log_flush(struct vmm_vm *vm, struct vmm__log_queue *q);

/* Pause and resume for the embedder (VMM__RC_EMBEDDER: refused while a job owns the VM)
 * or for the job itself (VMM__RC_JOB). Resume refuses a VM migrated away either way. */
int vmm__vm_pause(struct vmm_vm *vm, enum vmm__rc_caller who);
int vmm__vm_resume(struct vmm_vm *vm, enum vmm__rc_caller who);

/* Sets the vCPU throttle (0..99 %) for auto-converge. Controller thread only. */
int vmm__vm_set_throttle(struct vmm_vm *vm, uint32_t pct);
/* The throttle in force, in %. */
uint32_t vmm__vm_throttle(struct vmm_vm *vm);


#endif
