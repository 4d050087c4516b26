/* VM lifecycle: creation of the machine and its parts, and the public calls of the state
 * machine CREATED -> RUNNING <-> PAUSED -> STOPPED, which run control keeps. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "libvmm/cpu_init.h"
#include "libvmm/cpu_model.h"
#include "libvmm/devices/serial.h"
#include "libvmm/devices/sysdevs.h"
#include "libvmm/dirty.h"
#include "libvmm/error_internal.h"
#include "libvmm/memory_pager.h"
#include "libvmm/opts.h"
#include "libvmm/vm_internal.h"

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

void vmm__log_later(struct vmm__log_queue *q, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = strlen(msg) + 2; /* level byte, text, NUL */
	if (q->len + n > q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 1024;
		char *b;

		while (cap < q->len + n)
			cap *= 2;
		b = realloc(q->buf, cap);
		if (!b) {
			q->dropped++;
			return;
		}
		q->buf = b;
		q->cap = cap;
	}
	q->buf[q->len] = (char)level;
	memcpy(q->buf + q->len + 1, msg, n - 1);
	q->len += n;
}

void vmm__log_flush(struct vmm_vm *vm, struct vmm__log_queue *q)
{
	for (size_t off = 0; off < q->len; off += strlen(q->buf + off + 1) + 2)
		vmm__log(vm, q->buf[off], "%s", q->buf + off + 1);
	if (q->dropped)
		vmm__log(vm, VMM_LOG_WARN, "%u log messages lost (out of memory)", q->dropped);
	free(q->buf);
	memset(q, 0, sizeof(*q));
}

static int check_config(const struct vmm_vm_config *cfg)
{
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
	if (!vmm__cpu_model_find(cfg->cpu_model))
		return vmm__err(VMM_EINVAL, "unknown CPU model '%.64s'", cfg->cpu_model);
	return 0;
}

