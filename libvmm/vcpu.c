/* One thread per vCPU: the KVM_RUN loop and exit dispatch to the port-I/O and MMIO buses.
 *
 * Kick: immediate_exit plus a signal. A vCPU inside KVM_RUN returns -EINTR; one outside it
 * returns -EINTR from its next KVM_RUN. Either way the -EINTR return is the only place a
 * vCPU meets run control's checkpoint (and so parks): KVM finishes a pending port or MMIO
 * read before it honours immediate_exit, so a parked vCPU never has half an instruction
 * outstanding and its registers can be saved as they are. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "libvmm/bus.h"
#include "libvmm/error_internal.h"
#include "libvmm/kvm.h"
#include "libvmm/run_control.h"
#include "libvmm/vcpu.h"

/* A real-time signal nobody else is likely to use; its handler does nothing, its only
 * job is to interrupt KVM_RUN. */
#define VMM_KICK_SIGNAL (SIGRTMIN + 6)

static void kick_handler(int sig)
{
	(void)sig;
}

static pthread_once_t signal_once = PTHREAD_ONCE_INIT;
static int signal_setup_err;

static void install_kick_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(VMM_KICK_SIGNAL, &sa, NULL) < 0)
		signal_setup_err = vmm__err_sys(VMM_ESYS, "sigaction for the vCPU kick signal");
}

int vmm__vcpu_signal_setup(void)
{
	pthread_once(&signal_once, install_kick_handler);
	return signal_setup_err;
}

void vmm__vcpu_kick(struct vmm__vcpu *vcpu)
{
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (vcpu->thread_started)
		pthread_kill(vcpu->thread, VMM_KICK_SIGNAL);
}

static void kick(void *ctx, uint32_t i)
{
	struct vmm__vcpu *vcpu = (struct vmm__vcpu *)ctx + i;

	if (vcpu->run)
		vmm__vcpu_kick(vcpu);
}

static void clear_kick(void *ctx, uint32_t i)
{
	struct vmm__vcpu *vcpu = (struct vmm__vcpu *)ctx + i;

	__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
}

static int spawn(void *ctx, uint32_t i)
{
	struct vmm__vcpu *vcpu = (struct vmm__vcpu *)ctx + i;
	int e = pthread_create(&vcpu->thread, NULL, vmm__vcpu_thread, vcpu);

	if (e) {
		errno = e;
		return vmm__err_sys(VMM_ESYS, "pthread_create");
	}
	vcpu->thread_started = 1;
	return 0;
}

const struct vmm__run_kicker vmm__vcpu_kicker = { kick, clear_kick, spawn };

static void vcpu_log(struct vmm__vcpu *vcpu, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void vcpu_log(struct vmm__vcpu *vcpu, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!vcpu->log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vcpu->log(vcpu->log_opaque, level, msg);
}

static void io_unhandled(struct vmm__vcpu *vcpu, const char *kind, uint64_t addr,
			 uint8_t *data, uint32_t size, int is_write)
{
	if (!is_write)
		memset(data, 0xff, size);
	vcpu_log(vcpu, VMM_LOG_DEBUG, "vcpu%u: unhandled %s %s 0x%llx size %u", vcpu->id,
		 kind, is_write ? "write" : "read", (unsigned long long)addr, size);
}

static void handle_pio(struct vmm__vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	const struct vmm__bus_range *r = vmm__bus_find(vcpu->pio, run->io.port);
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	int is_write = run->io.direction == KVM_EXIT_IO_OUT;

	/* String I/O (rep outsb) arrives as count consecutive elements. */
	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (r)
			r->fn(r->opaque, run->io.port, data, run->io.size, is_write);
		else
			io_unhandled(vcpu, "port", run->io.port, data, run->io.size, is_write);
	}
}

