/* vmm: run, pause, snapshot, restore and migrate VMs from the shell, on top of libvmm.
 * One table names every command with its synopsis and help: `vmm help`, `vmm --help`,
 * `vmm CMD --help`, each command's usage error and the unknown-command error all come
 * from it, so they cannot drift apart. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct cli_command {
	const char *name;
	const char *synopsis; /* what follows the name */
	const char *help;     /* lines, '\n' between them */
	int (*fn)(int argc, char **argv);
	int control;          /* a client of a running vmm's control socket */
} commands[] = {
	{ "run", "[--memory SIZE] [--cpus N] [--cmdline STR] [--initrd FILE] [--cpu MODEL]"
	  " [--disk PATH[,ro]]... [--rng] [--net tap=NAME[,mac=MAC]]... [--vsock CID] [--control PATH]"
	  " [--no-sandbox]"
	  " [--jail DIR --uid U --gid G [--netns PATH]] KERNEL",
	  "run a VM in the foreground, guest serial on stdout;\n"
	  "exits with the status the guest wrote to port 0xf4;\n"
	  "--disk: a virtio-blk disk on a raw image (locked while in use), --rng:\n"
	  "a virtio-rng; --net: a virtio-net on tap NAME (opened, or created if\n"
	  "missing: root or CAP_NET_ADMIN), MAC random unless given;\n"
	  "each adds virtio_mmio.device=... to the command line;\n"
	  "--cpu: host (default), x86-64-v2, x86-64-v3, x86-64-v4 (a psABI level,\n"
	  "for guests that move between hosts of different CPUs);\n"
	  "--control serves the control API (HTTP/JSON) on a UNIX socket;\n"
	  "every thread runs under its seccomp allow-list (vmm/sandbox.h): a\n"
	  "forbidden system call is named on stderr and kills vmm by SIGSYS;\n"
	  "--no-sandbox turns that off (so for restore and receive);\n"
	  "--jail: vmm runs as U:G with DIR as its root, in its own PID, mount,\n"
	  "IPC and UTS namespaces (and the network namespace PATH), seeing one\n"
	  "device, /dev/kvm; the kernel and files on the command line are read\n"
	  "first, paths given later (control API snapshots) are inside DIR\n"
	  "(so for restore and receive)",
	  cmd_run, 0 },
	{ "restore", "[--lazy | --uffd] [--allow-cpu-mismatch] [--key-file F] [--disk PATH[,ro]]... [--rng]"
	  " [--net tap=NAME[,mac=MAC]]... [--vsock CID]"
	  " [--control PATH] [--no-sandbox] [--jail DIR --uid U --gid G [--netns PATH]] FILE",
	  "run a snapshot in the foreground, like run; --disk, --rng, --net: the\n"
	  "guest's devices, given again in the order of its run; --lazy maps its RAM\n"
	  "(an encrypted one is restored eagerly); --uffd loads each page on first\n"
	  "touch through userfaultfd, checked against its hash; --key-file: the key\n"
	  "an encrypted snapshot was saved with (32 bytes or 64 hex digits);\n"
	  "--allow-cpu-mismatch: restore even if this host lacks CPU features\n"
	  "or the TSC rate the guest had (refused otherwise)", cmd_restore, 0 },
	{ "receive", "[--control PATH] [--timeout-ms N] [--max-mem SIZE] [--max-cpus N]"
	  " [--allow-cpu-mismatch] [--tls-dir DIR --tls-peer NAME | --psk-file F]"
	  " [--disk PATH[,ro]]... [--rng] [--net tap=NAME[,mac=MAC]]... [--vsock CID] [--no-sandbox]"
	  " [--jail DIR --uid U --gid G [--netns PATH]] ADDR:PORT",
	  "wait for a live migration on ADDR:PORT ([ADDR]:PORT for IPv6),\n"
	  "(with TLS 1.3: DIR holds ca.pem, cert.pem, key.pem and the source's\n"
	  "certificate must carry NAME; or F holds IDENTITY:HEXKEY),\n"
	  "then run the VM that arrived in the foreground, like run;\n"
	  "refuses a VM above --max-mem (default: the memory available here)\n"
	  "or --max-cpus (default: this host's CPUs, as KVM recommends);\n"
	  "--allow-cpu-mismatch as for restore; --disk, --rng, --net as for restore:\n"
	  "a disk the source holds (shared storage) is locked here only when the\n"
	  "source lets it go with the guest",
	  cmd_receive, 0 },
	{ "snapshot-info", "[--json] FILE", "what a snapshot holds, and whether its checksums match",
	  cmd_snapshot_info, 0 },
	{ "version", "", "the version of vmm and libvmm", cmd_version, 0 },
	{ "help", "[COMMAND]", "this text, or one command's", cmd_help, 0 },
	{ "status", "PATH", "state, shape and uptime as JSON", cmd_control, 1 },
	{ "pause", "PATH", "pause the VM", cmd_control, 1 },
	{ "resume", "PATH", "resume a paused VM", cmd_control, 1 },
	{ "snapshot",
	  "PATH FILE [--live] [--compress] [--incremental PARENT] [--stop] [--track] "
	  "[--with-disks] [--key-file F] [--json]",
	  "save the VM to FILE; --key-file F encrypts it (AES-256-GCM)\n"
	  "with the key in F (32 bytes or 64 hex digits); --with-disks puts\n"
	  "the disk images in the file too (restore writes them into its\n"
	  "--disk images, same size)", cmd_control, 1 },
	{ "shutdown", "PATH", "stop the VM; its vmm exits 0", cmd_control, 1 },
	{ "migrate",
	  "PATH HOST:PORT [--downtime-ms N] [--bandwidth MBPS] [--compress off|zstd|auto] "
	  "[--connections N] [--auto-converge] [--max-rounds N] [--copy-disks] [--json] "
	  "[--tls-dir DIR [--tls-peer NAME] | --psk-file F]",
	  "live-migrate the VM to a vmm receive on HOST:PORT,\n"
	  "with progress on stderr; Ctrl-C cancels; once it\n"
	  "has moved, the source vmm exits 0; exits 3 if the\n"
	  "outcome is in doubt (paused on both sides);\n"
	  "--copy-disks copies the disk images in the stream into\n"
	  "the receiver's own --disk images (same size, another file;\n"
	  "without it the disks are shared storage)",
	  cmd_migrate, 1 },
	{ "migrate-resolve", "PATH run|discard",
	  "end an in-doubt migration on this side: run takes the\n"
	  "guest here, discard lets this copy go (the opposite on\n"
	  "the other side)",
	  cmd_migrate_resolve, 1 },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct cli_command *find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

/* lead, "NAME SYNOPSIS", wrapped before 88 columns at spaces outside brackets onto lines
 * indented by indent. */
static void print_synopsis(FILE *f, const char *lead, int indent, const struct cli_command *c)
{
	const char *p = c->synopsis;
	int col = fprintf(f, "%s%s", lead, c->name);

	while (*p) {
		const char *end = p;
		int depth = 0;

		while (*end && (depth || *end != ' ')) {
			depth += (*end == '[') - (*end == ']');
			end++;
		}
		if (col + 1 + (end - p) > 88)
			col = fprintf(f, "\n%*s", indent - 1, "") - 1;
		col += fprintf(f, " %.*s", (int)(end - p), p);
		p = *end ? end + 1 : end;
	}
	fputc('\n', f);
}

static void print_help(FILE *f, const char *indent, const char *help)
{
	for (const char *p = help; *p;) {
		size_t n = strcspn(p, "\n");

		fprintf(f, "%s%.*s\n", indent, (int)n, p);
		p += n + (p[n] == '\n');
	}
}

static int usage(FILE *f)
{
	fprintf(f, "usage: vmm <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (commands[i].control && (i == 0 || !commands[i - 1].control))
			fprintf(f, "\ncontrol a VM started with --control PATH:\n");
		print_synopsis(f, "  ", 6, &commands[i]);
		print_help(f, "        ", commands[i].help);
	}
	fprintf(f, "\nlibvmm %s\n", vmm_version_string());
	return f == stderr ? 2 : 0;
}

int cli_usage(const char *name)
{
	const struct cli_command *c = find(name);

	if (!c)
		return usage(stderr);
	print_synopsis(stderr, "usage: vmm ", 7, c);
	return 2;
}

static int cmd_version(int argc, char **argv)
{
	if (argc != 1)
		return cli_usage(argv[0]);
	printf("vmm %s\n", vmm_version_string());
	return 0;
}

static int cmd_help(int argc, char **argv)
{
	const struct cli_command *c;

	if (argc == 1)
		return usage(stdout);
	c = argc == 2 ? find(argv[1]) : NULL;
	if (!c) {
		if (argc == 2)
			fprintf(stderr, "vmm: unknown command '%s'\n", argv[1]);
		return usage(stderr);
	}
	print_synopsis(stdout, "usage: vmm ", 7, c);
	print_help(stdout, "  ", c->help);
	return 0;
}

int main(int argc, char **argv)
{
	const struct cli_command *c;

	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return usage(stdout);
	if (!strcmp(argv[1], "--version"))
		return cmd_version(1, argv + 1);
	c = find(argv[1]);
	if (!c) {
		fprintf(stderr, "vmm: unknown command '%s'\n", argv[1]);
		return usage(stderr);
	}
	/* vmm CMD --help is vmm help CMD, whatever CMD's own options are. */
	if (argc == 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")))
		return cmd_help(2, argv);
	return c->fn(argc - 1, argv + 1);
}
