/* The sandbox (vmm/sandbox.h) without KVM: the lists resolve and nest as the filters
 * stack; a VM on the fake kernel whose vCPU thread runs under the vCPU filter serves its
 * guest (serial output, an embedder's port) as before; and when an embedder's port handler
 * in that thread makes a forbidden call, the process dies by SIGSYS with a report naming
 * the vCPU thread and the call. Each confined run is a forked child (filters cannot be
 * lifted), so the test survives to check how it ended. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "vmm/sandbox.h"

#define PORT 0x510

static void lists(void **state)
{
	const char *const *names, *const *ctl;
	size_t n, nctl;

	(void)state;
	assert_int_equal(vmm_sandbox_syscalls(VMM_THREAD_CONTROL, &ctl, &nctl), 0);
	for (int k = 0; k < VMM_THREAD_KINDS; k++) {
		assert_int_equal(vmm_sandbox_syscalls((enum vmm_thread_kind)k, &names, &n), 0);
		assert_true(n > 10);
		printf("sandbox: %-9s %zu system calls\n", vmm_sandbox_kind_name((enum vmm_thread_kind)k),
		       n);
		for (size_t i = 0; i < n; i++) {
			size_t j;

			if (seccomp_syscall_resolve_name(names[i]) == __NR_SCMP_ERROR)
				fail_msg("%s: unknown system call %s",
					 vmm_sandbox_kind_name((enum vmm_thread_kind)k), names[i]);
			/* Threads inherit the controlling thread's filter: it must allow theirs. */
			for (j = 0; j < nctl && strcmp(ctl[j], names[i]); j++)
				;
			if (j == nctl)
				fail_msg("control lacks %s, which %s threads need", names[i],
					 vmm_sandbox_kind_name((enum vmm_thread_kind)k));
		}
	}
	/* The vCPU list is the guest-facing one: nothing that opens, creates or connects. */
	assert_int_equal(vmm_sandbox_syscalls(VMM_THREAD_VCPU, &names, &n), 0);
	for (size_t i = 0; i < n; i++)
		for (const char **bad = (const char *[]){ "open", "openat", "socket", "connect",
							  "execve", "clone", "clone3", "fork",
							  "ptrace", "mmap2", NULL };
		     *bad; bad++)
			assert_string_not_equal(names[i], *bad);
	assert_int_equal(vmm_sandbox_syscalls((enum vmm_thread_kind)9, &names, &n), VMM_EINVAL);
	assert_int_equal(vmm_sandbox_apply((enum vmm_thread_kind)9), VMM_EINVAL);
	assert_null(vmm_sandbox_kind_name((enum vmm_thread_kind)9));
}

struct child_io {
	int forbidden;   /* the port handler makes a forbidden call */
	char serial[64];
	size_t serial_len;
};

static void on_serial(void *opaque, const uint8_t *buf, size_t len)
{
	struct child_io *io = opaque;

	if (io->serial_len + len < sizeof(io->serial)) {
		memcpy(io->serial + io->serial_len, buf, len);
		io->serial_len += len;
	}
}

static void on_port(void *opaque, uint64_t addr, uint8_t *data, uint32_t size, int is_write)
{
	struct child_io *io = opaque;

	(void)addr;
	(void)data;
	(void)size;
	(void)is_write;
	if (io->forbidden) {
		/* What an exploited device emulation would do first. */
		int s = socket(AF_INET, SOCK_STREAM, 0);

		(void)s;
		_exit(42); /* never reached: the filter kills first */
	}
}

/* In a child: a confined VM on the fake kernel takes a serial write and a port write.
 * Exits 0 if the guest's output came through, 1 otherwise. */
