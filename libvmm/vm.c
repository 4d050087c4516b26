/* VM lifecycle and its state machine: CREATED -> RUNNING <-> PAUSED -> STOPPED.
 * Every transition is one public call that checks the current state under vm->lock. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "boot.h"
#include "devices/sysdevs.h"
#include "dirty.h"
#include "error_internal.h"
#include "vm_internal.h"

/* Where KVM keeps its real-mode TSS and identity page table: three pages just below the
 * BIOS area at the top of the 32-bit space, inside the hole (as QEMU places them). */
#define VMM_KVM_IDENTITY_MAP_ADDR 0xfeffc000ull
#define VMM_KVM_TSS_ADDR 0xfeffd000ull

void vmm_vm_config_init(struct vmm_vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->mem_size = 128ull << 20;
	cfg->vcpus = 1;
}

void vmm__log(struct vmm_vm *vm, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!vm->cfg.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vm->cfg.log(vm->cfg.log_opaque, level, msg);
}

static int check_config(const struct vmm_vm_config *cfg)
{
	if (!cfg || cfg->size < offsetof(struct vmm_vm_config, reserved))
		return vmm__err(VMM_EINVAL, "config not initialised with vmm_vm_config_init()");
	if (cfg->mem_size < VMM_MEM_MIN || cfg->mem_size > VMM_MEM_MAX ||
	    cfg->mem_size % VMM_PAGE_SIZE)
		return vmm__err(VMM_EINVAL,
				"memory size %llu: must be a multiple of 4 KiB between 1 MiB and 1 TiB",
				(unsigned long long)cfg->mem_size);
	if (cfg->vcpus < 1 || cfg->vcpus > VMM_VCPUS_MAX)
		return vmm__err(VMM_EINVAL, "vCPU count %u: must be 1..%d", cfg->vcpus,
				VMM_VCPUS_MAX);
	if (cfg->cmdline && strlen(cfg->cmdline) >= VMM_CMDLINE_MAX)
		return vmm__err(VMM_EINVAL, "command line longer than %d bytes",
				VMM_CMDLINE_MAX - 1);
	return 0;
}

