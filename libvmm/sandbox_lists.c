/* The allow-lists per thread kind (vmm/sandbox.h). Learnt with strace -f on the emulated KVM
 * host (tests/tools/sandbox_trace.sh), each thread told apart by the name libvmm gives it,
 * then checked against the code paths; a call seen nowhere is not listed. */
#include <linux/kvm.h>
#include <linux/vhost.h>
#include <linux/userfaultfd.h>

#include "libvmm/sandbox.h"

#define LEN(a) (sizeof(a) / sizeof(a[0]))

/* What any glibc thread needs to live and die: memory (malloc, free, thread stacks),
 * locks and condition variables, clocks (the vDSO's fallbacks) and sleeps, signal masks
 * (the kick signal and its return), pthread_kill (a stop or pause kicks the vCPUs), exit;
 * sigaltstack: the sanitizers' per-thread signal stacks, taken down as a thread exits;
 * sched_getaffinity: glibc's get_nprocs(), which malloc asks once more than 8 arenas
 * exist (many threads allocating at once) and ASan asks as it starts its own work;
 * sched_yield: ThreadSanitizer's internal locks spin with it under contention (CI killed
 * test_tls's sandboxed migrations by SIGSYS that way). */
#define COMMON                                                                           \
	"brk", "mmap", "munmap", "mprotect", "madvise", "futex", "clock_gettime",       \
	"clock_nanosleep", "nanosleep", "gettid", "getpid", "tgkill", "rt_sigprocmask",   \
	"rt_sigreturn", "restart_syscall", "sigaltstack", "exit", "exit_group",          \
	"sched_getaffinity", "sched_yield"

/* KVM_RUN and its exits. ioctl is further held to four requests (vcpu_ioctls, below); the
 * embedder's serial and log callbacks write (the vmm command: stdout, stderr). The virtio
 * devices serve their queues on the notifying vCPU (devices/virtio_mmio.c): disk reads,
 * writes and flushes on the already open image, getrandom for virtio-rng, and guest RAM
 * copies that go through process_vm_readv/writev where RAM is a lazily restored file.
 * Nothing that opens, maps a file, creates or connects. */
static const char *const vcpu[] = {
	COMMON, "ioctl", "write", "pread64", "pwrite64", "fdatasync", "getrandom",
	"process_vm_readv", "process_vm_writev",
};

/* The auto-converge throttle: sleeps and holds vCPUs back. virtio-net's receive thread
 * (devices/virtio_net.c): poll on its tap and eventfd, read a frame or the eventfd,
 * guest RAM copies (process_vm_readv/writev where RAM is a lazily restored file), the
 * interrupt (ioctl, held to KVM_IRQ_LINE) and write for the embedder's log callback. The
 * throttle gets these too: one list per kind. */
static const char *const device[] = {
	COMMON, "poll", "read", "write", "ioctl", "process_vm_readv",
	"process_vm_writev",
};

/* Migration connections (send and receive: their rings were set up by the thread that
 * started them, so only io_uring_enter; a sender re-protects each chunk right before it
 * reads it: ioctl, held to KVM_CLEAR_DIRTY_LOG), a uffd restore's pager (poll and read on
 * its userfaultfd, pread64 on the snapshot, ioctl held to UFFDIO_COPY, _ZEROPAGE and
 * _WAKE; libvmm/memory_pager.c) and snapshot encryption workers
 * (positional reads and writes); write for the embedder's log callback. With TLS a
 * connection's bytes go through OpenSSL instead (migrate/tls.c): read and write on the
 * socket, poll for the timeout slices, and the SIGPIPE guard around each call
 * (rt_sigpending, rt_sigtimedwait); OpenSSL's random generator reseeding (getrandom) and
 * glibc's qsort under OpenSSL's sorted stacks, which asks the memory size (sysinfo). */
static const char *const migration[] = {
	COMMON, "io_uring_enter", "ioctl", "pread64", "pwrite64", "write",
	"read", "poll", "rt_sigpending", "rt_sigtimedwait", "getrandom", "sysinfo",
};