static void child(int report_fd, int forbidden)
{
	struct vmm_sandbox_opts so;
	struct child_io io = { .forbidden = forbidden };
	struct vmm_vm *vm;

	fake_kvm_install();
	vmm_sandbox_opts_init(&so);
	so.report_fd = report_fd;
	if (vmm_sandbox_enable(&so) || vmm_sandbox_enable(&so) != VMM_ESTATE)
		_exit(3);
	vm = fake_vm_new_loaded(16, 1, on_serial, &io);
	if (!vm || vmm_vm_register_pio(vm, PORT, 1, on_port, &io))
		_exit(4);
	fake_kvm_script_pio_out(0, 0x3f8, "hi", 2);
	fake_kvm_script_pio_out(0, PORT, "x", 1);
	fake_kvm_script_pio_out(0, 0x3f8, "!", 1);
	if (vmm_vm_start(vm) || fake_kvm_script_wait(0))
		_exit(5);
	vmm_vm_stop(vm);
	vmm_vm_wait(vm, -1, NULL);
	vmm_vm_destroy(vm);
	_exit(io.serial_len == 3 && !memcmp(io.serial, "hi!", 3) ? 0 : 1);
}

static int run_child(int forbidden, char *report, size_t cap)
{
	int p[2], status;
	ssize_t n, got = 0;
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		close(p[0]);
		child(p[1], forbidden);
	}
	close(p[1]);
	while ((n = read(p[0], report + got, cap - 1 - (size_t)got)) > 0)
		got += n;
	report[got] = '\0';
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void confined_vcpu_serves_guest(void **state)
{
	char report[256];
	int status = run_child(0, report, sizeof(report));

	(void)state;
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("confined VM: status 0x%x, report '%s'", status, report);
	assert_string_equal(report, "");
}

static void forbidden_call_kills(void **state)
{
	char report[256];
	int status = run_child(1, report, sizeof(report));

	(void)state;
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS)
		fail_msg("want death by SIGSYS, got status 0x%x", status);
	printf("report: %s", report);
	assert_non_null(strstr(report, "libvmm sandbox: vcpu thread "));
	assert_non_null(strstr(report, "made forbidden system call socket (41)"));
}

/* Without a report fd: killed all the same (SECCOMP_RET_KILL_PROCESS), nothing written. */
static void silent_kill(void **state)
{
	int status;
	pid_t pid = fork();

	(void)state;
	assert_true(pid >= 0);
	if (!pid) {
		if (vmm_sandbox_apply(VMM_THREAD_DEVICE))
			_exit(3);
		/* getppid is in no list. */
		_exit(getppid() > 0 ? 0 : 0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS)
		fail_msg("want death by SIGSYS, got status 0x%x", status);
}

/* The vCPU filter holds ioctl to KVM_RUN and KVM_GET_REGS: those reach the kernel (here:
 * EBADF), any other request kills. */
static void vcpu_ioctls(void **state)
{
	int status;
	pid_t pid = fork();

	(void)state;
	assert_true(pid >= 0);
	if (!pid) {
		if (vmm_sandbox_apply(VMM_THREAD_VCPU))
			_exit(3);
		if (ioctl(-1, KVM_RUN, 0) != -1 || errno != EBADF ||
		    ioctl(-1, KVM_GET_REGS, 0) != -1 || errno != EBADF)
			_exit(4);
		ioctl(-1, KVM_GET_DIRTY_LOG, 0);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS)
		fail_msg("want death by SIGSYS at KVM_GET_DIRTY_LOG, got status 0x%x", status);
}

/* The migration filter holds ioctl to KVM_CLEAR_DIRTY_LOG: KVM_RUN from there kills. */
static void migration_ioctls(void **state)
{
	int status;
	pid_t pid = fork();

	(void)state;
	assert_true(pid >= 0);
	if (!pid) {
		if (vmm_sandbox_apply(VMM_THREAD_MIGRATION))
			_exit(3);
		if (ioctl(-1, KVM_CLEAR_DIRTY_LOG, 0) != -1 || errno != EBADF)
			_exit(4);
		ioctl(-1, KVM_RUN, 0);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS)
		fail_msg("want death by SIGSYS at KVM_RUN, got status 0x%x", status);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(lists),
		cmocka_unit_test(confined_vcpu_serves_guest),
		cmocka_unit_test(forbidden_call_kills),
		cmocka_unit_test(silent_kill),
		cmocka_unit_test(vcpu_ioctls),
		cmocka_unit_test(migration_ioctls),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
