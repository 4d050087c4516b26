/* The vmm command's jail (examples/vmm/cli_jail.c), entered for real in a child process:
 * PID, mount, IPC and UTS namespaces, DIR as the root, a /dev holding only the KVM node
 * (here a node of /dev/null: this test needs no KVM), a /proc of its own, an unprivileged
 * user with no way back, and the supervisor outside that passes signals on, removes the
 * stale control socket and exits as the jailed process did. Needs root, as the jail does. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/capability.h>

#include "testutil.h"
#include "cli.h"
#include "cli_jail.h"

#define JAIL_UID 65534
#define JAIL_GID 65533

static char dir[64], sock[96], outside[96];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/vmm-jail-XXXXXX");
	if (!mkdtemp(dir) || chown(dir, JAIL_UID, JAIL_GID) || chmod(dir, 0755))
		return -1;
	snprintf(sock, sizeof(sock), "%s.sock", dir);
	snprintf(outside, sizeof(outside), "%s.outside", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[320];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s %s", dir, sock, outside);
	return system(cmd) == 0 ? 0 : -1;
}

static struct cli_jail jail_of(void)
{
	struct cli_jail j;

	cli_jail_init(&j);
	j.dir = dir;
	j.uid = JAIL_UID, j.has_uid = 1;
	j.gid = JAIL_GID, j.has_gid = 1;
	j.kvm_dev = "/dev/null";
	return j;
}

/* Runs body in a child as `vmm run --jail` would: cli_jail_fork() there makes it the
 * supervisor of a jailed grandchild that enters the jail and runs body, whose return
 * value is its exit status. Returns the child's (the supervisor's) wait status. */
static int run_jailed(const struct cli_jail *j, const char *control, int (*body)(void *),
		      void *arg, int (*before)(void *))
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit none = { 0, 0 };

		/* cmocka's handlers would carry on with the tests in here */
		for (int sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		setrlimit(RLIMIT_CORE, &none);
		if (cli_jail_fork(j, control))
			_exit(90);
		if (before && before(arg))
			_exit(91);
		if (cli_jail_enter(j))
			_exit(92);
		_exit(body(arg));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void options_checked(void **state)
{
	struct cli_jail j;

	(void)state;
	cli_jail_init(&j);
	assert_int_equal(cli_jail_check(&j), 0); /* no jail asked */
	assert_int_equal(cli_jail_option(&j, CLI_JAIL_OPT_UID, "1000"), 0);
	assert_int_equal(cli_jail_check(&j), -1); /* --uid without --jail */
	j = jail_of();
	assert_int_equal(cli_jail_check(&j), 0);
	j.has_gid = 0;
	assert_int_equal(cli_jail_check(&j), -1); /* --jail without --gid */
	j = jail_of();
	j.uid = 0;
	assert_int_equal(cli_jail_check(&j), -1); /* root is no jail */
	j = jail_of();
	j.dir = "/etc/passwd";
	assert_int_equal(cli_jail_check(&j), -1); /* not a directory */
	j = jail_of();
	j.kvm_dev = "/nonexistent/kvm";
	assert_int_equal(cli_jail_check(&j), -1); /* no KVM device to give the jail */
	j = jail_of();
	assert_int_equal(cli_jail_option(&j, CLI_JAIL_OPT_UID, "-1"), -1);
	assert_int_equal(cli_jail_option(&j, CLI_JAIL_OPT_UID, "4294967295"), -1);
	assert_int_equal(cli_jail_option(&j, CLI_JAIL_OPT_GID, "12x"), -1);
	assert_int_equal(cli_jail_option(&j, CLI_JAIL_OPT_GID, ""), -1);
}

/* Before the jail: a socket bound where the caller asked (as control_server_listen
 * does) and a file opened outside, as the VM's files are. */
static int bind_and_open(void *arg)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0), f;

	strcpy(sa.sun_path, sock);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 1))
		return -1;
	f = open(outside, O_RDWR | O_CREAT, 0600);
	if (f < 0 || write(f, "outside", 7) != 7)
		return -1;
	((int *)arg)[0] = f;
	((int *)arg)[1] = memfd_create("guest-ram", MFD_CLOEXEC);
	return ((int *)arg)[1] < 0 ? -1 : 0;
}

#define CHECK(cond, code)                                                               \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "jailed: %s failed (errno %d)\n", #cond, errno); \
			return code;                                                    \
		}                                                                       \
	} while (0)

