/* The VM as migrate/ sees it (vm_move.h): thin calls onto the VM object and its run
 * control, kept in one file so that those can change behind it. */
#include <string.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "libvmm/error_internal.h"
#include "libvmm/vm_internal.h"
#include "libvmm/vm_move.h"

struct vmm__memory *vmm__move_ram(struct vmm_vm *vm)
{
	return &vm->mem;
}

/* KVM_GET_SUPPORTED_CPUID reports the topology of the host CPU that ran the ioctl (leaf 1
 * EBX[31:24], leaves 0xb/0x1f EDX, AMD's 0x8000001e EAX/EBX): those are left out, or the
 * same host would look different from one call to the next. */
static uint64_t cpuid_digest(struct vmm_vm *vm)
{
	const struct kvm_cpuid2 *c = vm->kvm->cpuid;
	XXH3_state_t st;

	XXH3_64bits_reset(&st);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 e = c->entries[i];

		if (e.function == 1)
			e.ebx &= 0x00ffffff;
		if (e.function == 0xb || e.function == 0x1f)
			e.edx = 0;
		if (e.function == 0x8000001e)
			e.eax = e.ebx = 0;
		XXH3_64bits_update(&st, &e, sizeof(e));
	}
	return XXH3_64bits_digest(&st);
}

void vmm__move_shape(struct vmm_vm *vm, struct vmm__move_shape *sh)
{
	sh->mem_size = vm->mem.size;
	sh->vcpus = vm->nvcpus;
	sh->cmdline = vm->cmdline;
	sh->dirty_ring_entries = vm->cfg.dirty_ring_entries;
	sh->cpuid_digest = cpuid_digest(vm);
}

int vmm__move_create(const struct vmm_vm_config *cfg, int ram_fd, uint64_t ram_offset,
		     struct vmm_vm **out)
{
	struct vmm__mem_backing backing = { .fd = ram_fd, .offset = ram_offset };

	return vmm__vm_create(cfg, ram_fd >= 0 ? &backing : NULL, out);
}

/* From the thread that saw the page fail (no lock of ours held): the VM ends, its vCPUs
 * kicked before the fault is released (memory_pager.h). A VM not yet started is STOPPED
 * too: it never runs on a damaged file. */
static void pager_failed(void *ctx, int err, const char *detail)
{
	struct vmm_vm *vm = ctx;

	vmm__run_control_stop(vm->runctl, VMM_EXIT_ERROR, err, "%s", detail);
	vmm__log(vm, VMM_LOG_ERROR, "%s", detail);
}

int vmm__move_ram_pager(struct vmm_vm *vm, int fd, uint64_t offset, uint64_t *hashes)
{
	return vmm__memory_pager_start(&vm->mem, fd, offset, hashes, pager_failed, vm);
}

int vmm__move_ram_postcopy(struct vmm_vm *vm, const struct vmm__pager_source *src,
			   const uint64_t *have)
{
	return vmm__memory_postcopy_start(&vm->mem, src, have, pager_failed, vm);
}

void vmm__move_allow_cpu_mismatch(struct vmm_vm *vm, int allow)
{
	vm->move.allow_cpu_mismatch = allow;
}

void vmm__move_warn(struct vmm_vm *vm, const char *msg)
{
	vmm__log(vm, VMM_LOG_WARN, "%s", msg);
}

static const char *job_name(enum vmm__job kind)
{
	switch (kind) {
	case VMM__JOB_MIGRATE:
		return "a migration";
	case VMM__JOB_SNAPSHOT:
		return "a snapshot";
	case VMM__JOB_STATE_SAVE:
		return "a state save";
	}
	return "a job";
}

int vmm__job_begin(struct vmm_vm *vm, enum vmm__job kind)
{
	return vmm__run_control_job_begin(vm->runctl, job_name(kind));
}

void vmm__job_end(struct vmm_vm *vm)
{
	vmm__run_control_job_end(vm->runctl);
}

