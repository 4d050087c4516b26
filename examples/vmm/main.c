/* vmm: run, pause, snapshot, restore and migrate VMs from the shell, on top of libvmm. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int usage(FILE *f)
{
	fprintf(f, "usage: vmm <command> [options]\n"
		   "\n"
		   "commands:\n"
		   "  run [--memory SIZE] [--cpus N] [--cmdline STR] [--initrd FILE]\n"
		   "      [--control PATH] KERNEL\n"
		   "        run a VM in the foreground, guest serial on stdout;\n"
		   "        exits with the status the guest wrote to port 0xf4;\n"
		   "        --control serves the control API (HTTP/JSON) on a UNIX socket\n"
		   "  restore [--lazy] [--control PATH] FILE\n"
		   "        run a snapshot in the foreground, like run; --lazy maps its RAM\n"
		   "  receive [--control PATH] [--timeout-ms N] ADDR:PORT\n"
		   "        wait for a live migration on ADDR:PORT ([ADDR]:PORT for IPv6),\n"
		   "        then run the VM that arrived in the foreground, like run\n"
		   "  snapshot-info [--json] FILE\n"
		   "        what a snapshot holds, and whether its checksums match\n"
		   "  version\n"
		   "\n"
		   "control a VM started with --control PATH:\n"
		   "  status PATH            state, shape and uptime as JSON\n"
		   "  pause PATH | resume PATH\n"
		   "  snapshot PATH FILE [--live] [--compress] [--incremental PARENT]\n"
		   "      [--stop] [--track] [--json]\n"
		   "                         save the VM to FILE\n"
		   "  shutdown PATH          stop the VM; its vmm exits 0\n"
		   "  migrate PATH HOST:PORT [--downtime-ms N] [--bandwidth MBPS]\n"
		   "      [--compress off|zstd|auto] [--connections N] [--auto-converge]\n"
		   "      [--max-rounds N] [--json]\n"
		   "                         live-migrate the VM to a vmm receive on HOST:PORT,\n"
		   "                         with progress on stderr; Ctrl-C cancels; once it\n"
		   "                         has moved, the source vmm exits 0\n"
		   "\n"
		   "libvmm %s\n",
		vmm_version_string());
	return f == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
	static const char *const control_verbs[] = { "pause", "resume", "status", "shutdown",
						     "snapshot" };

	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "restore"))
		return cmd_restore(argc - 1, argv + 1);
	if (!strcmp(argv[1], "snapshot-info"))
		return cmd_snapshot_info(argc - 1, argv + 1);
	if (!strcmp(argv[1], "receive"))
		return cmd_receive(argc - 1, argv + 1);
	if (!strcmp(argv[1], "migrate"))
		return cmd_migrate(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(control_verbs) / sizeof(control_verbs[0]); i++)
		if (!strcmp(argv[1], control_verbs[i]))
			return cmd_control(argv[1], argc - 1, argv + 1);
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("vmm %s\n", vmm_version_string());
		return 0;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return usage(stdout);
	fprintf(stderr, "vmm: unknown command '%s'\n", argv[1]);
	return usage(stderr);
}
