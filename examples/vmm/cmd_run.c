/* vmm run: boot a kernel in the foreground and exit with the guest's status; with
 * --control, serve the control API on a UNIX socket meanwhile. cli_run_foreground() is
 * shared with vmm restore. */
#include <getopt.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "cli_jail.h"
#include "control_server.h"

static volatile sig_atomic_t stop_signal;

int cli_control_fd = -1;

int cli_jail_enter_bound(const struct cli_jail *j, const char *control_path)
{
	if (!j->dir)
		return 0;
	if (control_path && (cli_control_fd = control_server_listen(control_path)) < 0)
		return -1;
	return cli_jail_enter(j);
}

static void on_signal(int sig)
{
	stop_signal = sig;
}

/* Waits for the VM to end; a SIGINT/SIGTERM stops it (the handler only sets a flag:
 * vmm_vm_stop takes locks and is not async-signal-safe). */
static int wait_interruptible(struct vmm_vm *vm, struct vmm_exit *ex)
{
	for (;;) {
		int r = vmm_vm_wait(vm, 100, ex);

		if (r != VMM_ETIMEDOUT)
			return r;
		if (stop_signal)
			vmm_vm_stop(vm);
	}
}

int cli_run_foreground(struct vmm_vm *vm, const char *control_path)
{
	struct control_server *srv = NULL;
	struct vmm_exit ex;
	int r;

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	/* Already running: a received VM whose in-doubt hand-over was resolved to run here. */
	r = vmm_vm_run_state(vm) == VMM_VM_RUNNING ? 0 : vmm_vm_start(vm);
	/* Setup is over: from here this thread (and the control server's threads, which
	 * inherit its filter) only serves the VM. */
	prctl(PR_SET_NAME, "vmm-control", 0, 0, 0); /* also the lists' tracer's marker */
	if (!r && cli_sandbox) {
		r = vmm_sandbox_apply(VMM_THREAD_CONTROL);
		if (r)
			vmm_vm_stop(vm);
	}
	if (r) {
		vmm_vm_destroy(vm);
		return cli_fail("run", r);
	}
	/* Served only once the VM runs, so that a client never sees it half-started. */
	if (control_path && control_server_start(vm, control_path, cli_control_fd, &srv)) {
		vmm_vm_stop(vm);
		vmm_vm_wait(vm, -1, NULL);
		vmm_vm_destroy(vm);
		return 1;
	}
	r = wait_interruptible(vm, &ex);
	/* Before destroy: a handler may still be using the VM (vm.shutdown's response). */
	control_server_stop(srv);
	vmm_vm_destroy(vm);
	if (r)
		return cli_fail("run", r);
	return cli_exit_status(&ex);
}

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "memory", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "cmdline", required_argument, NULL, 'a' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "control", required_argument, NULL, 'C' },
		{ "cpu", required_argument, NULL, 'p' },
		CLI_GUEST_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	struct cli_jail jail;
	static struct cli_devices devs; /* 32 KiB of paths: not on the stack */
	struct vmm_vm_config cfg;
	struct vmm_vm *vm;
	const char *initrd = NULL, *control = NULL, *why;
	int c, r;

	cli_jail_init(&jail);
	vmm_vm_config_init(&cfg);
	cfg.serial_out = cli_serial_stdout;
	cfg.log = cli_log_stderr;
	while ((c = getopt_long(argc, argv, "m:c:a:i:", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (cli_parse_size(optarg, &cfg.mem_size, &why)) {
				fprintf(stderr, "vmm: bad memory size '%s': %s\n", optarg, why);
				return 2;
			}
			break;
		case 'c':
			cfg.vcpus = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'a':
			cfg.cmdline = optarg;
			break;
		case 'i':
			initrd = optarg;
			break;
		case 'C':
			control = optarg;
			break;
		case 'p':
			cfg.cpu_model = optarg;
			break;
		default: /* one of CLI_GUEST_OPTIONS, or one getopt refused */
			if (cli_guest_option(&devs, &jail, c, optarg))
				return 2;
			break;
		}
	}
	if (optind != argc - 1)
		return cli_usage("run");
	if (cli_jail_check(&jail))
		return 2;
	if (cli_jail_fork(&jail, control) || cli_sandbox_begin())
		return 1;
	r = vmm_vm_create(&cfg, &vm);
	if (r)
		return cli_fail("create VM", r);
	/* Before the kernel: each device announces itself on the command line. */
	if (cli_devices_add(&devs, vm)) {
		vmm_vm_destroy(vm);
		return 1;
	}
	r = vmm_vm_load_kernel(vm, argv[optind], initrd);
	if (r) {
		vmm_vm_destroy(vm);
		return cli_fail(argv[optind], r);
	}
	if (cli_jail_enter_bound(&jail, control)) {
		vmm_vm_destroy(vm);
		return 1;
	}
	return cli_run_foreground(vm, control);
}
