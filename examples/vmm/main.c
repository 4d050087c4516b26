/* vmm: run, pause, snapshot, restore and migrate VMs from the shell, on top of libvmm. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int usage(FILE *f)
{
	fprintf(f, "usage: vmm <command> [options]\n"
		   "\n"
		   "commands:\n"
		   "  run [--memory SIZE] [--cpus N] [--cmdline STR] [--initrd FILE] KERNEL\n"
		   "        run a VM in the foreground, guest serial on stdout;\n"
		   "        exits with the status the guest wrote to port 0xf4\n"
		   "  version\n"
		   "\n"
		   "libvmm %s\n",
		vmm_version_string());
	return f == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("vmm %s\n", vmm_version_string());
		return 0;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return usage(stdout);
	fprintf(stderr, "vmm: unknown command '%s'\n", argv[1]);
	return usage(stderr);
}
