/* The machine state: every vCPU, the in-kernel devices and every registered device,
 * gathered into one vmm__machine_state and encoded by state_codec; for vmm_vm_state_save/
 * load and for everything that moves a VM (vm_move.h). */
#include <stdlib.h>
#include <string.h>

#include "libvmm/clock.h"
#include "libvmm/error_internal.h"
#include "libvmm/state_codec.h"
#include "libvmm/vm_internal.h"
#include "libvmm/vm_move.h"

static int save_devices(struct vmm_vm *vm, struct vmm__machine_state *ms)
{
	ms->devs = calloc(vm->devices.n ? vm->devices.n : 1, sizeof(*ms->devs));
	if (!ms->devs)
		return vmm__err(VMM_ENOMEM, "device state");
	for (uint32_t i = 0; i < vm->devices.n; i++) {
		struct vmm__dev_blob *b = &ms->devs[i];
		int r;

		b->name = strdup(vm->devices.items[i].ops->name);
		if (!b->name)
			return vmm__err(VMM_ENOMEM, "device state");
		ms->ndevs++;
		r = vm->devices.items[i].ops->save(vm->devices.items[i].dev, &b->data, &b->len);
		if (r)
			return r;
	}
	return 0;
}

/* Fills ms from a PAUSED or STOPPED VM. */
static int state_capture(struct vmm_vm *vm, struct vmm__machine_state *ms)
{
	int r = 0;

	memset(ms, 0, sizeof(*ms));
	ms->mem_size = vm->mem.size;
	ms->cpus = calloc(vm->nvcpus, sizeof(*ms->cpus));
	if (!ms->cpus)
		return vmm__err(VMM_ENOMEM, "vCPU state");
	for (uint32_t i = 0; i < vm->nvcpus && !r; i++) {
		ms->ncpus++;
		ms->cpus[i].id = i;
		r = vmm__cpu_state_get(vm->kvm, vm->vcpus[i].fd, &ms->cpus[i]);
	}
	if (!r)
		r = vmm__vm_kstate_get(vm->fd, &ms->kstate);
	if (!r)
		r = save_devices(vm, ms);
	return r;
}

static int check_paused(struct vmm_vm *vm)
{
	enum vmm_vm_run_state st = vmm_vm_run_state(vm);

	if (st != VMM_VM_PAUSED && st != VMM_VM_STOPPED)
		return vmm__err(VMM_ESTATE, "state capture needs a paused VM, it is %s",
				vmm_vm_run_state_name(st));
	return 0;
}

int vmm__move_state_encode(struct vmm_vm *vm, uint8_t **buf, size_t *len)
{
	struct vmm__machine_state ms;
	int r = state_capture(vm, &ms);

	if (!r)
		r = vmm__machine_state_encode(&ms, buf, len);
	vmm__machine_state_free(&ms);
	return r;
}

int vmm_vm_state_save(struct vmm_vm *vm, void **buf, size_t *len)
{
	int r;

	if (!vm || !buf || !len)
		return vmm__err(VMM_EINVAL, "NULL argument");
	/* A job of its own: nobody may resume the VM between the check and the capture. */
	r = vmm__job_begin(vm, VMM__JOB_STATE_SAVE);
	if (r)
		return r;
	r = check_paused(vm);
	if (!r)
		r = vmm__move_state_encode(vm, (uint8_t **)buf, len);
	vmm__job_end(vm);
	return r;
}

/* Runs under vm->lock (state install): kept for the log until the lock is dropped. */
static void log_skipped_msr(void *opaque, uint32_t index, const char *why)
{
	vmm__log_later(opaque, VMM_LOG_WARN, "MSR 0x%x not restored: %s", index, why);
}

/* Loads ms into a CREATED VM of the same shape; vCPUs, in-kernel state, then devices.
 * What is worth a warning goes to logq. */
