/* The jail of vmm run/restore/receive (--jail DIR --uid U --gid G [--netns PATH]), in the
 * manner of Firecracker's jailer: the VMM process runs in its own PID, mount, IPC and UTS
 * namespaces (and, if asked, a network namespace someone prepared), with DIR as its root
 * directory, as an unprivileged user, and sees one device node: its own /dev/kvm.
 *
 * The order matters and is fixed by the commands:
 *  1. cli_jail_fork() first of all, before anything is opened: the process splits into
 *     a supervisor, which stays outside, waits, removes the control socket file at the
 *     end (the jailed process can no longer see it) and exits as the jailed one did, and
 *     the jailed process, PID 1 of a new PID namespace, which returns to do the work.
 *  2. The VM is built with the caller's paths and rights (kernel, initrd, snapshot file)
 *     and the control socket is bound where the caller asked, 0600 and owned by the
 *     caller (control_server_listen()).
 *  3. cli_jail_enter(), still before any thread exists: glibc changes the uid of every
 *     thread by signalling it, and a thread already under its seccomp filter would be
 *     killed for the setresuid call.
 * Paths that are used after the jail is entered (a snapshot or TLS directory named on the
 * control API, the TLS directory of receive's own migration, which is read as each
 * connection is made) are paths inside DIR, as with Firecracker. */
#ifndef VMM_CLI_JAIL_H
#define VMM_CLI_JAIL_H

#include <sys/types.h>

struct cli_jail {
	const char *dir; /* NULL: no jail */
	uid_t uid;
	gid_t gid;
	int has_uid, has_gid;
	const char *netns;   /* a network namespace to join (e.g. /run/netns/NAME), or NULL */
	const char *kvm_dev; /* the device whose node the jail gets as /dev/kvm (tests) */
};

/* The getopt_long entries of the jail options; their values are the cases of
 * cli_jail_option(). */
#define CLI_JAIL_OPT_DIR 0x100
#define CLI_JAIL_OPT_UID 0x101
#define CLI_JAIL_OPT_GID 0x102
#define CLI_JAIL_OPT_NETNS 0x103
#define CLI_JAIL_OPTIONS                                                  \
	{ "jail", required_argument, NULL, CLI_JAIL_OPT_DIR },            \
	{ "uid", required_argument, NULL, CLI_JAIL_OPT_UID },             \
	{ "gid", required_argument, NULL, CLI_JAIL_OPT_GID },             \
	{ "netns", required_argument, NULL, CLI_JAIL_OPT_NETNS }

void cli_jail_init(struct cli_jail *j);
/* Takes one jail option (opt is one of CLI_JAIL_OPT_*). Returns 0, or -1 after printing
 * why to stderr, or -1 silently for any other opt (an option getopt_long already refused),
 * so a command's getopt loop can end in `default: if (cli_jail_option(...)) return 2;`. */
int cli_jail_option(struct cli_jail *j, int opt, const char *arg);
/* Checks the options as a whole once they are all read: --uid and --gid are needed with
 * --jail (and mean nothing without it), uid 0 is no jail, DIR must be a directory, the
 * KVM device must exist. Returns 0, or -1 after printing why. */
int cli_jail_check(const struct cli_jail *j);

/* Step 1 (see above). Returns 0 in the jailed process; the supervisor never returns (it
 * exits with the jailed process's status, or dies by its signal). control_path (or NULL)
 * is the socket file the supervisor removes at the end if nobody serves it any more.
 * Returns -1 after printing why if the process cannot be split. No jail: returns 0. */
int cli_jail_fork(const struct cli_jail *j, const char *control_path);

/* Step 3: namespaces, DIR as / (pivot_root; the old root detached), a private /dev with
 * only kvm (owned by the jail's user, 0600) and a /proc of the new PID namespace (libvmm
 * reopens its own files through /proc/self/fd), supplementary groups dropped, gid and
 * uid changed for good, no new privileges. Creates DIR/dev and DIR/proc if missing
 * (empty directories; what is mounted on them lives only as long as the jail). Returns 0,
 * or -1 after printing why (the caller then gives up: a half-built jail never runs a
 * guest). No jail: returns 0. */
int cli_jail_enter(const struct cli_jail *j);

#endif