/* The controlling thread after setup, and the threads it starts afterwards (the control
 * server's, a migration's worker), which inherit its filter: every KVM call on a running
 * VM (pause, state, dirty logs, stop), snapshots (files, memfd, io_uring, sync, rename,
 * hole punching), migration (connect, socket options, SIOCOUTQNSD; poll for glibc's
 * resolver when a host is named), the control server (a UNIX socket made 0600, epoll,
 * eventfd), new threads (clone3, rseq, set_robust_list), the library's own threads
 * confining themselves (prctl, seccomp), TLS's SIGPIPE guard (connection 0's TLS runs
 * here), guest RAM copies of a lazily restored VM (process_vm_readv/writev) and the disk
 * lock that moves with a migrating guest (flock: released before GO, taken at start).
 * Everything the other kinds allow, too: their filters stack on this one. */
static const char *const control[] = {
	COMMON,		"ioctl",	 "read",	  "write",	  "pread64",
	"pwrite64",	"openat",	 "close",	  "newfstatat",	  "lseek",
	"fcntl",	"ftruncate",	 "fallocate",	  "fdatasync",	  "fsync",
	"rename",	"unlink",	 "chmod",	  "memfd_create", "getrandom",
	"io_uring_setup", "io_uring_enter", "socket",	  "connect",	  "bind",
	"listen",	"accept4",	 "getsockname",	  "getsockopt",	  "setsockopt",
	"shutdown",	"sendmsg",	 "sendto",	  "recvfrom",	  "poll",
	"epoll_create1", "epoll_ctl",	 "epoll_wait",	  "eventfd2",	  "clone3",
	"rseq",		"set_robust_list", "prctl",	  "seccomp",	  "rt_sigpending",
	"rt_sigtimedwait", "sysinfo", "process_vm_readv", "process_vm_writev", "flock",
};

/* The only ioctl requests a vCPU thread may make: KVM_RUN; KVM_IRQ_LINE on the VM (the
 * UART raising its interrupt from an exit); KVM_RESET_DIRTY_RINGS (a full dirty ring is
 * harvested by its own vCPU); KVM_GET_REGS (an exit's error message); and vhost-vsock's
 * setup, start and stop (virtio_vsock.c), which a guest driver's DRIVER_OK or reset
 * triggers from its vCPU. */
static const unsigned long vcpu_ioctls[] = { KVM_RUN, KVM_IRQ_LINE, KVM_RESET_DIRTY_RINGS,
					     KVM_GET_REGS, VHOST_SET_FEATURES, VHOST_SET_MEM_TABLE,
					     VHOST_SET_LOG_BASE, VHOST_SET_VRING_NUM,
					     VHOST_SET_VRING_BASE, VHOST_SET_VRING_ADDR,
					     VHOST_SET_VRING_KICK, VHOST_SET_VRING_CALL,
					     VHOST_GET_VRING_BASE, VHOST_VSOCK_SET_RUNNING };
static const unsigned long device_ioctls[] = { KVM_IRQ_LINE };
static const unsigned long migration_ioctls[] = { KVM_CLEAR_DIRTY_LOG, UFFDIO_COPY,
						  UFFDIO_ZEROPAGE, UFFDIO_WAKE };

const struct vmm__sandbox_list vmm__sandbox_lists[VMM_THREAD_KINDS] = {
	[VMM_THREAD_VCPU] = { vcpu, LEN(vcpu), vcpu_ioctls, LEN(vcpu_ioctls) },
	[VMM_THREAD_DEVICE] = { device, LEN(device), device_ioctls, LEN(device_ioctls) },
	[VMM_THREAD_MIGRATION] = { migration, LEN(migration), migration_ioctls,
				   LEN(migration_ioctls) },
	[VMM_THREAD_CONTROL] = { control, LEN(control), NULL, 0 },
};
