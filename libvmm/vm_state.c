/* The machine state: every vCPU, the in-kernel devices and every registered device,
 * gathered into one vmm__machine_state and encoded by state_codec; for vmm_vm_state_save/
 * load and for everything that moves a VM (vm_move.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libvmm/clock.h"
#include "libvmm/cpu_model.h"
#include "libvmm/error_internal.h"
#include "libvmm/state_codec.h"
#include "libvmm/vm_internal.h"
#include "libvmm/vm_move.h"

/* with_embedder 0: the built-in devices only (the rehearsal, which must not call the
 * embedder's hooks on a VM it has not loaded yet). */
static int save_devices(struct vmm_vm *vm, struct vmm__machine_state *ms, int with_embedder)
{
	ms->devs = calloc(vm->devices.n ? vm->devices.n : 1, sizeof(*ms->devs));
	if (!ms->devs)
		return vmm__err(VMM_ENOMEM, "device state");
	for (uint32_t i = 0; i < vm->devices.n; i++) {
		struct vmm__dev_blob *b;
		int r;

		if (!with_embedder && (vm->devices.items[i].ops->flags & VMM__DEV_EMBEDDER))
			continue;
		b = &ms->devs[ms->ndevs];
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
static int state_capture(struct vmm_vm *vm, struct vmm__machine_state *ms, int with_embedder)
{
	int r = 0;

	memset(ms, 0, sizeof(*ms));
	ms->mem_size = vm->mem.size;
	snprintf(ms->cpu_model, sizeof(ms->cpu_model), "%s", vm->cpu_model_name);
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
		r = save_devices(vm, ms, with_embedder);
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

static int state_encode(struct vmm_vm *vm, int with_embedder, uint8_t **buf, size_t *len)
{
	struct vmm__machine_state ms;
	int r = state_capture(vm, &ms, with_embedder);

	/* QEMU refuses to migrate a guest with nested state it cannot save; so does libvmm,
	 * which saves none (KVM_GET_NESTED_STATE): the nested guest would be lost. Only a VM
	 * restored from a state saved with VMX/SVM (allow_cpu_mismatch) can get here. */
	for (uint32_t i = 0; !r && i < ms.ncpus; i++)
		if (vmm__cpu_nested_in_use(&ms.cpus[i]))
			r = vmm__err(VMM_ECPU, "vCPU %u runs nested virtualization (EFER.SVME or "
				     "CR4.VMXE), whose state libvmm does not save", i);
	if (!r)
		r = vmm__machine_state_encode(&ms, buf, len);
	vmm__machine_state_free(&ms);
	return r;
}

int vmm__move_state_encode(struct vmm_vm *vm, uint8_t **buf, size_t *len)
{
	return state_encode(vm, 1, buf, len);
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

/* Whether ms fits this VM: its shape, and every saved device registered here (an
 * embedder's device nobody registered is refused by name: dropping its state would
 * corrupt the guest's view of it silently). */
static int state_check(struct vmm_vm *vm, const struct vmm__machine_state *ms)
{
	const size_t pre = sizeof(VMM__DEV_EMBEDDER_PREFIX) - 1;

	if (ms->ncpus != vm->nvcpus || ms->mem_size != vm->mem.size)
		return vmm__err(VMM_ESHAPE,
				"saved VM has %u vCPUs and %llu MiB, this one %u and %llu MiB",
				ms->ncpus, (unsigned long long)(ms->mem_size >> 20), vm->nvcpus,
				(unsigned long long)(vm->mem.size >> 20));
	for (uint32_t i = 0; i < ms->ndevs; i++) {
		const char *name = ms->devs[i].name;

		if (vmm__devices_find(&vm->devices, name))
			continue;
		if (!strncmp(name, VMM__DEV_EMBEDDER_PREFIX, pre))
			return vmm__err(VMM_ESTATEDATA,
					"saved state has device '%s' and no device state hooks are "
					"registered under that name (vmm_vm_register_device_state, "
					"from the restore's or receive's prepare callback)", name + pre);
		return vmm__err(VMM_ESTATEDATA, "saved state has unknown device '%s'", name);
	}
	for (uint32_t j = 0; j < vm->devices.n; j++) {
		const struct vmm__device_ops *ops = vm->devices.items[j].ops;
		uint32_t i = 0;

		if (!(ops->flags & VMM__DEV_REQUIRED))
			continue;
		while (i < ms->ndevs && strcmp(ms->devs[i].name, ops->name))
			i++;
		if (i == ms->ndevs)
			return vmm__err(VMM_ESTATEDATA,
					"this VM has device '%s' and the saved state does not: "
					"a restore needs the devices the guest was saved with", ops->name);
	}
	return 0;
}

/* Loads the saved devices whose flags match `embedder`. */
static int load_devices(struct vmm_vm *vm, const struct vmm__machine_state *ms, int embedder)
{
	int r = 0;

	for (uint32_t i = 0; i < ms->ndevs && !r; i++) {
		const struct vmm__dev_blob *b = &ms->devs[i];

		for (uint32_t j = 0; j < vm->devices.n && !r; j++) {
			const struct vmm__device_ops *ops = vm->devices.items[j].ops;

			if (!!(ops->flags & VMM__DEV_EMBEDDER) == embedder && !strcmp(ops->name, b->name))
				r = ops->load(vm->devices.items[j].dev, b->data, b->len);
		}
	}
	return r;
}

/* One CPU incompatibility: refused (VMM_ECPU), or a warning if the caller allows it. */
static int cpu_mismatch(struct vmm_vm *vm, const char *what)
{
	if (!vm->move.allow_cpu_mismatch)
		return vmm__err(VMM_ECPU, "%s", what);
	vmm__log(vm, VMM_LOG_WARN, "CPU mismatch allowed: %s", what);
	return 0;
}

/* Whether this host can run the saved guest as it ran: every CPU feature it saw, its TSC
 * rate, no nested guest. A guest that finds an instruction gone takes #UD long after the
 * move, one at the wrong TSC rate keeps wrong time: refuse before anything is installed. */
static int cpu_check(struct vmm_vm *vm, const struct vmm__machine_state *ms)
{
	char why[768], msg[900];
	int r = 0;

	if (vmm__cpu_missing_features(ms->cpus, ms->ncpus, vm->kvm->cpuid, why, sizeof(why))) {
		snprintf(msg, sizeof(msg), "the guest uses CPU features this host lacks: %s", why);
		r = cpu_mismatch(vm, msg);
	}
	for (uint32_t i = 0; !r && i < ms->ncpus; i++)
		if (vmm__cpu_nested_in_use(&ms->cpus[i])) {
			snprintf(msg, sizeof(msg), "vCPU %u was saved running nested virtualization "
				 "(EFER.SVME or CR4.VMXE) without its nested state", i);
			r = cpu_mismatch(vm, msg);
			break;
		}
	for (uint32_t i = 0; !r && i < ms->ncpus && i < vm->nvcpus; i++)
		if (vmm__cpu_tsc_prepare(vm->kvm, vm->vcpus[i].fd, ms->cpus[i].tsc_khz, why,
					 sizeof(why))) {
			snprintf(msg, sizeof(msg), "vCPU %u: %s", i, why);
			r = cpu_mismatch(vm, msg);
			break; /* every vCPU has the same rate: one message */
		}
	return r;
}


/* The embedder's devices: loaded without the VM's lock (the hooks are the embedder's
 * code), before the rest, on a VM not yet marked loaded (so it cannot start meanwhile).
 * One registered here with nothing saved (added since) keeps its state: said in the log. */
static int load_embedder_devices(struct vmm_vm *vm, const struct vmm__machine_state *ms)
{
	for (uint32_t j = 0; j < vm->devices.n; j++) {
		const struct vmm__device_ops *ops = vm->devices.items[j].ops;
		uint32_t i = 0;

		if (!(ops->flags & VMM__DEV_EMBEDDER))
			continue;
		while (i < ms->ndevs && strcmp(ms->devs[i].name, ops->name))
			i++;
		if (i == ms->ndevs)
			vmm__log(vm, VMM_LOG_WARN, "no saved state for device '%s': left as it is",
				 ops->name + sizeof(VMM__DEV_EMBEDDER_PREFIX) - 1);
	}
	return load_devices(vm, ms, 1);
}

/* Loads ms into a CREATED VM of the same shape (state_check passed): vCPUs, in-kernel
 * state, then the built-in devices. What is worth a warning goes to logq. */
static int state_apply(struct vmm_vm *vm, const struct vmm__machine_state *ms,
		       struct vmm__log_queue *logq)
{
	int r = 0;

	for (uint32_t i = 0; i < ms->ncpus && !r; i++)
		r = vmm__cpu_state_set(vm->kvm, vm->vcpus[i].fd, &ms->cpus[i], log_skipped_msr,
				       logq);
	/* The in-kernel PIC/IOAPIC/PIT and the clock after the vCPUs: the LAPICs must exist
	 * in their final state before IOAPIC routes point at them. */
	if (!r)
		r = vmm__vm_kstate_set(vm->fd, &ms->kstate);
	if (!r)
		r = load_devices(vm, ms, 0);
	return r;
}

static int check_new(struct vmm_vm *vm)
{
	if (vmm_vm_run_state(vm) != VMM_VM_CREATED)
		return vmm__err(VMM_ESTATE, "state load needs a new VM, it is %s",
				vmm_vm_run_state_name(vmm_vm_run_state(vm)));
	return 0;
}

int vmm__move_state_install(struct vmm_vm *vm, const void *buf, size_t len, int undecodable)
{
	struct vmm__log_queue logq = { 0 };
	struct vmm__machine_state ms;
	int r = check_new(vm);

	if (r)
		return r;
	/* Decoding, checking and the embedder's loads need no lock: the VM is new and not
	 * loaded, so nothing runs it, and devices are registered by the thread loading it. */
	memset(&ms, 0, sizeof(ms));
	r = vmm__machine_state_decode(buf, len, &ms);
	if (r == VMM_ESTATEDATA && undecodable != VMM_ESTATEDATA)
		r = vmm__err(undecodable, "machine state: %s", vmm_last_error());
	if (!r)
		r = state_check(vm, &ms);
	if (!r)
		r = cpu_check(vm, &ms);
	if (!r)
		r = load_embedder_devices(vm, &ms);
	if (!r) {
		pthread_mutex_lock(&vm->lock);
		r = check_new(vm);
		if (!r)
			r = state_apply(vm, &ms, &logq);
		if (!r) {
			vm->loaded = 1;
			if (ms.cpu_model[0])
				memcpy(vm->cpu_model_name, ms.cpu_model, sizeof(vm->cpu_model_name));
		}
		pthread_mutex_unlock(&vm->lock);
	}
	vmm__machine_state_free(&ms);
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

/* Harmless: the VM has not run, and the real state overwrites all of it. The embedder's
 * devices are left out: their hooks see only real state, and their cost is not ours to
 * guess. */
uint64_t vmm__move_state_rehearse(struct vmm_vm *vm)
{
	struct vmm__log_queue logq = { 0 };
	struct vmm__machine_state back;
	uint64_t t0 = vmm__now_ns();
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = state_encode(vm, 0, &buf, &len);

	memset(&back, 0, sizeof(back));
	if (!r)
		r = vmm__machine_state_decode(buf, len, &back);
	free(buf);
	if (!r)
		r = state_check(vm, &back);
	if (!r)
		r = state_apply(vm, &back, &logq);
	vmm__machine_state_free(&back);
	vmm__log_flush(vm, &logq);
	return r ? 0 : vmm__now_ns() - t0;
}