static int state_apply(struct vmm_vm *vm, const struct vmm__machine_state *ms,
		       struct vmm__log_queue *logq)
{
	int r = 0;

	if (ms->ncpus != vm->nvcpus || ms->mem_size != vm->mem.size)
		return vmm__err(VMM_ESHAPE,
				"saved VM has %u vCPUs and %llu MiB, this one %u and %llu MiB",
				ms->ncpus, (unsigned long long)(ms->mem_size >> 20), vm->nvcpus,
				(unsigned long long)(vm->mem.size >> 20));
	for (uint32_t i = 0; i < ms->ndevs; i++)
		if (!vmm__devices_find(&vm->devices, ms->devs[i].name))
			return vmm__err(VMM_ESTATEDATA, "saved state has unknown device '%s'",
					ms->devs[i].name);
	for (uint32_t i = 0; i < ms->ncpus && !r; i++)
		r = vmm__cpu_state_set(vm->kvm, vm->vcpus[i].fd, &ms->cpus[i], log_skipped_msr,
				       logq);
	/* The in-kernel PIC/IOAPIC/PIT and the clock after the vCPUs: the LAPICs must exist
	 * in their final state before IOAPIC routes point at them. */
	if (!r)
		r = vmm__vm_kstate_set(vm->fd, &ms->kstate);
	for (uint32_t i = 0; i < ms->ndevs && !r; i++) {
		const struct vmm__dev_blob *b = &ms->devs[i];

		for (uint32_t j = 0; j < vm->devices.n; j++)
			if (!strcmp(vm->devices.items[j].ops->name, b->name))
				r = vm->devices.items[j].ops->load(vm->devices.items[j].dev,
								   b->data, b->len);
	}
	return r;
}

int vmm__move_state_install(struct vmm_vm *vm, const void *buf, size_t len, int undecodable)
{
	struct vmm__log_queue logq = { 0 };
	struct vmm__machine_state ms;
	int r;

	pthread_mutex_lock(&vm->lock);
	if (vmm_vm_run_state(vm) != VMM_VM_CREATED) {
		pthread_mutex_unlock(&vm->lock);
		return vmm__err(VMM_ESTATE, "state load needs a new VM, it is %s",
				vmm_vm_run_state_name(vmm_vm_run_state(vm)));
	}
	memset(&ms, 0, sizeof(ms));
	r = vmm__machine_state_decode(buf, len, &ms);
	if (r == VMM_ESTATEDATA && undecodable != VMM_ESTATEDATA)
		r = vmm__err(undecodable, "machine state: %s", vmm_last_error());
	if (!r)
		r = state_apply(vm, &ms, &logq);
	if (!r)
		vm->loaded = 1;
	vmm__machine_state_free(&ms);
	pthread_mutex_unlock(&vm->lock);
	vmm__log_flush(vm, &logq);
	return r;
}

int vmm_vm_state_load(struct vmm_vm *vm, const void *buf, size_t len)
{
	int r;

	if (!vm || !buf)
		return vmm__err(VMM_EINVAL, "NULL argument");
	r = vmm__run_control_job_check(vm->runctl, "state load");
	return r ? r : vmm__move_state_install(vm, buf, len, VMM_ESTATEDATA);
}

/* Harmless: the VM has not run, and the real state overwrites all of it. */
uint64_t vmm__move_state_rehearse(struct vmm_vm *vm)
{
	struct vmm__log_queue logq = { 0 };
	struct vmm__machine_state back;
	uint64_t t0 = vmm__now_ns();
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = vmm__move_state_encode(vm, &buf, &len);

	memset(&back, 0, sizeof(back));
	if (!r)
		r = vmm__machine_state_decode(buf, len, &back);
	free(buf);
	if (!r)
		r = state_apply(vm, &back, &logq);
	vmm__machine_state_free(&back);
	vmm__log_flush(vm, &logq);
	return r ? 0 : vmm__now_ns() - t0;
}
