/* vmm receive ADDR:PORT: wait for one live migration (from `vmm migrate`), then run the
 * VM that arrived in the foreground exactly like vmm run (guest serial on stdout, exit
 * with the guest's status, optional control socket). If the hand-over ends in doubt the
 * paused, never-started VM is kept behind the control socket until vmm migrate-resolve
 * says run (it then runs as usual) or discard (exit 3); without --control nobody could
 * resolve it, so this side lets go at once (exit 3: the source must be resolved run). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cli.h"
#include "cli_jail.h"
#include "cli_tls.h"
#include "control_server.h"

#define EXIT_IN_DOUBT 3

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = 1;
}

/* Serves the control API until the in-doubt VM is resolved. 0: resolved RUN (the VM runs),
 * else this copy is discarded (by the operator, or here on SIGINT/SIGTERM). */
static int wait_resolution(struct vmm_vm *vm, const char *control)
{
	struct control_server *srv = NULL;
	struct timespec tick = { 0, 100000000 };
	int r;

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (control_server_start(vm, control, cli_control_fd, &srv))
		return -1;
	while (vmm_vm_in_doubt(vm) && !stop_signal)
		nanosleep(&tick, NULL);
	control_server_stop(srv);
	/* Without a word from the operator, letting go is the side that cannot make two. */
	if (vmm_vm_in_doubt(vm))
		vmm_migrate_resolve(vm, VMM_RESOLVE_DISCARD);
	r = vmm_vm_run_state(vm) == VMM_VM_RUNNING ? 0 : -1;
	fprintf(stderr, "vmm: receive: resolved: %s\n", r ? "discarded here" : "the guest runs here");
	return r;
}

int cmd_receive(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 'C' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "max-mem", required_argument, NULL, 'M' },
		{ "max-cpus", required_argument, NULL, 'P' },
		{ "allow-cpu-mismatch", no_argument, NULL, 'A' },
		{ "tls-dir", required_argument, NULL, 'T' },
		{ "psk-file", required_argument, NULL, 'K' },
		{ "tls-peer", required_argument, NULL, 'N' },
		CLI_GUEST_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	static struct cli_tls tls; /* big: not on the stack */
	static struct cli_devices devs;
	struct cli_jail jail;
	char tls_why[512];
	struct vmm_receive_opts ro;
	const char *control = NULL, *why = NULL;
	char host[256], *end;
	struct vmm_vm *vm;
	uint16_t port;
	unsigned long n;
	long ms;
	int c, r;

	cli_jail_init(&jail);
	vmm_receive_opts_init(&ro);
	ro.serial_out = cli_serial_stdout;
	ro.log = cli_log_stderr;
	/* cli_run_foreground() starts it, as it does a booted or restored VM. */
	ro.no_start = 1;
	/* The guest's devices, as the source was started with them. A disk on storage both
	 * hosts share is opened now and locked when the source lets it go (vmm/devices.h);
	 * with --jail its path is inside the jail. */
	ro.prepare = cli_devices_add;
	ro.prepare_opaque = &devs;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'C':
			control = optarg;
			break;
		case 't':
			ms = strtol(optarg, &end, 10);
			if (*end || end == optarg || ms < 1 || ms > 3600000) {
				fprintf(stderr, "vmm: bad --timeout-ms '%s' (1..3600000)\n", optarg);
				return 2;
			}
			ro.timeout_ms = (int)ms;
			break;
		case 'M': /* default: the memory this host has available */
			if (cli_parse_size(optarg, &ro.max_mem_size, &why) == 0 && !ro.max_mem_size)
				why = "zero";
			if (why) {
				fprintf(stderr, "vmm: bad --max-mem '%s': %s\n", optarg, why);
				return 2;
			}
			break;
		case 'P': /* default: KVM's recommendation, the host's CPUs */
			n = strtoul(optarg, &end, 10);
			if (*end || end == optarg || n < 1 || n > VMM_VCPUS_MAX) {
				fprintf(stderr, "vmm: bad --max-cpus '%s' (1..%d)\n", optarg,
					VMM_VCPUS_MAX);
				return 2;
			}
			ro.max_vcpus = (uint32_t)n;
			break;
		case 'A':
			ro.allow_cpu_mismatch = 1;
			break;
		case 'T':
		case 'K':
		case 'N':
			if ((c == 'T' ? cli_tls_dir(&tls, optarg, tls_why, sizeof(tls_why))
			     : c == 'K' ? cli_tls_psk_file(&tls, optarg, tls_why, sizeof(tls_why))
					: cli_tls_peer(&tls, optarg, tls_why, sizeof(tls_why)))) {
				fprintf(stderr, "vmm: %s\n", tls_why);
				return 2;
			}
			break;
		default: /* one of CLI_GUEST_OPTIONS, or one getopt refused */
			if (cli_guest_option(&devs, &jail, c, optarg))
				return cli_usage("receive");
			break;
		}
	}
	if (optind != argc - 1)
		return cli_usage("receive");
	if (tls.set && !tls.psk_mode && !tls.peer[0]) {
		fprintf(stderr, "vmm: --tls-dir needs --tls-peer NAME: the name the source's "
				"certificate must carry\n");
		return 2;
	}
	ro.tls = cli_tls_opts(&tls);
	if (cli_parse_hostport(argv[optind], host, sizeof(host), &port)) {
		fprintf(stderr, "vmm: bad address '%s' (ADDR:PORT, [ADDR]:PORT for IPv6)\n",
			argv[optind]);
		return 2;
	}
	if (cli_jail_check(&jail))
		return 2;
	if (cli_jail_fork(&jail, control) || cli_sandbox_begin() ||
	    cli_jail_enter_bound(&jail, control))
		return 1;
	/* Scripts wait for this line before they start the migration. */
	fprintf(stderr, "vmm: receiving on %s\n", argv[optind]);
	r = vmm_migrate_receive_at(host, port, &ro, &vm);
	if (r == VMM_EINDOUBT) {
		fprintf(stderr, "vmm: receive: in doubt: %s; the guest is paused here, never "
				"started%s\n", vmm_last_error(),
			control ? ": `vmm migrate-resolve` on the control socket decides"
				: " and is discarded (no --control): resolve the source run");
		if (!control || wait_resolution(vm, control)) {
			if (!control)
				vmm_migrate_resolve(vm, VMM_RESOLVE_DISCARD);
			vmm_vm_destroy(vm);
			return EXIT_IN_DOUBT;
		}
	} else if (r) {
		return cli_fail("receive", r);
	}
	return cli_run_foreground(vm, control);
}
