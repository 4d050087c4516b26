/* vmm restore FILE: bring a snapshot back and run it in the foreground exactly like
 * vmm run (guest serial on stdout, exit with the guest's status, optional control socket). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_jail.h"
#include "control_server.h"

int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "lazy", no_argument, NULL, 'l' },
		{ "uffd", no_argument, NULL, 'u' },
		{ "control", required_argument, NULL, 'C' },
		{ "allow-cpu-mismatch", no_argument, NULL, 'M' },
		{ "key-file", required_argument, NULL, 'k' },
		CLI_GUEST_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	struct cli_jail jail;
	static struct cli_devices devs;
	uint8_t key[32];
	struct vmm_restore_opts ropts;
	const char *control = NULL;
	struct vmm_vm *vm;
	int c, r;

	cli_jail_init(&jail);
	vmm_restore_opts_init(&ropts);
	/* The devices the guest was started with, in the same order, before its state loads
	 * (the state does not carry disk paths: vmm/devices.h). */
	ropts.prepare = cli_devices_add;
	ropts.prepare_opaque = &devs;
	ropts.serial_out = cli_serial_stdout;
	ropts.log = cli_log_stderr;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			ropts.mode = VMM_RESTORE_LAZY;
			break;
		case 'u':
			ropts.mode = VMM_RESTORE_UFFD;
			break;
		case 'C':
			control = optarg;
			break;
		case 'M':
			ropts.allow_cpu_mismatch = 1;
			break;
		case 'k':
			if (cli_read_key(optarg, key))
				return 1;
			ropts.key = key;
			ropts.key_len = sizeof(key);
			break;
		default: /* one of CLI_GUEST_OPTIONS, or one getopt refused */
			if (cli_guest_option(&devs, &jail, c, optarg))
				return 2;
			break;
		}
	}
	if (optind != argc - 1)
		return cli_usage("restore");
	if (cli_jail_check(&jail))
		return 2;
	if (cli_jail_fork(&jail, control) || cli_sandbox_begin())
		return 1;
	/* A lazy restore keeps the snapshot file open and maps it: a jail entered after it
	 * still reads it. */
	r = vmm_snapshot_restore(argv[optind], &ropts, &vm);
	memset(key, 0, sizeof(key));
	if (r)
		return cli_fail(argv[optind], r);
	if (cli_jail_enter_bound(&jail, control)) {
		vmm_vm_destroy(vm);
		return 1;
	}
	return cli_run_foreground(vm, control);
}
