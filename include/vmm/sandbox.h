/* The sandbox: seccomp-bpf allow-lists per kind of thread, as Firecracker's filters do.
 *
 * Each thread of a VMM does a few jobs and needs a few system calls for them; everything
 * else is refused. libvmm knows which calls its own threads make and offers the lists.
 * The filter of a kind is installed with vmm_sandbox_apply() on the calling thread, or by
 * the library itself in each thread it starts after vmm_sandbox_enable(): a vCPU thread
 * installs the vCPU filter after its setup, right before its first KVM_RUN, so the guest
 * never runs one instruction before its thread is confined.
 *
 * A call outside the list kills the whole process with SIGSYS (the kernel's
 * SECCOMP_RET_KILL_PROCESS, Firecracker's default): a thread that makes one is taken to be
 * compromised, and an error return would let exploit code probe the list. With a report
 * fd (struct vmm_sandbox_opts), the filter traps instead: libvmm's SIGSYS handler writes
 * one line naming the thread kind and the system call to that fd, then the process dies by
 * SIGSYS all the same.
 *
 * Filters stack (a thread's calls must pass every filter it has) and are inherited by the
 * threads it creates; they can never be removed. io_uring requests are not system calls
 * and pass no filter: the lists allow io_uring_enter only to the kinds that drive the
 * library's transports (migration, control).
 *
 * Thread rule: vmm_sandbox_enable() once, before the first VM is created; the rest from
 * any thread. */
#ifndef VMM_SANDBOX_H
#define VMM_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/export.h"

#ifdef __cplusplus
extern "C" {
#endif

enum vmm_thread_kind {
	/* A vCPU thread: KVM_RUN and its exits (port I/O, MMIO, the serial callback). Its
	 * ioctl is held to KVM_RUN, KVM_IRQ_LINE, KVM_RESET_DIRTY_RINGS and KVM_GET_REGS. */
	VMM_THREAD_VCPU = 0,
	/* A helper thread beside the vCPUs: the auto-converge throttle. */
	VMM_THREAD_DEVICE = 1,
	/* A thread that moves a VM: migration connections (send and receive), snapshot
	 * encryption workers. Its ioctl is held to KVM_CLEAR_DIRTY_LOG. */
	VMM_THREAD_MIGRATION = 2,
	/* The embedder's controlling thread after setup: starts, pauses, stops, snapshots,
	 * restores, migrates and receives VMs and serves a control socket (the vmm command's
	 * main thread and control server). Allows what every other kind allows, since the
	 * threads it creates inherit its filter. */
	VMM_THREAD_CONTROL = 3,
};
#define VMM_THREAD_KINDS 4

/* Which threads the library confines by itself, as a bit mask of 1u << kind. */
#define VMM_SANDBOX_VCPU (1u << VMM_THREAD_VCPU)
#define VMM_SANDBOX_DEVICE (1u << VMM_THREAD_DEVICE)
#define VMM_SANDBOX_MIGRATION (1u << VMM_THREAD_MIGRATION)
#define VMM_SANDBOX_LIBRARY_THREADS (VMM_SANDBOX_VCPU | VMM_SANDBOX_DEVICE | VMM_SANDBOX_MIGRATION)

struct vmm_sandbox_opts {
	uint32_t size;  /* sizeof, set by vmm_sandbox_opts_init() */
	uint32_t kinds; /* VMM_SANDBOX_* bits: the library's threads of these kinds install their
			 * filter as they start (default: all three) */
	/* -1 (default): a forbidden call kills the process silently (SIGSYS). >= 0: a line
	 * "libvmm sandbox: <kind> thread <tid> made forbidden system call <name> (<nr>)" is
	 * written to this fd first (e.g. 2), then the process dies by SIGSYS. */
	int report_fd;
	uint32_t reserved_pad;
	uint64_t reserved[4];
};

VMM_EXPORT void vmm_sandbox_opts_init(struct vmm_sandbox_opts *opts);

/* From now on, every thread the library starts whose kind is in opts->kinds installs its
 * filter after its setup; a thread that cannot ends its job with an error (a vCPU thread
 * stops its VM with VMM_EXIT_ERROR) rather than run unconfined. Returns VMM_EINVAL on bad
 * options, VMM_ESTATE if called a second time. */
VMM_EXPORT int vmm_sandbox_enable(const struct vmm_sandbox_opts *opts);

/* Installs the filter of kind on the calling thread (and the threads it creates from now
 * on). Irreversible. Uses the report fd of vmm_sandbox_enable(), if any. Returns
 * VMM_EINVAL (unknown kind), VMM_EUNSUPPORTED (the kernel has no seccomp filters) or
 * VMM_ESYS. */
VMM_EXPORT int vmm_sandbox_apply(enum vmm_thread_kind kind);

/* The allow-list of kind: *names gets a static array of *count system call names (the
 * x86-64 ones). Returns 0, or VMM_EINVAL for an unknown kind. Any thread. */
VMM_EXPORT int vmm_sandbox_syscalls(enum vmm_thread_kind kind, const char *const **names,
				    size_t *count);

/* "vcpu", "device", "migration", "control"; NULL for an unknown kind. Any thread. */
VMM_EXPORT const char *vmm_sandbox_kind_name(enum vmm_thread_kind kind);

#ifdef __cplusplus
}
#endif
#endif