static int create_vcpu(struct vmm_vm *vm, uint32_t id)
{
	struct vmm__vcpu *vcpu = &vm->vcpus[id];
	void *run;
	int r;

	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->fd = ioctl(vm->fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (vcpu->fd < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_CREATE_VCPU");
	run = mmap(NULL, vm->kvm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd,
		   0);
	if (run == MAP_FAILED)
		return vmm__err_sys(VMM_EKVM, "mmap kvm_run");
	vcpu->run = run;
	r = vmm__dirty_ring_map(vcpu);
	if (r)
		return r;
	return vmm__boot_vcpu_init(vm, vcpu);
}

static int create_machine(struct vmm_vm *vm, const struct vmm__mem_backing *backing)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	uint64_t ident = VMM_KVM_IDENTITY_MAP_ADDR;
	int r;

	vm->fd = ioctl(vm->kvm->fd, KVM_CREATE_VM, 0);
	if (vm->fd < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_CREATE_VM");
	/* The dirty ring's size is fixed before the first vCPU exists. */
	r = vmm__dirty_ring_enable(vm);
	if (r)
		return r;
	/* Both addresses must be set before the first vCPU is created. */
	if (vmm__ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_SET_IDENTITY_MAP_ADDR");
	if (ioctl(vm->fd, KVM_SET_TSS_ADDR, (unsigned long)VMM_KVM_TSS_ADDR) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_SET_TSS_ADDR");
	/* RAM before the irqchip: once an in-kernel irqchip exists, every memslot change waits
	 * for an SRCU grace period (5-11 ms measured here, whatever the size), which would
	 * dominate a lazy restore. */
	r = backing ? vmm__memory_init_file(&vm->mem, vm->cfg.mem_size, backing->fd, backing->offset)
		    : vmm__memory_init(&vm->mem, vm->cfg.mem_size);
	if (!r)
		r = vmm__memory_map(&vm->mem, vm->fd);
	if (r)
		return r;
	if (vmm__ioctl(vm->fd, KVM_CREATE_IRQCHIP, NULL) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_CREATE_IRQCHIP");
	if (vmm__ioctl(vm->fd, KVM_CREATE_PIT2, &pit) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_CREATE_PIT2");
	vm->vcpus = calloc(vm->nvcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return vmm__err(VMM_ENOMEM, "vCPU table");
	for (uint32_t i = 0; i < vm->nvcpus; i++)
		vm->vcpus[i].fd = -1;
	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		r = create_vcpu(vm, i);
		if (r)
			return r;
	}
	return vmm__sysdevs_create(vm);
}

int vmm__vm_create(const struct vmm_vm_config *cfg, const struct vmm__mem_backing *backing,
		   struct vmm_vm **out)
{
	struct vmm_vm *vm;
	int r;

	if (!out)
		return vmm__err(VMM_EINVAL, "out is NULL");
	*out = NULL;
	r = check_config(cfg);
	if (r)
		return r;
	r = vmm__vcpu_signal_setup();
	if (r)
		return r;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return vmm__err(VMM_ENOMEM, "VM");
	memcpy(&vm->cfg, cfg, cfg->size < sizeof(vm->cfg) ? cfg->size : sizeof(vm->cfg));
	vm->cfg.size = sizeof(vm->cfg);
	vm->cmdline = strdup(cfg->cmdline ? cfg->cmdline : "");
	vm->cfg.cmdline = vm->cmdline;
	vm->fd = -1;
	vm->mem.memfd = -1;
	vm->nvcpus = cfg->vcpus;
	vm->state = VMM_VM_CREATED;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->dirty_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (!vm->cmdline) {
		r = vmm__err(VMM_ENOMEM, "command line");
		goto fail;
	}
	r = vmm__kvm_open(&vm->kvm);
	if (!r)
		r = create_machine(vm, backing);
	if (r)
		goto fail;
	*out = vm;
	return 0;
fail:
	vmm_vm_destroy(vm);
	return r;
}

int vmm_vm_create(const struct vmm_vm_config *cfg, struct vmm_vm **out)
{
	return vmm__vm_create(cfg, NULL, out);
}

static void join_threads(struct vmm_vm *vm)
{
	if (vm->threads_joined)
		return;
	for (uint32_t i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].thread_started)
			pthread_join(vm->vcpus[i].thread, NULL);
	vm->threads_joined = 1;
}

void vmm_vm_destroy(struct vmm_vm *vm)
{
	if (!vm)
		return;
	if (vm->vcpus) {
		vmm__vm_set_throttle(vm, 0);
		if (vm->state == VMM_VM_RUNNING || vm->state == VMM_VM_PAUSED)
			vmm__vm_request_stop(vm, VMM_EXIT_HOST, -1, "destroyed");
		join_threads(vm);
		vmm__dirty_stop(vm);
		for (uint32_t i = 0; i < vm->nvcpus; i++) {
			vmm__dirty_ring_unmap(&vm->vcpus[i]);
			if (vm->vcpus[i].run)
				munmap(vm->vcpus[i].run, vm->kvm->vcpu_mmap_size);
			if (vm->vcpus[i].fd >= 0)
				close(vm->vcpus[i].fd);
		}
		free(vm->vcpus);
	}
	vmm__devices_destroy(&vm->devices);
	vmm__bus_free(&vm->pio);
	vmm__bus_free(&vm->mmio);
	if (vm->fd >= 0)
		close(vm->fd);
	vmm__memory_free(&vm->mem);
	vmm__kvm_close(vm->kvm);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->dirty_lock);
	free(vm->cmdline);
	free(vm);
}

int vmm_vm_start(struct vmm_vm *vm)
{
	sigset_t all, old;
	int r = 0;

	if (!vm)
		return vmm__err(VMM_EINVAL, "vm is NULL");
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VMM_VM_CREATED) {
		r = vmm__err(VMM_ESTATE, "start: VM is %s", vmm_vm_state_name(vm->state));
		goto out;
	}
	if (!vm->loaded) {
		r = vmm__err(VMM_ESTATE, "start: no kernel or saved state loaded");
		goto out;
	}
	/* Threads inherit a fully blocked mask; each opens only the kick signal. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	vm->state = VMM_VM_RUNNING;
	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		int e = pthread_create(&vm->vcpus[i].thread, NULL, vmm__vcpu_thread, &vm->vcpus[i]);

		if (e) {
			errno = e;
			r = vmm__err_sys(VMM_ESYS, "pthread_create");
			vm->stop_req = 1;
			vm->state = VMM_VM_STOPPED;
			vm->exit = (struct vmm_exit){ .reason = VMM_EXIT_ERROR, .status = -1 };
			snprintf(vm->exit.detail, sizeof(vm->exit.detail), "could not start vCPU threads");
			for (uint32_t j = 0; j < i; j++)
				vmm__vcpu_kick(&vm->vcpus[j]);
			pthread_cond_broadcast(&vm->cond);
			break;
		}
		vm->vcpus[i].thread_started = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
out:
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vmm_vm_pause(struct vmm_vm *vm)
{
	int r = 0;

	if (!vm)
		return vmm__err(VMM_EINVAL, "vm is NULL");
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VMM_VM_PAUSED)
		goto out;
	if (vm->state != VMM_VM_RUNNING) {
		r = vmm__err(VMM_ESTATE, "pause: VM is %s", vmm_vm_state_name(vm->state));
		goto out;
	}
	vm->pause_req = 1;
	for (uint32_t i = 0; i < vm->nvcpus; i++)
		vmm__vcpu_kick(&vm->vcpus[i]);
	while (vm->nparked + vm->nexited < vm->nvcpus && !vm->stop_req)
		pthread_cond_wait(&vm->cond, &vm->lock);
	if (vm->stop_req) {
		vm->pause_req = 0;
		r = vmm__err(VMM_ESTATE, "pause: the VM stopped meanwhile");
		goto out;
	}
	vm->state = VMM_VM_PAUSED;
out:
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vmm_vm_resume(struct vmm_vm *vm)
{
	int r = 0;

	if (!vm)
		return vmm__err(VMM_EINVAL, "vm is NULL");
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VMM_VM_RUNNING)
		goto out;
	if (vm->state != VMM_VM_PAUSED || vm->move.migrated) {
		r = vmm__err(VMM_ESTATE, "resume: VM is %s", vm->move.migrated ? "migrated away"
							     : vmm_vm_state_name(vm->state));
		goto out;
	}
	/* Every vCPU is parked, so nobody races on immediate_exit. */
	for (uint32_t i = 0; i < vm->nvcpus; i++)
		__atomic_store_n(&vm->vcpus[i].run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	vm->pause_req = 0;
	vm->state = VMM_VM_RUNNING;
	pthread_cond_broadcast(&vm->cond);
out:
	pthread_mutex_unlock(&vm->lock);
	return r;
}

static void request_stop_locked(struct vmm_vm *vm, enum vmm_exit_reason reason, int status,
				const char *fmt, va_list ap)
{
	if (vm->exit.reason == VMM_EXIT_NONE) {
		vm->exit.reason = reason;
		vm->exit.status = status;
		vsnprintf(vm->exit.detail, sizeof(vm->exit.detail), fmt, ap);
	}
	vm->stop_req = 1;
	vm->state = VMM_VM_STOPPED;
	for (uint32_t i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].run)
			vmm__vcpu_kick(&vm->vcpus[i]);
	pthread_cond_broadcast(&vm->cond);
}

void vmm__vm_request_stop(struct vmm_vm *vm, enum vmm_exit_reason reason, int status,
			  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pthread_mutex_lock(&vm->lock);
	request_stop_locked(vm, reason, status, fmt, ap);
	pthread_mutex_unlock(&vm->lock);
	va_end(ap);
}

int vmm_vm_stop(struct vmm_vm *vm)
{
	if (!vm)
		return vmm__err(VMM_EINVAL, "vm is NULL");
	if (vmm_vm_get_state(vm) == VMM_VM_CREATED)
		return vmm__err(VMM_ESTATE, "stop: VM never started");
	vmm__vm_request_stop(vm, VMM_EXIT_HOST, -1, "stopped by the host");
	return 0;
}

enum vmm_vm_state vmm_vm_get_state(const struct vmm_vm *vm)
{
	enum vmm_vm_state st;

	pthread_mutex_lock((pthread_mutex_t *)&vm->lock);
	st = vm->state;
	pthread_mutex_unlock((pthread_mutex_t *)&vm->lock);
	return st;
}

const char *vmm_vm_state_name(enum vmm_vm_state st)
{
	switch (st) {
	case VMM_VM_CREATED:
		return "created";
	case VMM_VM_RUNNING:
		return "running";
	case VMM_VM_PAUSED:
		return "paused";
	case VMM_VM_STOPPED:
		return "stopped";
	}
	return "unknown";
}

int vmm_vm_wait(struct vmm_vm *vm, int timeout_ms, struct vmm_exit *ex)
{
	struct timespec deadline;
	int r = 0;

	if (!vm)
		return vmm__err(VMM_EINVAL, "vm is NULL");
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	if (timeout_ms >= 0) {
		deadline.tv_sec += timeout_ms / 1000;
		deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VMM_VM_CREATED) {
		pthread_mutex_unlock(&vm->lock);
		return vmm__err(VMM_ESTATE, "wait: VM never started");
	}
	while (vm->state != VMM_VM_STOPPED) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&vm->cond, &vm->lock);
		} else if (pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline) == ETIMEDOUT &&
			   vm->state != VMM_VM_STOPPED) {
			r = vmm__err(VMM_ETIMEDOUT, "wait: VM still %s after %d ms",
				     vmm_vm_state_name(vm->state), timeout_ms);
			break;
		}
	}
	if (!r && ex)
		*ex = vm->exit;
	pthread_mutex_unlock(&vm->lock);
	if (!r)
		join_threads(vm);
	return r;
}