static void handle_mmio(struct vmm__vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	const struct vmm__bus_range *r = vmm__bus_find(vcpu->mmio, run->mmio.phys_addr);
	uint32_t len = run->mmio.len > 8 ? 8 : run->mmio.len;

	if (r)
		r->fn(r->opaque, run->mmio.phys_addr, run->mmio.data, len, run->mmio.is_write);
	else
		io_unhandled(vcpu, "mmio", run->mmio.phys_addr, run->mmio.data, len,
			     run->mmio.is_write);
}

static unsigned long long vcpu_rip(struct vmm__vcpu *vcpu)
{
	struct kvm_regs regs;

	if (vmm__ioctl(vcpu->fd, KVM_GET_REGS, &regs) < 0)
		return 0;
	return regs.rip;
}

/* Returns 0 to keep running, 1 when the VM has been asked to stop. */
static int handle_exit(struct vmm__vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_pio(vcpu);
		return 0;
	case KVM_EXIT_MMIO:
		handle_mmio(vcpu);
		return 0;
	case KVM_EXIT_INTR:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
		return 0;
	case KVM_EXIT_DIRTY_RING_FULL:
		if (!vcpu->dirty_ring_full(vcpu))
			return 0;
		vmm__run_control_stop(vcpu->rc, VMM_EXIT_ERROR, -1, "vcpu%u: dirty ring full: %s",
				       vcpu->id, vmm_last_error());
		return 1;
	case KVM_EXIT_SHUTDOWN:
		vmm__run_control_stop(vcpu->rc, VMM_EXIT_SHUTDOWN, -1,
				       "vcpu%u: shutdown (triple fault) at rip 0x%llx", vcpu->id,
				       vcpu_rip(vcpu));
		return 1;
	case KVM_EXIT_SYSTEM_EVENT:
		vmm__run_control_stop(vcpu->rc, VMM_EXIT_SHUTDOWN, -1,
				       "vcpu%u: system event %u", vcpu->id, run->system_event.type);
		return 1;
	case KVM_EXIT_INTERNAL_ERROR:
		vmm__run_control_stop(vcpu->rc, VMM_EXIT_ERROR, -1,
				       "vcpu%u: KVM internal error, suberror %u, rip 0x%llx", vcpu->id,
				       run->internal.suberror, vcpu_rip(vcpu));
		return 1;
	case KVM_EXIT_FAIL_ENTRY:
		vmm__run_control_stop(vcpu->rc, VMM_EXIT_ERROR, -1,
				       "vcpu%u: VM entry failed, reason 0x%llx", vcpu->id,
				       (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return 1;
	default:
		vmm__run_control_stop(vcpu->rc, VMM_EXIT_ERROR, -1,
				       "vcpu%u: unexpected KVM exit reason %u at rip 0x%llx",
				       vcpu->id, run->exit_reason, vcpu_rip(vcpu));
		return 1;
	}
}

static void block_signals_but_kick(void)
{
	sigset_t set;

	/* The embedder's signals (SIGINT, SIGCHLD, ...) belong to its own threads. */
	sigfillset(&set);
	sigdelset(&set, VMM_KICK_SIGNAL);
	sigdelset(&set, SIGSEGV);
	sigdelset(&set, SIGBUS);
	sigdelset(&set, SIGFPE);
	sigdelset(&set, SIGILL);
	pthread_sigmask(SIG_SETMASK, &set, NULL);
}

void *vmm__vcpu_thread(void *arg)
{
	struct vmm__vcpu *vcpu = arg;

	block_signals_but_kick();
	for (;;) {
		if (vmm__ioctl_once(vcpu->fd, KVM_RUN, NULL) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				if (vmm__run_control_checkpoint(vcpu->rc, vcpu->id))
					break;
				continue;
			}
			vmm__run_control_stop(vcpu->rc, VMM_EXIT_ERROR, -1, "vcpu%u: KVM_RUN: %s",
					       vcpu->id, strerror(errno));
			break;
		}
		if (handle_exit(vcpu))
			break;
	}
	vmm__run_control_exited(vcpu->rc, vcpu->id);
	return NULL;
}