static int host_irq_line(void *ctx, uint32_t irq, int level)
{
	struct vmm_vm *vm = ctx;
	struct kvm_irq_level l = { .irq = irq, .level = level };

	if (vmm__ioctl(vm->fd, KVM_IRQ_LINE, &l) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_IRQ_LINE");
	return 0;
}

static void host_request_stop(void *ctx, enum vmm_exit_reason reason, int status,
			      const char *detail)
{
	struct vmm_vm *vm = ctx;

	vmm__run_control_stop(vm->runctl, reason, status, "%s", detail);
}

static void host_log(void *ctx, int level, const char *msg)
{
	vmm__log(ctx, level, "%s", msg);
}

static int host_mem_check(void *ctx, uint64_t gpa, uint64_t len)
{
	struct vmm_vm *vm = ctx;

	if (gpa + len < gpa || !vmm__memory_gpa(&vm->mem, gpa, len))
		return vmm__err(VMM_ERANGE, "guest range 0x%llx+0x%llx is not RAM",
				(unsigned long long)gpa, (unsigned long long)len);
	return 0;
}

static int host_mem_read(void *ctx, uint64_t gpa, void *buf, size_t len)
{
	return vmm_vm_mem_read(ctx, gpa, buf, len);
}

static int host_mem_write(void *ctx, uint64_t gpa, const void *buf, size_t len)
{
	return vmm_vm_mem_write(ctx, gpa, buf, len);
}

static int host_mem_region(void *ctx, uint32_t i, uint64_t *gpa, uint64_t *size, void **hva)
{
	struct vmm_vm *vm = ctx;

	if (i >= vm->mem.nregions)
		return -1;
	*gpa = vm->mem.regions[i].gpa;
	*size = vm->mem.regions[i].size;
	*hva = vm->mem.host + vm->mem.regions[i].offset;
	return 0;
}

static void host_mark_dirty(void *ctx, uint64_t gpa, uint64_t len)
{
	struct vmm_vm *vm = ctx;
	uint8_t *p = vmm__memory_gpa(&vm->mem, gpa, len);

	if (p)
		vmm__dirty_mark(&vm->dirty, (uint64_t)(p - vm->mem.host), len);
}

static int host_ioeventfd(void *ctx, uint64_t addr, uint32_t len, uint64_t datamatch, int fd,
			  int assign)
{
	struct vmm_vm *vm = ctx;
	struct kvm_ioeventfd e = {
		.datamatch = datamatch,
		.addr = addr,
		.len = len,
		.fd = fd,
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH |
			 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};

	if (vmm__ioctl(vm->fd, KVM_IOEVENTFD, &e) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_IOEVENTFD");
	return 0;
}

static int host_irqfd(void *ctx, uint32_t gsi, int fd, int assign)
{
	struct vmm_vm *vm = ctx;
	struct kvm_irqfd f = { .fd = (uint32_t)fd, .gsi = gsi,
			       .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };

	if (vmm__ioctl(vm->fd, KVM_IRQFD, &f) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_IRQFD");
	return 0;
}

/* KVM_EXIT_DIRTY_RING_FULL on a vCPU: harvest its ring into the tracker. */
static int vcpu_dirty_ring_full(struct vmm__vcpu *vcpu)
{
	return vmm__dirty_ring_full(&vcpu->vm->dirty, vcpu->id);
}

static int create_vcpu(struct vmm_vm *vm, uint32_t id)
{
	struct vmm__vcpu *vcpu = &vm->vcpus[id];
	void *run;
	int r;

	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->rc = vm->runctl;
	vcpu->pio = &vm->pio;
	vcpu->mmio = &vm->mmio;
	vcpu->dirty_ring_full = vcpu_dirty_ring_full;
	vcpu->log = vm->cfg.log;
	vcpu->log_opaque = vm->cfg.log_opaque;
	vcpu->fd = vmm__ioctl(vm->fd, KVM_CREATE_VCPU, (void *)(unsigned long)id);
	if (vcpu->fd < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_CREATE_VCPU");
	run = vmm__kvm_mmap(vcpu->fd, vm->kvm->vcpu_mmap_size, 0);
	if (run == MAP_FAILED)
		return vmm__err_sys(VMM_EKVM, "mmap kvm_run");
	vcpu->run = run;
	r = vmm__dirty_ring_map(&vm->dirty, id, vcpu->fd);
	if (r)
		return r;
	return vmm__cpu_init(vm->kvm->cpuid, vm->cpu_model, vcpu->fd, id);
}

static int create_machine(struct vmm_vm *vm, const struct vmm__mem_backing *backing)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	uint64_t ident = VMM_KVM_IDENTITY_MAP_ADDR;
	int r;

	vm->fd = vmm__ioctl(vm->kvm->fd, KVM_CREATE_VM, NULL);
	if (vm->fd < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_CREATE_VM");
	/* The dirty ring's size is fixed before the first vCPU exists. */
	r = vmm__dirty_attach(&vm->dirty, vm->kvm, vm->fd);
	if (r)
		return r;
	/* Both addresses must be set before the first vCPU is created. */
	if (vmm__ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_SET_IDENTITY_MAP_ADDR");
	if (vmm__ioctl(vm->fd, KVM_SET_TSS_ADDR, (void *)(unsigned long)VMM_KVM_TSS_ADDR) < 0)
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
	r = vmm__run_control_new(vm->nvcpus, &vmm__vcpu_kicker, vm->vcpus, &vm->runctl);
	if (r)
		return r;
	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		r = create_vcpu(vm, i);
		if (r)
			return r;
	}
	vm->host = (struct vmm__device_host){
		.ctx = vm,
		.irq_line = host_irq_line,
		.request_stop = host_request_stop,
		.log = host_log,
		.mem_check = host_mem_check,
		.mem_read = host_mem_read,
		.mem_write = host_mem_write,
		.mem_region = host_mem_region,
		.mark_dirty = host_mark_dirty,
		.ioeventfd = host_ioeventfd,
		.irqfd = host_irqfd,
		.devices = &vm->devices,
		.pio = &vm->pio,
		.mmio = &vm->mmio,
	};
	return vmm__sysdevs_create(&vm->host, vm->cfg.serial_out, vm->cfg.serial_opaque);
}

int vmm__vm_create(const struct vmm_vm_config *cfg, const struct vmm__mem_backing *backing,
		   struct vmm_vm **out)
{
	struct vmm_vm_config c;
	struct vmm_vm *vm;
	int r;

	if (!out || !cfg)
		return vmm__err(VMM_EINVAL, "NULL argument");
	*out = NULL;
	vmm_vm_config_init(&c);
	r = VMM__OPTS_COPY(&c, cfg, "vmm_vm_config_init");
	if (!r)
		r = check_config(&c);
	if (r)
		return r;
	r = vmm__vcpu_signal_setup();
	if (r)
		return r;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return vmm__err(VMM_ENOMEM, "VM");
	vm->cfg = c;
	vm->cmdline = strdup(cfg->cmdline ? cfg->cmdline : "");
	vm->cfg.cmdline = vm->cmdline;
	vm->fd = -1;
	vm->mem.memfd = -1;
	vm->nvcpus = cfg->vcpus;
	vm->cpu_model = vmm__cpu_model_find(c.cpu_model);
	snprintf(vm->cpu_model_name, sizeof(vm->cpu_model_name), "%s",
		 vmm__cpu_model_name(vm->cpu_model));
	vm->cfg.cpu_model = vm->cpu_model_name;
	pthread_mutex_init(&vm->lock, NULL);
	vmm__dirty_init(&vm->dirty, &vm->mem, cfg->dirty_ring_entries, cfg->vcpus, vm->cfg.log,
			vm->cfg.log_opaque);
	if (!vm->cmdline) {
		r = vmm__err(VMM_ENOMEM, "command line");
		goto fail;
	}
	r = vmm__kvm_open(&vm->kvm);
	if (!r)
		r = vmm__cpu_model_check_host(vm->cpu_model, vm->kvm->cpuid);
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
	vmm__devices_quiesce(&vm->devices);
	vm->threads_joined = 1;
}

void vmm_vm_destroy(struct vmm_vm *vm)
{
	if (!vm)
		return;
	if (vm->runctl) {
		enum vmm_vm_run_state st = vmm__run_control_state(vm->runctl);

		vmm__run_control_set_throttle(vm->runctl, 0);
		if (st == VMM_VM_RUNNING || st == VMM_VM_PAUSED)
			vmm__run_control_stop(vm->runctl, VMM_EXIT_HOST, -1, "destroyed");
		join_threads(vm);
	}
	if (vm->vcpus) {
		for (uint32_t i = 0; i < vm->nvcpus; i++) {
			if (vm->vcpus[i].run)
				vmm__kvm_munmap(vm->vcpus[i].run, vm->kvm->vcpu_mmap_size);
			if (vm->vcpus[i].fd >= 0)
				vmm__kvm_close_fd(vm->vcpus[i].fd);
		}
		free(vm->vcpus);
	}
	vmm__dirty_fini(&vm->dirty); /* before the VM fd closes: it restores the slots */
	vmm__devices_destroy(&vm->devices);
	vmm__bus_free(&vm->pio);
	vmm__bus_free(&vm->mmio);
	if (vm->fd >= 0)
		vmm__kvm_close_fd(vm->fd);
	vmm__memory_free(&vm->mem);
	vmm__kvm_close(vm->kvm);
	vmm__run_control_free(vm->runctl);
	pthread_mutex_destroy(&vm->lock);
	free(vm->cmdline);
	free(vm);
}

int vmm_vm_start(struct vmm_vm *vm)
{
	sigset_t all, old;
	int r;

	if (!vm)
		return vmm__err(VMM_EINVAL, "vm is NULL");
	/* vm->lock keeps a load from slipping in between the check and the start. */
	pthread_mutex_lock(&vm->lock);
	if (vm->move.in_doubt) {
		/* migrate.h: only vmm_migrate_resolve() may start a guest whose hand-over is
		 * unclear; a discarded copy (migrated) never starts. */
		r = vmm__err(VMM_EINDOUBT, "start: the migration's outcome is in doubt");
	} else if (vm->move.migrated) {
		r = vmm__err(VMM_ESTATE, "start: this copy of the guest was discarded");
	} else if (vmm__run_control_state(vm->runctl) == VMM_VM_CREATED && !vm->loaded) {
		r = vmm__err(VMM_ESTATE, "start: no kernel or saved state loaded");
	} else if ((r = vmm__devices_acquire(&vm->devices)) == 0) {
		/* (A migration's destination took its disk locks just now, the source having
		 * let them go: VMM_ELOCKED above otherwise.) Threads inherit a fully blocked
		 * mask; each opens only the kick signal. */
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		r = vmm__devices_run(&vm->devices);
		if (!r) {
			r = vmm__run_control_start(vm->runctl);
			if (r)
				vmm__devices_quiesce(&vm->devices);
		}
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (!r) /* a uffd restore's working-set window opens now */
			vmm__pager_started(vm->mem.pager);
	}
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vmm__vm_pause(struct vmm_vm *vm, enum vmm__rc_caller who)
{
	int r = vmm__run_control_pause(vm->runctl, who);

	/* The vCPUs are parked: device threads stop too, so the guest's RAM and device state
	 * hold still for a snapshot or the last migration round. Under vm->lock, which a
	 * resume holds throughout: one that came in between has run them again, and they
	 * stay. */
	if (!r) {
		pthread_mutex_lock(&vm->lock);
		if (vmm__run_control_state(vm->runctl) == VMM_VM_PAUSED)
			vmm__devices_quiesce(&vm->devices);
		pthread_mutex_unlock(&vm->lock);
	}
	return r;
}

int vmm__vm_resume(struct vmm_vm *vm, enum vmm__rc_caller who)
{
	int r;

	/* Under vm->lock, so that a migration cannot mark the VM moved and end its job
	 * between this check and the resume: a VM sent away stays PAUSED for good. The
	 * resume itself never blocks, so holding vm->lock across it is cheap. */
	pthread_mutex_lock(&vm->lock);
	if (vm->move.in_doubt)
		r = vmm__err(VMM_EINDOUBT, "resume: the migration's outcome is in doubt "
			     "(vmm_migrate_resolve decides)");
	else if (vm->move.migrated && vmm__run_control_state(vm->runctl) != VMM_VM_RUNNING)
		r = vmm__err(VMM_ESTATE, "resume: VM is migrated away");
	else {
		/* A source that let the guest go released its disk lock: it takes it back
		 * first (VMM_ELOCKED when another process has it, the destination perhaps). */
		r = vmm__run_control_state(vm->runctl) == VMM_VM_PAUSED
			    ? vmm__devices_acquire(&vm->devices)
			    : 0;
		if (!r && vmm__run_control_state(vm->runctl) == VMM_VM_PAUSED) {
			sigset_t all, old;

			sigfillset(&all);
			pthread_sigmask(SIG_SETMASK, &all, &old);
			r = vmm__devices_run(&vm->devices);
			pthread_sigmask(SIG_SETMASK, &old, NULL);
		}
		if (!r) {
			r = vmm__run_control_resume(vm->runctl, who);
			if (r && vmm__run_control_state(vm->runctl) != VMM_VM_RUNNING)
				vmm__devices_quiesce(&vm->devices);
		}
	}
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vmm_vm_pause(struct vmm_vm *vm)
{
	if (!vm)
		return vmm__err(VMM_EINVAL, "vm is NULL");
	return vmm__vm_pause(vm, VMM__RC_EMBEDDER);
}

int vmm_vm_resume(struct vmm_vm *vm)
{
	if (!vm)
		return vmm__err(VMM_EINVAL, "vm is NULL");
	return vmm__vm_resume(vm, VMM__RC_EMBEDDER);
}

int vmm_vm_stop(struct vmm_vm *vm)
{
	if (!vm)
		return vmm__err(VMM_EINVAL, "vm is NULL");
	if (vmm_vm_run_state(vm) == VMM_VM_CREATED)
		return vmm__err(VMM_ESTATE, "stop: VM never started");
	vmm__run_control_stop(vm->runctl, VMM_EXIT_HOST, -1, "stopped by the host");
	return 0;
}

enum vmm_vm_run_state vmm_vm_run_state(const struct vmm_vm *vm)
{
	return vmm__run_control_state(vm->runctl);
}

const char *vmm_vm_run_state_name(enum vmm_vm_run_state st)
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
	enum vmm_vm_run_state st;
	int r;

	if (!vm)
		return vmm__err(VMM_EINVAL, "vm is NULL");
	if (vmm__run_control_state(vm->runctl) == VMM_VM_CREATED)
		return vmm__err(VMM_ESTATE, "wait: VM never started");
	r = vmm__run_control_wait_stopped(vm->runctl, timeout_ms, ex, &st);
	if (r)
		return vmm__err(VMM_ETIMEDOUT, "wait: VM still %s after %d ms",
				vmm_vm_run_state_name(st), timeout_ms);
	join_threads(vm);
	return 0;
}

int vmm__vm_set_throttle(struct vmm_vm *vm, uint32_t pct)
{
	return vmm__run_control_set_throttle(vm->runctl, pct);
}

uint32_t vmm__vm_throttle(struct vmm_vm *vm)
{
	return vmm__run_control_throttle(vm->runctl);
}

uint32_t vmm_vm_vcpus(const struct vmm_vm *vm)
{
	return vm ? vm->nvcpus : 0;
}

const char *vmm_vm_cmdline(const struct vmm_vm *vm)
{
	return vm ? vm->cmdline : "";
}

const char *vmm_vm_cpu_model(const struct vmm_vm *vm)
{
	return vm ? vm->cpu_model_name : "";
}

const char *vmm_cpu_model_name(unsigned i)
{
	return vmm__cpu_model_nth(i);
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
	return vmm__memory_read(&vm->mem, p, buf, len);
}

int vmm_vm_mem_write(struct vmm_vm *vm, uint64_t gpa, const void *buf, size_t len)
{
	void *p;
	int r;

	if (!vm || (!buf && len))
		return vmm__err(VMM_EINVAL, "NULL argument");
	p = guest_range(vm, gpa, len);
	if (!p)
		return VMM_ERANGE;
	r = vmm__memory_write(&vm->mem, p, buf, len);
	if (!r)
		vmm__dirty_mark(&vm->dirty, (uint64_t)((uint8_t *)p - vm->mem.host), len);
	return r;
}

static int register_range(struct vmm_vm *vm, struct vmm__bus *bus, uint64_t base, uint64_t len,
			  vmm_io_fn fn, void *opaque)
{
	int r;

	pthread_mutex_lock(&vm->lock);
	if (vmm__run_control_state(vm->runctl) != VMM_VM_CREATED)
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

int vmm_vm_serial_input(struct vmm_vm *vm, const void *buf, size_t len)
{
	struct vmm__serial *s;

	if (!vm || (!buf && len))
		return vmm__err(VMM_EINVAL, "NULL argument");
	s = vmm__devices_find(&vm->devices, VMM_SERIAL_DEVICE);
	if (!s)
		return vmm__err(VMM_ESTATE, "no serial port");
	return (int)vmm__serial_input(s, buf, len > 0x7fffffff ? 0x7fffffff : len);
}