uint32_t vmm_vm_vcpus(const struct vmm_vm *vm)
{
	return vm ? vm->nvcpus : 0;
}

const char *vmm_vm_cmdline(const struct vmm_vm *vm)
{
	return vm ? vm->cmdline : "";
}

uint64_t vmm_vm_mem_size(const struct vmm_vm *vm)
{
	return vm ? vm->mem.size : 0;
}

static void *guest_range(struct vmm_vm *vm, uint64_t gpa, size_t len)
{
	void *p = vmm__memory_gpa(&vm->mem, gpa, len);

	if (!p)
		vmm__err(VMM_ERANGE, "guest range 0x%llx+0x%zx is not RAM",
			 (unsigned long long)gpa, len);
	return p;
}

int vmm_vm_mem_read(struct vmm_vm *vm, uint64_t gpa, void *buf, size_t len)
{
	void *p;

	if (!vm || (!buf && len))
		return vmm__err(VMM_EINVAL, "NULL argument");
	p = guest_range(vm, gpa, len);
	if (!p)
		return VMM_ERANGE;
	memcpy(buf, p, len);
	return 0;
}

int vmm_vm_mem_write(struct vmm_vm *vm, uint64_t gpa, const void *buf, size_t len)
{
	void *p;

	if (!vm || (!buf && len))
		return vmm__err(VMM_EINVAL, "NULL argument");
	p = guest_range(vm, gpa, len);
	if (!p)
		return VMM_ERANGE;
	memcpy(p, buf, len);
	vmm__dirty_mark(vm, (uint64_t)((uint8_t *)p - vm->mem.host), len);
	return 0;
}

