/* A lazily restored VM maps its snapshot's RAM image copy-on-write, so that file must not
 * change while the VM lives. On the fake kernel: a truncated file makes the library's own
 * reads (vmm_vm_mem_read, a snapshot save, a migration's rounds) fail with VMM_ETRUNCATED
 * instead of raising SIGBUS in the process; a file copied over is VMM_ECORRUPT; an open for
 * writing breaks the read lease the restore took (where the file system allows one) and is
 * VMM_ECORRUPT too, without a signal to the process; and guest RAM is not inherited by a
 * child the embedder forks (MADV_DONTFORK). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "libvmm/memory.h"
#include "libvmm/vm_move.h"
#include "migrate/rounds.h"

static char dir[256];
static struct vmm_vm *live; /* the test's VM: a failed test leaves it to the teardown */

static const char *at(const char *name)
{
	static char buf[4][512];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

/* A snapshot whose RAM holds `fill` in 64 pages from 3 MiB. */
static void make_snapshot(const char *path, char fill)
{
	struct vmm_snapshot_opts o;
	struct vmm_vm *vm = fake_vm_new_loaded(16, 1, NULL, NULL);
	char page[4096];

	assert_non_null(vm);
	memset(page, fill, sizeof(page));
	for (uint64_t gpa = 0x300000; gpa < 0x340000; gpa += 4096)
		assert_int_equal(vmm_vm_mem_write(vm, gpa, page, sizeof(page)), 0);
	assert_int_equal(vmm_vm_start(vm), 0);
	vmm_snapshot_opts_init(&o);
	o.flags = VMM_SNAPSHOT_STOP;
	assert_int_equal(vmm_snapshot_save(vm, path, &o, NULL), 0);
	vmm_vm_destroy(vm);
}

/* Restores path lazily and starts it (a snapshot needs a RUNNING or PAUSED VM). */
static struct vmm_vm *lazy(const char *path)
{
	struct vmm_restore_opts o;
	struct vmm_vm *vm;
	char c;

	vmm_restore_opts_init(&o);
	o.mode = VMM_RESTORE_LAZY;
	assert_int_equal(vmm_snapshot_restore(path, &o, &vm), 0);
	live = vm;
	assert_int_equal(vmm_vm_mem_read(vm, 0x300000, &c, 1), 0);
	assert_int_equal(c, 'a');
	assert_int_equal(vmm_vm_start(vm), 0);
	return vm;
}

static int teardown(void **state)
{
	(void)state;
	vmm_vm_destroy(live);
	live = NULL;
	return 0;
}

static int save(struct vmm_vm *vm, const char *path)
{
	struct vmm_snapshot_opts o;

	vmm_snapshot_opts_init(&o);
	return vmm_snapshot_save(vm, path, &o, NULL);
}

/* A migration's rounds into a sink that keeps nothing. */
static int drop_begin(void *ctx, uint32_t round, uint64_t npages, int final)
{
	(void)ctx, (void)round, (void)npages, (void)final;
	return 0;
}
static int drop_chunk(void *arg, const uint64_t *pages, uint64_t first, uint64_t n)
{
	volatile uint8_t sum = 0;
	const uint8_t *host = arg;

	(void)pages;
	for (uint64_t p = first; p < first + n; p++) /* reads like a sender: every page */
		sum += host[p * 4096];
	(void)sum;
	return 0;
}
static int drop_copy(void *ctx, struct vmm__rounds *rs)
{
	return vmm__rounds_walk(rs, 0, 1, drop_chunk, ctx);
}
static uint64_t drop_bytes(void *ctx)
{
	(void)ctx;
	return 1;
}

static int migrate_rounds(struct vmm_vm *vm)
{
	const struct vmm__rounds_sink sink = {
		.ctx = vmm__move_ram(vm)->host, .begin = drop_begin, .copy = drop_copy,
		.pass_bytes = drop_bytes,
	};
	const struct vmm__rounds_opts ro = { .max_rounds = 1, .stopped_why = "test" };
	struct vmm__rounds_result res;
	int r = vmm__rounds_run(vm, &ro, &sink, &res);

	if (res.paused_by_us)
		vmm_vm_resume(vm);
	return r;
}

static void truncated_file(void **state)
{
	struct vmm_vm *vm;
	char buf[16];
	int wfd;

	(void)state;
	make_snapshot(at("t.snap"), 'a');
	/* Open for writing first: no lease then, so the truncate below need not wait. */
	wfd = open(at("t.snap"), O_RDWR);
	assert_true(wfd >= 0);
	vm = lazy(at("t.snap"));
	assert_int_equal(ftruncate(wfd, 8192), 0);
	assert_int_equal(vmm_vm_mem_read(vm, 0x310000, buf, sizeof(buf)), VMM_ETRUNCATED);
	assert_non_null(strstr(vmm_last_error(), "truncated"));
	assert_int_equal(vmm_vm_mem_write(vm, 0x320000, "x", 1), VMM_ETRUNCATED);
	assert_int_equal(save(vm, at("t2.snap")), VMM_ETRUNCATED);
	assert_int_equal(access(at("t2.snap"), F_OK), -1);
	assert_int_equal(migrate_rounds(vm), VMM_ETRUNCATED);
	close(wfd);
}

static void copied_over(void **state)
{
	struct vmm_vm *vm;
	char cmd[1200];
	int wfd;

	(void)state;
	make_snapshot(at("c.snap"), 'a');
	make_snapshot(at("other.snap"), 'b');
	wfd = open(at("c.snap"), O_RDWR); /* no lease: cp must not wait for its break */
	assert_true(wfd >= 0);
	vm = lazy(at("c.snap"));
	usleep(20000); /* a new mtime even on a coarse clock */
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", at("other.snap"), at("c.snap"));
	assert_int_equal(system(cmd), 0);
	assert_int_equal(save(vm, at("c2.snap")), VMM_ECORRUPT);
	assert_non_null(strstr(vmm_last_error(), "modified"));
	assert_int_equal(migrate_rounds(vm), VMM_ECORRUPT);
	close(wfd);
}

static void open_for_writing_breaks_lease(void **state)
{
	struct vmm_vm *vm;
	int wfd;

	(void)state;
	make_snapshot(at("l.snap"), 'a');
	/* Where this process can take a lease on the file, the restore must have taken one. */
	wfd = open(at("l.snap"), O_RDONLY);
	assert_true(wfd >= 0);
	if (fcntl(wfd, F_SETLEASE, F_RDLCK) < 0) {
		close(wfd);
		skip(); /* no leases here (file system, or rights) */
	}
	assert_int_equal(fcntl(wfd, F_SETLEASE, F_UNLCK), 0);
	close(wfd);
	vm = lazy(at("l.snap"));
	assert_int_equal(save(vm, at("l1.snap")), 0);
	/* With a lease held, an open for writing waits for its break; O_NONBLOCK says so
	 * at once and starts the break, which must not signal this process. */
	wfd = open(at("l.snap"), O_WRONLY | O_NONBLOCK);
	assert_int_equal(wfd, -1);
	assert_int_equal(errno, EWOULDBLOCK);
	usleep(10000);
	assert_int_equal(save(vm, at("l2.snap")), VMM_ECORRUPT);
	assert_non_null(strstr(vmm_last_error(), "lease"));
	assert_int_equal(migrate_rounds(vm), VMM_ECORRUPT);
}

/* Guest RAM, a memfd's or a lazily mapped file's, is not in a forked child. */
static int in_child(const void *host)
{
	unsigned char v;
	pid_t pid = fork();
	int st;

	if (pid == 0)
		_exit(mincore((void *)host, 4096, &v) < 0 && errno == ENOMEM ? 0 : 1);
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void not_forked(void **state)
{
	struct vmm_vm *vm = fake_vm_new(16, 1, 0, NULL, NULL);

	(void)state;
	assert_non_null(vm);
	assert_false(in_child(vmm__move_ram(vm)->host));
	vmm_vm_destroy(vm);
	make_snapshot(at("f.snap"), 'a');
	vm = lazy(at("f.snap"));
	assert_false(in_child(vmm__move_ram(vm)->host));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(truncated_file, fake_vm_setup, teardown),
		cmocka_unit_test_setup_teardown(copied_over, fake_vm_setup, teardown),
		cmocka_unit_test_setup_teardown(open_for_writing_breaks_lease, fake_vm_setup,
						teardown),
		cmocka_unit_test_setup_teardown(not_forked, fake_vm_setup, teardown),
	};
	char cmd[600];
	int r;

	snprintf(dir, sizeof(dir), "/tmp/vmm-snaplazy.XXXXXX");
	assert_non_null(mkdtemp(dir));
	r = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		r = 1;
	return r;
}
