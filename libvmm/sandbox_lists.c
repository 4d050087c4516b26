/* The allow-lists per thread kind (vmm/sandbox.h). Learnt with strace -f on the emulated KVM
 * host (tests/tools/sandbox_trace.sh), each thread told apart by the name libvmm gives it,
 * then checked against the code paths; a call seen nowhere is not listed. */
#include <linux/kvm.h>

#include "libvmm/sandbox.h"

#define LIST(a) { a, sizeof(a) / sizeof(a[0]) }

/* What any glibc thread needs to live and die: memory (malloc, free, thread stacks),
 * locks and condition variables, clocks (the vDSO's fallbacks) and sleeps, signal masks
 * (the kick signal and its return), pthread_kill (a stop or pause kicks the vCPUs), exit;
 * sigaltstack: the sanitizers' per-thread signal stacks, taken down as a thread exits. */
#define COMMON                                                                           \
	"brk", "mmap", "munmap", "mprotect", "madvise", "futex", "clock_gettime",       \
	"clock_nanosleep", "nanosleep", "gettid", "getpid", "tgkill", "rt_sigprocmask",   \
	"rt_sigreturn", "restart_syscall", "sigaltstack", "exit", "exit_group"

/* KVM_RUN and its exits. ioctl is further held to four requests (vmm__sandbox_vcpu_ioctls); the embedder's serial and log callbacks
 * write (the vmm command: stdout, stderr). Nothing that opens, maps a file, creates or
 * connects. */
static const char *const vcpu[] = {
	COMMON, "ioctl", "write",
};

/* The auto-converge throttle: sleeps and holds vCPUs back. */
static const char *const device[] = {
	COMMON,
};

/* Migration connections (send and receive: their rings were set up by the thread that
 * started them, so only io_uring_enter) and snapshot encryption workers (positional reads
 * and writes); write for the embedder's log callback. */
static const char *const migration[] = {
	COMMON, "io_uring_enter", "pread64", "pwrite64", "write",
};

/* The controlling thread after setup (and the control server's threads it starts). */
static const char *const control[] = {
	COMMON, "ioctl", "tgkill", "io_uring_setup", "io_uring_enter", "io_uring_register",
	"read", "write", "readv", "writev", "pread64", "pwrite64", "sendmsg", "recvmsg",
	"sendto", "recvfrom", "getsockopt", "setsockopt", "close", "ppoll", "poll", "fstat",
	"newfstatat", "lseek", "openat", "unlink", "unlinkat", "rename", "renameat", "fsync",
	"fdatasync", "ftruncate", "fallocate", "memfd_create", "fcntl", "socket", "connect",
	"bind", "listen", "accept4", "shutdown", "clone", "clone3", "set_robust_list", "rseq",
	"rt_sigaction", "epoll_create1", "epoll_ctl", "epoll_wait", "eventfd2", "pipe2",
	"getrandom", "statx", "umask", "getsockname", "getpeername", "sched_getaffinity",
	"prctl", "seccomp",
};

/* KVM_RUN; KVM_IRQ_LINE on the VM (the UART raising its interrupt from an exit);
 * KVM_RESET_DIRTY_RINGS (a full dirty ring is harvested by its own vCPU); KVM_GET_REGS
 * (an exit's error message). */
const unsigned long vmm__sandbox_vcpu_ioctls[] = { KVM_RUN, KVM_IRQ_LINE, KVM_RESET_DIRTY_RINGS,
						   KVM_GET_REGS };
const size_t vmm__sandbox_vcpu_nioctls =
	sizeof(vmm__sandbox_vcpu_ioctls) / sizeof(vmm__sandbox_vcpu_ioctls[0]);

const struct vmm__sandbox_list vmm__sandbox_lists[VMM_THREAD_KINDS] = {
	LIST(vcpu), LIST(device), LIST(migration), LIST(control),
};
