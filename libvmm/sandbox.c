/* The sandbox (vmm/sandbox.h): the allow-lists, compiled to seccomp-bpf with libseccomp,
 * and the SIGSYS report. The lists were learnt with strace -f on the emulated KVM host
 * (tests/tools/sandbox_trace.sh: run, snapshot plain/compressed/encrypted/live, restore,
 * migration send and receive, each thread classified by its name) and then kept to what
 * the code paths need; sandbox_lists.c says why each call is there. */
#include <errno.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libvmm/error_internal.h"
#include "libvmm/opts.h"
#include "libvmm/sandbox.h"
#include "vmm/sandbox.h"

/* The call a trapped thread makes to die by SIGSYS: always killed, never needed. */
#define DIE_NR SYS_kexec_load
#define NAME_MAX_NR 512

static const char *const kind_names[VMM_THREAD_KINDS] = { "vcpu", "device", "migration",
							  "control" };

static pthread_mutex_t enable_lock = PTHREAD_MUTEX_INITIALIZER;
static int enabled;
static unsigned enabled_kinds;
static int report_fd = -1;
/* Names for the SIGSYS handler, resolved beforehand (libseccomp allocates). */
static char nr_names[NAME_MAX_NR][24];
static __thread int thread_kind __attribute__((tls_model("initial-exec"))) = -1;

const char *vmm_sandbox_kind_name(enum vmm_thread_kind kind)
{
	return (unsigned)kind < VMM_THREAD_KINDS ? kind_names[kind] : NULL;
}

int vmm_sandbox_syscalls(enum vmm_thread_kind kind, const char *const **names, size_t *count)
{
	if ((unsigned)kind >= VMM_THREAD_KINDS || !names || !count)
		return vmm__err(VMM_EINVAL, "sandbox: thread kind %d", (int)kind);
	*names = vmm__sandbox_lists[kind].names;
	*count = vmm__sandbox_lists[kind].count;
	return 0;
}

void vmm_sandbox_opts_init(struct vmm_sandbox_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->kinds = VMM_SANDBOX_LIBRARY_THREADS;
	o->report_fd = -1;
}

/* Async-signal-safe: only write(2) and the die call. */
static void put_num(char **p, unsigned long v)
{
	char d[24];
	int n = 0;

	do
		d[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < (int)sizeof(d));
	while (n)
		*(*p)++ = d[--n];
}

static void put_str(char **p, const char *s)
{
	while (*s)
		*(*p)++ = *s++;
}

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	char line[200], *p = line;
	int nr = si->si_syscall;
	int k = thread_kind;

	(void)sig;
	(void)uc;
	put_str(&p, "libvmm sandbox: ");
	put_str(&p, k >= 0 && k < VMM_THREAD_KINDS ? kind_names[k] : "unconfined");
	put_str(&p, " thread ");
	put_num(&p, (unsigned long)syscall(SYS_gettid));
	put_str(&p, " made forbidden system call ");
	put_str(&p, nr >= 0 && nr < NAME_MAX_NR && nr_names[nr][0] ? nr_names[nr] : "?");
	put_str(&p, " (");
	put_num(&p, (unsigned long)nr);
	put_str(&p, "): killing the process\n");
	if (report_fd >= 0) {
		ssize_t w = write(report_fd, line, (size_t)(p - line));

		(void)w;
	}
	/* Killed by SIGSYS, as without a report (every filter kills on this call). */
	syscall(DIE_NR, 0, 0, 0, 0);
	_exit(128 + SIGSYS); /* not reached */
}