int vmm__move_pause(struct vmm_vm *vm, int *paused_by_us, const char *why)
{
	if (vmm_vm_run_state(vm) == VMM_VM_RUNNING) {
		int r = vmm__vm_pause(vm, VMM__RC_JOB);

		if (r)
			return r;
		*paused_by_us = 1;
	}
	if (vmm_vm_run_state(vm) != VMM_VM_PAUSED)
		return vmm__err(VMM_ESTATE, "%s", why);
	return 0;
}

int vmm__move_resume(struct vmm_vm *vm)
{
	return vmm__vm_resume(vm, VMM__RC_JOB);
}

struct vmm__dirty_ctx *vmm__move_dirty(struct vmm_vm *vm)
{
	return &vm->dirty;
}

uint32_t vmm__move_throttle(struct vmm_vm *vm)
{
	return vmm__vm_throttle(vm);
}

int vmm__move_set_throttle(struct vmm_vm *vm, uint32_t pct)
{
	return vmm__vm_set_throttle(vm, pct);
}

void vmm__move_set_migrated(struct vmm_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->move.migrated = 1;
	pthread_mutex_unlock(&vm->lock);
}

int vmm__move_migrated(const struct vmm_vm *vm)
{
	int m;

	pthread_mutex_lock((pthread_mutex_t *)&vm->lock);
	m = vm->move.migrated;
	pthread_mutex_unlock((pthread_mutex_t *)&vm->lock);
	return m;
}

void vmm__move_cancel(struct vmm_vm *vm, int on)
{
	pthread_mutex_lock(&vm->lock);
	/* Once GO may be on the wire, stopping would leave two guests or none: the send goes
	 * on (protocol.h). */
	if (!on || !vm->move.let_go)
		__atomic_store_n(&vm->move.cancel, on, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->lock);
}

int vmm__move_let_go(struct vmm_vm *vm, int on)
{
	int r = 0;

	pthread_mutex_lock(&vm->lock);
	if (on && __atomic_load_n(&vm->move.cancel, __ATOMIC_ACQUIRE))
		r = vmm__err(VMM_ECANCELED, "migration canceled");
	else
		vm->move.let_go = on;
	pthread_mutex_unlock(&vm->lock);
	return r;
}

void vmm__move_set_in_doubt(struct vmm_vm *vm, int side)
{
	pthread_mutex_lock(&vm->lock);
	vm->move.in_doubt = side;
	if (side == VMM__SIDE_SOURCE)
		vm->move.migrated = 1;
	pthread_mutex_unlock(&vm->lock);
}

int vmm__move_in_doubt(const struct vmm_vm *vm)
{
	int d;

	pthread_mutex_lock((pthread_mutex_t *)&vm->lock);
	d = vm->move.in_doubt;
	pthread_mutex_unlock((pthread_mutex_t *)&vm->lock);
	return d;
}

void vmm__move_set_receiving(struct vmm_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->move.receiving = 1;
	pthread_mutex_unlock(&vm->lock);
}

/* A device-list call under vm->lock (the list changes only under it). */
static int devices_call(struct vmm_vm *vm, int (*call)(struct vmm__devices *d))
{
	int r;

	pthread_mutex_lock(&vm->lock);
	r = call(&vm->devices);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vmm__move_devices_release(struct vmm_vm *vm)
{
	return devices_call(vm, vmm__devices_release);
}

int vmm__move_devices_acquire(struct vmm_vm *vm)
{
	return devices_call(vm, vmm__devices_acquire);
}

void vmm__move_clear_migrated(struct vmm_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->move.migrated = 0;
	pthread_mutex_unlock(&vm->lock);
}

int vmm__move_cancelled(const struct vmm_vm *vm)
{
	return __atomic_load_n(&vm->move.cancel, __ATOMIC_ACQUIRE);
}

const int *vmm__move_cancel_flag(const struct vmm_vm *vm)
{
	return &vm->move.cancel;
}

int vmm__move_track_base(const struct vmm_vm *vm, uint8_t id[16])
{
	if (vm->move.track_base_valid)
		memcpy(id, vm->move.track_base_id, 16);
	return vm->move.track_base_valid;
}

void vmm__move_set_track_base(struct vmm_vm *vm, const uint8_t *id)
{
	if (id)
		memcpy(vm->move.track_base_id, id, 16);
	vm->move.track_base_valid = id != NULL;
}
