/* The jail of vmm run/restore/receive (cli_jail.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* unshare, setns, setresuid */
#endif
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "cli_jail.h"

void cli_jail_init(struct cli_jail *j)
{
	memset(j, 0, sizeof(*j));
	j->kvm_dev = "/dev/kvm";
}

static int parse_id(const char *arg, const char *what, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 10);
	/* (uid_t)-1 means "unchanged" to setresuid: never a user. */
	if (!*arg || *arg == '-' || *end || errno || v >= UINT_MAX) {
		fprintf(stderr, "vmm: bad %s '%s' (a number, as in /etc/passwd)\n", what, arg);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

int cli_jail_option(struct cli_jail *j, int opt, const char *arg)
{
	unsigned id;

	switch (opt) {
	case CLI_JAIL_OPT_DIR:
		j->dir = arg;
		return 0;
	case CLI_JAIL_OPT_UID:
		if (parse_id(arg, "--uid", &id))
			return -1;
		j->uid = id, j->has_uid = 1;
		return 0;
	case CLI_JAIL_OPT_GID:
		if (parse_id(arg, "--gid", &id))
			return -1;
		j->gid = id, j->has_gid = 1;
		return 0;
	case CLI_JAIL_OPT_NETNS:
		j->netns = arg;
		return 0;
	}
	return -1;
}

int cli_jail_check(const struct cli_jail *j)
{
	struct stat st;

	if (!j->dir) {
		if (j->has_uid || j->has_gid || j->netns) {
			fprintf(stderr, "vmm: --uid, --gid and --netns belong to --jail DIR\n");
			return -1;
		}
		return 0;
	}
	if (!j->has_uid || !j->has_gid) {
		fprintf(stderr, "vmm: --jail needs --uid and --gid: the user the VMM becomes\n");
		return -1;
	}
	if (j->uid == 0 || j->gid == 0) {
		fprintf(stderr, "vmm: --jail: uid and gid must not be 0 (root can leave any "
				"jail)\n");
		return -1;
	}
	if (stat(j->dir, &st) || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "vmm: --jail %s: not a directory\n", j->dir);
		return -1;
	}
	errno = 0;
	if (stat(j->kvm_dev, &st) || !S_ISCHR(st.st_mode)) {
		fprintf(stderr, "vmm: --jail: %s: %s\n", j->kvm_dev,
			errno ? strerror(errno) : "not a character device");
		return -1;
	}
	if (j->netns && access(j->netns, R_OK)) {
		fprintf(stderr, "vmm: --netns %s: %s\n", j->netns, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- the supervisor */

static volatile pid_t jailed_pid;

/* The jailed process is PID 1 of its namespace: a signal it has no handler for does not
 * reach it, so the supervisor passes on the ones that should end it. */
static void pass_on(int sig)
{
	if (jailed_pid > 0)
		kill(jailed_pid, sig);
}

/* Until the command installs its own handlers, SIGINT/SIGTERM end the jailed process as
 * they would end an unjailed one (as PID 1 it would otherwise ignore them). */
static void end_now(int sig)
{
	_exit(128 + sig);
}

static void supervise(pid_t pid, const char *control_path)
{
	struct sigaction sa = { .sa_handler = pass_on };
	int status;

	jailed_pid = pid;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			fprintf(stderr, "vmm: jail: waitpid: %s\n", strerror(errno));
			_exit(1);
		}
	if (control_path && cli_socket_is_stale(control_path))
		unlink(control_path);
	/* _exit: nothing of the supervisor's is left to flush (it forked right after
	 * fflush), and atexit work would run in a process whose PID namespace for children
	 * has just died (LeakSanitizer's tracer cannot start there). */
	if (WIFEXITED(status))
		_exit(WEXITSTATUS(status));
	/* Dies as the jailed process did (a sandbox kill stays a SIGSYS to the caller). */
	signal(WTERMSIG(status), SIG_DFL);
	prctl(PR_SET_DUMPABLE, 0); /* no core file of the supervisor for its child's crash */
	raise(WTERMSIG(status));
	_exit(128 + WTERMSIG(status));
}

int cli_jail_fork(const struct cli_jail *j, const char *control_path)
{
	pid_t pid;

	if (!j->dir)
		return 0;
	fflush(NULL);
	/* A new PID namespace takes effect for the children made after the call. */
	if (unshare(CLONE_NEWPID)) {
		fprintf(stderr, "vmm: jail: new PID namespace: %s\n", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "vmm: jail: fork: %s\n", strerror(errno));
		return -1;
	}
	if (pid > 0)
		supervise(pid, control_path);
	signal(SIGINT, end_now);
	signal(SIGTERM, end_now);
	signal(SIGHUP, end_now);
	return 0;
}

/* ---- entering the jail */

static int fail(const char *what, const char *path)
{
	fprintf(stderr, "vmm: jail: %s%s%s: %s\n", what, path ? " " : "", path ? path : "",
		strerror(errno));
	return -1;
}

static int mkdir_in(const char *dir, const char *name, char *path, size_t cap)
{
	if ((size_t)snprintf(path, cap, "%s/%s", dir, name) >= cap) {
		errno = ENAMETOOLONG;
		return fail("path", dir);
	}
	if (mkdir(path, 0755) && errno != EEXIST)
		return fail("mkdir", path);
	return 0;
}

/* DIR's own mount, nosuid and nodev: nothing on the user's disk can become a device or a
 * set-uid program inside. */
static int mount_root(const char *dir)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return fail("make mounts private", NULL);
	if (mount(dir, dir, NULL, MS_BIND | MS_REC, NULL))
		return fail("bind", dir);
	if (mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, NULL))
		return fail("remount nosuid,nodev", dir);
	return 0;
}