int vmm_sandbox_enable(const struct vmm_sandbox_opts *opts)
{
	struct vmm_sandbox_opts o;
	int r;

	vmm_sandbox_opts_init(&o);
	r = VMM__OPTS_COPY(&o, opts, "vmm_sandbox_opts_init");
	if (r)
		return r;
	if (o.kinds & ~VMM_SANDBOX_LIBRARY_THREADS)
		return vmm__err(VMM_EINVAL, "sandbox kinds 0x%x: only the library's own threads "
					    "(VMM_SANDBOX_LIBRARY_THREADS)", o.kinds);
	pthread_mutex_lock(&enable_lock);
	if (enabled) {
		pthread_mutex_unlock(&enable_lock);
		return vmm__err(VMM_ESTATE, "the sandbox is enabled already");
	}
	if (o.report_fd >= 0) {
		struct sigaction sa;

		for (int nr = 0; nr < NAME_MAX_NR; nr++) {
			char *n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);

			if (n)
				snprintf(nr_names[nr], sizeof(nr_names[nr]), "%s", n);
			free(n);
		}
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_sigsys;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSYS, &sa, NULL) < 0) {
			pthread_mutex_unlock(&enable_lock);
			return vmm__err_sys(VMM_ESYS, "sigaction(SIGSYS)");
		}
		report_fd = o.report_fd;
	}
	enabled_kinds = o.kinds;
	__atomic_store_n(&enabled, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&enable_lock);
	return 0;
}

int vmm_sandbox_apply(enum vmm_thread_kind kind)
{
	const struct vmm__sandbox_list *l;
	scmp_filter_ctx ctx;
	int rc = 0;

	if ((unsigned)kind >= VMM_THREAD_KINDS)
		return vmm__err(VMM_EINVAL, "sandbox: thread kind %d", (int)kind);
	if (prctl(PR_GET_SECCOMP) < 0 && errno == EINVAL)
		return vmm__err(VMM_EUNSUPPORTED, "this kernel has no seccomp");
	l = &vmm__sandbox_lists[kind];
	ctx = seccomp_init(report_fd >= 0 ? SCMP_ACT_TRAP : SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return vmm__err(VMM_ENOMEM, "seccomp_init");
	/* Filters apply to this thread only (no TSYNC): each kind has its own. */
	for (size_t i = 0; !rc && i < l->count; i++) {
		int nr = seccomp_syscall_resolve_name(l->names[i]);

		if (nr == __NR_SCMP_ERROR) {
			rc = -EINVAL;
			vmm__err(VMM_ESYS, "sandbox: unknown system call %s", l->names[i]);
			break;
		}
		if (l->ioctls && nr == SCMP_SYS(ioctl)) {
			/* The request is an unsigned int to the kernel: compare the low 32 bits. */
			for (size_t j = 0; !rc && j < l->nioctls; j++)
				rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
						      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu,
							      l->ioctls[j]));
		} else {
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		}
		if (rc)
			vmm__err(VMM_ESYS, "sandbox: seccomp_rule_add(%s): %s", l->names[i],
				 strerror(-rc));
	}
	if (!rc && report_fd >= 0) {
		rc = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, DIE_NR, 0);
		if (rc)
			vmm__err(VMM_ESYS, "sandbox: the kill rule: %s", strerror(-rc));
	}
	if (!rc) {
		rc = seccomp_load(ctx);
		if (rc)
			vmm__err(VMM_ESYS, "sandbox: seccomp_load (%s filter): %s", kind_names[kind],
				 strerror(-rc));
	}
	seccomp_release(ctx);
	if (rc)
		return VMM_ESYS;
	thread_kind = (int)kind;
	if (report_fd >= 0) {
		/* A trap that finds SIGSYS blocked (vCPU threads block nearly everything) is
		 * turned into the default action by the kernel, and the report is lost. */
		sigset_t sys;

		sigemptyset(&sys);
		sigaddset(&sys, SIGSYS);
		pthread_sigmask(SIG_UNBLOCK, &sys, NULL);
	}
	return 0;
}

int vmm__sandbox_thread(enum vmm_thread_kind kind, const char *name)
{
	/* A name for ps, top and the lists' tracer (comm is 15 characters). */
	if (name)
		prctl(PR_SET_NAME, name, 0, 0, 0);
	if (!__atomic_load_n(&enabled, __ATOMIC_ACQUIRE) || !(enabled_kinds & (1u << kind)))
		return 0;
	return vmm_sandbox_apply(kind);
}