/* What the jailed process sees; each failed check exits with its own status. */
static int inside(void *arg)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct caps[2];
	char buf[16], self[64];
	struct stat st;
	struct dirent *e;
	int fd = ((int *)arg)[0], memfd = ((int *)arg)[1], entries = 0, f;
	DIR *d;

	CHECK(getpid() == 1, 10); /* PID 1 of its own PID namespace */
	CHECK(getuid() == JAIL_UID && geteuid() == JAIL_UID, 11);
	CHECK(getgid() == JAIL_GID && getegid() == JAIL_GID, 12);
	CHECK(getgroups(0, NULL) == 0, 13);
	CHECK(setresuid(0, 0, 0) == -1 && errno == EPERM, 14);
	CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, 15);
	CHECK(syscall(SYS_capget, &hdr, caps) == 0 && caps[0].effective == 0 &&
		      caps[0].permitted == 0 && caps[1].effective == 0,
	      16);
	/* The root is DIR: its marker is at /, the host's files are not reachable. */
	CHECK(access("/marker", F_OK) == 0, 17);
	CHECK(access(outside, F_OK) == -1 && errno == ENOENT, 18);
	CHECK(access("/etc/passwd", F_OK) == -1, 19);
	/* /dev: only kvm, the node of the device asked for, the jail user's alone. */
	d = opendir("/dev");
	CHECK(d != NULL, 20);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			entries += strcmp(e->d_name, "kvm") ? 100 : 1;
	closedir(d);
	CHECK(entries == 1, 21);
	CHECK(stat("/dev/kvm", &st) == 0 && S_ISCHR(st.st_mode), 22);
	CHECK(st.st_rdev == makedev(1, 3), 23); /* /dev/null's numbers: kvm_dev's node */
	CHECK(st.st_uid == JAIL_UID && (st.st_mode & 07777) == 0600, 24);
	f = open("/dev/kvm", O_RDWR);
	CHECK(f >= 0, 25);
	close(f);
	CHECK(mknod("/dev/new", S_IFCHR | 0600, st.st_rdev) == -1, 26);
	/* A file opened outside before the jail (root's, 0600) still works; /proc/self/fd
	 * reopens the guest's RAM (libvmm reopens its files so, for O_DIRECT or its own
	 * offset). */
	CHECK(pread(fd, buf, 7, 0) == 7 && !memcmp(buf, "outside", 7), 27);
	snprintf(self, sizeof(self), "/proc/self/fd/%d", memfd);
	f = open(self, O_RDONLY);
	CHECK(f >= 0, 28);
	close(f);
	CHECK(access("/proc/meminfo", R_OK) == 0, 29); /* the receiver's memory cap */
	/* DIR is writable by the jail's user (snapshots land there), set-uid bits are not
	 * honoured (nosuid). */
	f = open("/written", O_WRONLY | O_CREAT | O_EXCL, 0600);
	CHECK(f >= 0, 30);
	close(f);
	return 0;
}

static int write_marker(void)
{
	char p[96];
	int f;

	snprintf(p, sizeof(p), "%s/marker", dir);
	f = open(p, O_WRONLY | O_CREAT, 0644);
	if (f < 0)
		return -1;
	close(f);
	return 0;
}

static void jailed_process(void **state)
{
	struct cli_jail j = jail_of();
	char p[96];
	struct stat st;
	int fds[2] = { -1, -1 }, status;
	DIR *d;

	(void)state;
	assert_int_equal(write_marker(), 0);
	status = run_jailed(&j, sock, inside, fds, bind_and_open);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* What the jail wrote is in DIR, the jail user's. */
	snprintf(p, sizeof(p), "%s/written", dir);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_uid, JAIL_UID);
	/* Its mounts ended with it: DIR/dev is an empty directory again. */
	snprintf(p, sizeof(p), "%s/dev", dir);
	d = opendir(p);
	assert_non_null(d);
	for (struct dirent *e; (e = readdir(d));)
		assert_true(!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."));
	closedir(d);
	/* The supervisor removed the control socket nobody serves any more. */
	assert_int_equal(lstat(sock, &st), -1);
}

static int wait_for_signal(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return 0;
}

/* SIGTERM to the supervisor (what a shell or a service manager sends) ends the jailed
 * process, which as PID 1 would ignore it if it came straight, and the supervisor exits
 * as it did. */
static void signal_passed_on(void **state)
{
	struct cli_jail j = jail_of();
	int status;
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (cli_jail_fork(&j, NULL) || cli_jail_enter(&j))
			_exit(92);
		_exit(wait_for_signal(NULL));
	}
	usleep(300 * 1000);
	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 128 + SIGTERM);
}

static int crash(void *arg)
{
	volatile uintptr_t nowhere = 8; /* not NULL: UBSan would stop at a null store */

	(void)arg;
	/* A fault, not raise(): PID 1 ignores a signal it sends itself. The default action,
	 * not ASan's handler (which would exit 1). */
	signal(SIGSEGV, SIG_DFL);
	*(volatile int *)nowhere = 1;
	return 0;
}

/* A jailed process killed by a signal (a sandbox's SIGSYS, a crash) is reported by the
 * supervisor's own death by that signal, as if there were no jail. */
static void dies_as_jailed_did(void **state)
{
	struct cli_jail j = jail_of();
	int status;

	(void)state;
	status = run_jailed(&j, NULL, crash, NULL, NULL);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSEGV);
}

static int only_loopback(void *arg)
{
	struct if_nameindex *ifs = if_nameindex(), *i;
	int n = 0, lo = 0;

	(void)arg;
	if (!ifs)
		return 40;
	for (i = ifs; i->if_index; i++, n++)
		lo += !strcmp(i->if_name, "lo");
	if_freenameindex(ifs);
	return n == 1 && lo == 1 ? 0 : 41;
}

/* --netns: the jail joins a network namespace prepared by the caller (ip netns add). */
static void joins_netns(void **state)
{
	struct cli_jail j = jail_of();
	int status;

	(void)state;
	if (system("ip netns add vmm-jail-test 2>/dev/null") != 0)
		fail_msg("ip netns add failed (iproute2 is in make deps)");
	j.netns = "/run/netns/vmm-jail-test";
	assert_int_equal(cli_jail_check(&j), 0);
	status = run_jailed(&j, NULL, only_loopback, NULL, NULL);
	assert_int_equal(system("ip netns del vmm-jail-test"), 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(options_checked),
		cmocka_unit_test(jailed_process),
		cmocka_unit_test(signal_passed_on),
		cmocka_unit_test(dies_as_jailed_did),
		cmocka_unit_test(joins_netns),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "test_cli_jail: needs root (namespaces, mounts, setuid)\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
