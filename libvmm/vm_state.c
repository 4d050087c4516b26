/* vmm_vm_state_save/load: every vCPU, the in-kernel devices and every registered device,
 * gathered into one vmm__machine_state and encoded by state_codec. */
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "state_codec.h"
#include "vm_internal.h"

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
int vmm__vm_state_capture(struct vmm_vm *vm, struct vmm__machine_state *ms)
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

int vmm_vm_state_save(struct vmm_vm *vm, void **buf, size_t *len)
{
	struct vmm__machine_state ms;
	int r;

	if (!vm || !buf || !len)
		return vmm__err(VMM_EINVAL, "NULL argument");
	r = check_paused(vm);
	if (r)
		return r;
	r = vmm__vm_state_capture(vm, &ms);
	if (!r)
		r = vmm__machine_state_encode(&ms, (uint8_t **)buf, len);
	vmm__machine_state_free(&ms);
	return r;
}

static void log_skipped_msr(void *opaque, uint32_t index, const char *why)
{
	vmm__log(opaque, VMM_LOG_WARN, "MSR 0x%x not restored: %s", index, why);
}

/* Loads ms into a CREATED VM of the same shape. */
int vmm__vm_state_apply(struct vmm_vm *vm, const struct vmm__machine_state *ms)
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
		r = vmm__cpu_state_set(vm->kvm, vm->vcpus[i].fd, &ms->cpus[i], log_skipped_msr, vm);
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

int vmm_vm_state_load(struct vmm_vm *vm, const void *buf, size_t len)
{
	struct vmm__machine_state ms;
	int r;

	if (!vm || !buf)
		return vmm__err(VMM_EINVAL, "NULL argument");
	pthread_mutex_lock(&vm->lock);
	if (vmm_vm_run_state(vm) != VMM_VM_CREATED) {
		pthread_mutex_unlock(&vm->lock);
		return vmm__err(VMM_ESTATE, "state load needs a new VM, it is %s",
				vmm_vm_run_state_name(vmm_vm_run_state(vm)));
	}
	memset(&ms, 0, sizeof(ms));
	r = vmm__machine_state_decode(buf, len, &ms);
	if (!r)
		r = vmm__vm_state_apply(vm, &ms);
	if (!r)
		vm->loaded = 1;
	vmm__machine_state_free(&ms);
	pthread_mutex_unlock(&vm->lock);
	return r;
}
