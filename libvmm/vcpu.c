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
#include "libvmm/sandbox.h"
#include "libvmm/error_internal.h"
#include "libvmm/kvm.h"
#include "libvmm/run_control.h"
#include "libvmm/vcpu.h"

/* The kick signal (vmm_kick_signal_set() in vm.h): chosen by the embedder before the first
 * VM, then fixed for the life of the process. Its handler does nothing of its own, its
 * only job is to interrupt KVM_RUN; so a handler the embedder had installed for the same
 * signal can always be called from it, and is (the embedder may use the signal for
 * something of its own on other threads). kick_prev is written once, before our handler
 * is installed, and only read after. */
static pthread_mutex_t kick_lock = PTHREAD_MUTEX_INITIALIZER;
static int kick_chosen;    /* 0: the default (kick_lock) */
static int kick_installed; /* the handler is in place (kick_lock) */
static int kick_signo;     /* the signal in use once installed (atomic) */
static struct sigaction kick_prev;

static void kick_handler(int sig, siginfo_t *info, void *uctx)
{
	if (kick_prev.sa_flags & SA_SIGINFO) {
		if (kick_prev.sa_sigaction)
			kick_prev.sa_sigaction(sig, info, uctx);
	} else if (kick_prev.sa_handler != SIG_DFL && kick_prev.sa_handler != SIG_IGN) {
		kick_prev.sa_handler(sig);
	}
}

static int kick_default(void)
{
	return SIGRTMIN + 6;
}

/* Signals a vCPU thread may be kicked with: the user and real-time ones. The rest are
 * either uncatchable, synchronous faults, or mean something to the process as a whole. */
static int kick_signal_valid(int signo)
{
	return signo == SIGUSR1 || signo == SIGUSR2 || (signo >= SIGRTMIN && signo <= SIGRTMAX);
}

int vmm_kick_signal_set(int signo)
{
	int r = 0;

	if (!kick_signal_valid(signo))
		return vmm__err(VMM_EINVAL, "kick signal %d: SIGUSR1, SIGUSR2 or SIGRTMIN..SIGRTMAX",
				signo);
	pthread_mutex_lock(&kick_lock);
	if (kick_installed && signo != __atomic_load_n(&kick_signo, __ATOMIC_RELAXED))
		r = vmm__err(VMM_ESTATE, "the kick signal is fixed once a VM exists (it is %d)",
			     __atomic_load_n(&kick_signo, __ATOMIC_RELAXED));
	else
		kick_chosen = signo;
	pthread_mutex_unlock(&kick_lock);
	return r;
}

int vmm_kick_signal(void)
{
	int signo;

	pthread_mutex_lock(&kick_lock);
	signo = kick_installed ? __atomic_load_n(&kick_signo, __ATOMIC_RELAXED)
			       : (kick_chosen ? kick_chosen : kick_default());
	pthread_mutex_unlock(&kick_lock);
	return signo;
}

int vmm__vcpu_signal_setup(void)
{
	struct sigaction sa;
	int r = 0, signo;

	pthread_mutex_lock(&kick_lock);
	if (kick_installed)
		goto out;
	signo = kick_chosen ? kick_chosen : kick_default();
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = kick_handler;
	/* SA_RESTART: should the signal reach a thread of the embedder's (it is process-wide),
	 * its interrupted system calls go on. KVM_RUN is not restarted: it returns EINTR. */
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	/* kick_prev is complete before the handler can run: sigaction fills it first. */
	if (sigaction(signo, NULL, &kick_prev) < 0 || sigaction(signo, &sa, NULL) < 0) {
		r = vmm__err_sys(VMM_ESYS, "sigaction for the vCPU kick signal");
		goto out;
	}
	__atomic_store_n(&kick_signo, signo, __ATOMIC_RELAXED);
	kick_installed = 1;
out:
	pthread_mutex_unlock(&kick_lock);
	return r;
}

/* Fixed once a VM exists, so read without the lock. */
static int kick_signal(void)
{
	return __atomic_load_n(&kick_signo, __ATOMIC_RELAXED);
}

void vmm__vcpu_kick(struct vmm__vcpu *vcpu)
{
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (vcpu->thread_started)
		pthread_kill(vcpu->thread, kick_signal());
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
	sigdelset(&set, kick_signal());
	sigdelset(&set, SIGSEGV);
	sigdelset(&set, SIGBUS);
	sigdelset(&set, SIGFPE);
	sigdelset(&set, SIGILL);
	pthread_sigmask(SIG_SETMASK, &set, NULL);
}

void *vmm__vcpu_thread(void *arg)
{
	struct vmm__vcpu *vcpu = arg;
	char name[16];

	block_signals_but_kick();
	/* Confined before the guest runs one instruction; never unconfined if asked. */
	snprintf(name, sizeof(name), "vmm-vcpu%u", vcpu->id);
	if (vmm__sandbox_thread(VMM_THREAD_VCPU, name)) {
		vmm__run_control_stop(vcpu->rc, VMM_EXIT_ERROR, -1, "vcpu%u: sandbox: %s", vcpu->id,
				       vmm_last_error());
		vmm__run_control_exited(vcpu->rc, vcpu->id);
		return NULL;
	}
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
