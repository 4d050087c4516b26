/* The allow-lists per thread kind (vmm/sandbox.h). Learnt with strace -f on the emulated KVM
 * host (tests/tools/sandbox_trace.sh), each thread told apart by the name libvmm gives it,
 * then checked against the code paths; a call seen nowhere is not listed. */
#include "libvmm/sandbox.h"

#define LIST(a) { a, sizeof(a) / sizeof(a[0]) }

/* What any glibc thread needs to live and die: memory (malloc, thread stacks), locks,
 * clocks (the vDSO's fallbacks), signal masks (the kick signal and its return), exit. */
#define COMMON                                                                           \
	"brk", "mmap", "munmap", "mprotect", "madvise", "futex", "clock_gettime",       \
	"clock_nanosleep", "nanosleep", "gettid", "getpid", "rt_sigprocmask",             \
	"rt_sigreturn", "restart_syscall", "sched_yield", "exit", "exit_group"

/* KVM_RUN and its exits: the embedder's serial and log callbacks write (stdout, stderr),
 * a stop or pause kicks the other vCPUs (tgkill). */
static const char *const vcpu[] = {
	COMMON, "ioctl", "write", "writev", "tgkill",
};

/* The auto-converge throttle: sleeps and kicks vCPUs. */
static const char *const device[] = {
	COMMON, "tgkill",
};

/* Migration connections and snapshot encryption workers: sockets and files through
 * io_uring and plain calls. */
static const char *const migration[] = {
	COMMON,          "io_uring_setup", "io_uring_enter", "io_uring_register", "read",
	"write",         "readv",          "writev",         "pread64",           "pwrite64",
	"sendmsg",       "recvmsg",        "sendto",         "recvfrom",          "getsockopt",
	"setsockopt",    "close",          "ppoll",          "poll",              "fstat",
	"newfstatat",    "lseek",
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

const struct vmm__sandbox_list vmm__sandbox_lists[VMM_THREAD_KINDS] = {
	LIST(vcpu), LIST(device), LIST(migration), LIST(control),
};
