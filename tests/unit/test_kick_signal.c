/* The kick signal, which libvmm takes process-wide to make vCPU threads leave KVM_RUN: a
 * handler the embedder had installed for it is still called, SA_RESTART is set, and the
 * embedder may choose the signal before the first VM exists. The signal is set up once
 * per process, so each case runs in a child process of its own and reports through its
 * exit status. */
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"

static atomic_int embedder_calls;

static void embedder_handler(int sig)
{
	(void)sig;
	atomic_fetch_add(&embedder_calls, 1);
}

static void install(int signo)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = embedder_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(signo, &sa, NULL))
		_exit(90);
}

/* A fake-kernel VM started, paused, resumed and stopped: every step kicks its vCPUs. */
static int run_and_kick(void)
{
	struct vmm_vm *vm;
	struct vmm_exit ex;

	fake_kvm_install();
	vm = fake_vm_new_loaded(16, 2, NULL, NULL);
	if (!vm)
		return 80;
	if (vmm_vm_start(vm) || vmm_vm_pause(vm) || vmm_vm_resume(vm) || vmm_vm_stop(vm) ||
	    vmm_vm_wait(vm, 5000, &ex))
		return 81;
	vmm_vm_destroy(vm);
	return 0;
}

/* Runs fn in a child; its exit status (or 128 + signal). */
static int in_child(int (*fn)(void))
{
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		alarm(20);
		_exit(fn());
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The default signal, SIGRTMIN+6: the embedder's handler still runs. */
static int chain_default(void)
{
	int r;

	install(SIGRTMIN + 6);
	r = run_and_kick();
	if (r)
		return r;
	return atomic_load(&embedder_calls) > 0 ? 0 : 1;
}

static void chains_to_embedder_handler(void **state)
{
	(void)state;
	assert_int_equal(in_child(chain_default), 0);
}

static int restart_flag(void)
{
	struct sigaction sa;
	int r = run_and_kick();

	if (r)
		return r;
	if (sigaction(SIGRTMIN + 6, NULL, &sa))
		return 90;
	return (sa.sa_flags & SA_RESTART) ? 0 : 1;
}

static void handler_has_sa_restart(void **state)
{
	(void)state;
	assert_int_equal(in_child(restart_flag), 0);
}

/* A chosen signal carries the kicks (the embedder's handler on it sees them) and the
 * default one is left alone; choosing again once a VM exists is refused. */
static int chosen(void)
{
	struct sigaction sa;
	int r;

	if (vmm_kick_signal_set(SIGKILL) != VMM_EINVAL || vmm_kick_signal_set(SIGSEGV) != VMM_EINVAL)
		return 70;
	if (vmm_kick_signal_set(SIGRTMIN + 2))
		return 71;
	install(SIGRTMIN + 2);
	r = run_and_kick();
	if (r)
		return r;
	if (atomic_load(&embedder_calls) == 0)
		return 72;
	if (sigaction(SIGRTMIN + 6, NULL, &sa) || sa.sa_handler != SIG_DFL)
		return 73;
	if (vmm_kick_signal_set(SIGRTMIN + 3) != VMM_ESTATE || vmm_kick_signal() != SIGRTMIN + 2)
		return 74;
	return 0;
}

static void chosen_signal_is_used(void **state)
{
	(void)state;
	assert_int_equal(in_child(chosen), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(chains_to_embedder_handler),
		cmocka_unit_test(handler_has_sa_restart),
		cmocka_unit_test(chosen_signal_is_used),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