static int register_range(struct vmm_vm *vm, struct vmm__bus *bus, uint64_t base, uint64_t len,
			  vmm_io_fn fn, void *opaque)
{
	int r;

	pthread_mutex_lock(&vm->lock);
	if (vm->state != VMM_VM_CREATED)
		r = vmm__err(VMM_ESTATE, "handlers must be registered before start");
	else
		r = vmm__bus_add(bus, base, len, fn, opaque);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vmm_vm_register_pio(struct vmm_vm *vm, uint16_t port, uint16_t len, vmm_io_fn fn,
			void *opaque)
{
	if (!vm || (uint32_t)port + len > 0x10000)
		return vmm__err(VMM_EINVAL, "port range 0x%x+%u", port, len);
	return register_range(vm, &vm->pio, port, len, fn, opaque);
}

int vmm_vm_register_mmio(struct vmm_vm *vm, uint64_t gpa, uint64_t len, vmm_io_fn fn,
			 void *opaque)
{
	if (!vm)
		return vmm__err(VMM_EINVAL, "vm is NULL");
	for (uint32_t i = 0; i < vm->mem.nregions; i++) {
		const struct vmm__mem_region *m = &vm->mem.regions[i];

		if (gpa < m->gpa + m->size && m->gpa < gpa + len)
			return vmm__err(VMM_ERANGE, "MMIO range 0x%llx+0x%llx overlaps RAM",
					(unsigned long long)gpa, (unsigned long long)len);
	}
	return register_range(vm, &vm->mmio, gpa, len, fn, opaque);
}

int vmm__vm_irq_line(struct vmm_vm *vm, uint32_t irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = level };

	if (vmm__ioctl(vm->fd, KVM_IRQ_LINE, &l) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_IRQ_LINE");
	return 0;
}