/* /dev: a small tmpfs holding one node, the KVM device, which only the jail's user can
 * open (the host's /dev/kvm is usually group kvm, a group the jail does not keep). */
static int mount_dev(const struct cli_jail *j)
{
	char dev[PATH_MAX], kvm[PATH_MAX + 8];
	struct stat st;

	if (mkdir_in(j->dir, "dev", dev, sizeof(dev)))
		return -1;
	if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k"))
		return fail("mount tmpfs on", dev);
	if (stat(j->kvm_dev, &st))
		return fail("stat", j->kvm_dev);
	snprintf(kvm, sizeof(kvm), "%s/kvm", dev);
	if (mknod(kvm, S_IFCHR | 0600, st.st_rdev) || chown(kvm, j->uid, j->gid))
		return fail("make", kvm);
	return 0;
}

static int mount_proc(const struct cli_jail *j)
{
	char proc[PATH_MAX];

	if (mkdir_in(j->dir, "proc", proc, sizeof(proc)))
		return -1;
	if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		return fail("mount proc on", proc);
	return 0;
}

/* DIR becomes / and the old root is detached: nothing outside is reachable by path. */
static int pivot(const char *dir)
{
	if (chdir(dir))
		return fail("chdir", dir);
	if (syscall(SYS_pivot_root, ".", "."))
		return fail("pivot_root", dir);
	if (umount2(".", MNT_DETACH))
		return fail("detach the old root", NULL);
	if (chdir("/"))
		return fail("chdir", "/");
	return 0;
}

static int join_netns(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), r;

	if (fd < 0)
		return fail("open", path);
	r = setns(fd, CLONE_NEWNET);
	close(fd);
	return r ? fail("join network namespace", path) : 0;
}

/* For good: with every uid changed, the capabilities go too; no_new_privs keeps an exec
 * (there is none) from gaining any back, and lets the seccomp filters install. */
static int drop_user(const struct cli_jail *j)
{
	if (setgroups(0, NULL))
		return fail("setgroups", NULL);
	if (setresgid(j->gid, j->gid, j->gid))
		return fail("setresgid", NULL);
	if (setresuid(j->uid, j->uid, j->uid))
		return fail("setresuid", NULL);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return fail("no_new_privs", NULL);
	if (setresuid(0, 0, 0) == 0) {
		fprintf(stderr, "vmm: jail: could become root again\n");
		return -1;
	}
	return 0;
}

int cli_jail_enter(const struct cli_jail *j)
{
	if (!j->dir)
		return 0;
	if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS))
		return fail("new namespaces", NULL);
	if (j->netns && join_netns(j->netns))
		return -1;
	if (mount_root(j->dir) || mount_dev(j) || mount_proc(j) || pivot(j->dir))
		return -1;
	return drop_user(j);
}
