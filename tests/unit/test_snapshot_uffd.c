/* VMM_RESTORE_UFFD on the fake kernel: RAM filled on first touch by the pager through
 * userfaultfd, each page checked against the file's hash. Every page reads as an eager
 * restore of the same file reads it; a restored VM saves; one flipped page is
 * VMM_ECORRUPT for that page only (library reads) and stops the VM (a vCPU touching it
 * leaves KVM_RUN, the VM cannot start); a file cut short is VMM_ETRUNCATED; a compressed
 * file restores eagerly; destroy while a vCPU waits for a slow page neither hangs nor
 * leaks; a working set recorded on one run is prefetched by the next, and a damaged or
 * stale set file is ignored; the pager under its sandbox filter. Skipped where userfaultfd
 * is refused (not root, no /dev/userfaultfd). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "libvmm/memory.h"
#include "libvmm/memory_pager.h"
#include "libvmm/vm_move.h"
#include "migrate/snapshot_file.h"
#include "vmm/sandbox.h"

#define MEM_MIB 16
#define NPAGES (MEM_MIB * 256ull)
/* The test's pages: distinct bytes in each, above the fake kernel's image. */
#define FIRST 0x200000ull
#define LAST 0xe00000ull

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

static void fill(uint64_t gpa, uint8_t *page)
{
	for (size_t i = 0; i < 4096; i += 8) {
		uint64_t v = gpa * 0x9e3779b97f4a7c15ull + i;

		memcpy(page + i, &v, 8);
	}
}

/* A snapshot with every page of [FIRST, LAST) distinct, the rest zero; flags as saved. */
static void make_snapshot(const char *path, uint32_t flags)
{
	struct vmm_snapshot_opts o;
	struct vmm_vm *vm = fake_vm_new_loaded(MEM_MIB, 1, NULL, NULL);
	uint8_t page[4096];

	assert_non_null(vm);
	for (uint64_t gpa = FIRST; gpa < LAST; gpa += 4096) {
		fill(gpa, page);
		assert_int_equal(vmm_vm_mem_write(vm, gpa, page, sizeof(page)), 0);
	}
	assert_int_equal(vmm_vm_start(vm), 0);
	vmm_snapshot_opts_init(&o);
	o.flags = VMM_SNAPSHOT_STOP | flags;
	assert_int_equal(vmm_snapshot_save(vm, path, &o, NULL), 0);
	vmm_vm_destroy(vm);
}

static int restore(const char *path, enum vmm_restore_mode mode, struct vmm_vm **vm)
{
	struct vmm_restore_opts o;

	vmm_restore_opts_init(&o);
	o.mode = mode;
	return vmm_snapshot_restore(path, &o, vm);
}

/* Restores path through the pager (skips the test without userfaultfd). */
static struct vmm_vm *uffd(const char *path)
{
	struct vmm_vm *vm;

	assert_int_equal(restore(path, VMM_RESTORE_UFFD, &vm), 0);
	live = vm;
	if (!vmm__move_ram(vm)->pager)
		skip(); /* fell back to eager: no userfaultfd here */
	return vm;
}

static int teardown(void **state)
{
	(void)state;
	vmm_vm_destroy(live);
	live = NULL;
	vmm__pager_test_delay_us(0);
	return 0;
}

/* All of RAM from an eager restore of path: the reference. */
static uint8_t *eager_ram(const char *path)
{
	uint8_t *ram = malloc(NPAGES * 4096);
	struct vmm_vm *vm;

	assert_non_null(ram);
	assert_int_equal(restore(path, VMM_RESTORE_EAGER, &vm), 0);
	assert_int_equal(vmm_vm_mem_read(vm, 0, ram, NPAGES * 4096), 0);
	vmm_vm_destroy(vm);
	return ram;
}

/* Every page, one read each, equals the eager restore's; then a save of the restored VM
 * restores (eagerly) to the same RAM. */
static void every_page_and_save(void **state)
{
	uint8_t *ref, page[4096];
	struct vmm__pager_stats st;
	struct vmm_snapshot_opts o;
	struct vmm_vm *vm;

	(void)state;
	make_snapshot(at("a.snap"), 0);
	ref = eager_ram(at("a.snap"));
	vm = uffd(at("a.snap"));
	vmm__pager_stats(vmm__move_ram(vm)->pager, &st);
	assert_int_equal(st.npages, NPAGES);
	assert_true(st.loaded < NPAGES / 4); /* the restore itself loads next to nothing */
	for (uint64_t p = 0; p < NPAGES; p++) {
		assert_int_equal(vmm_vm_mem_read(vm, p * 4096, page, sizeof(page)), 0);
		if (memcmp(page, ref + p * 4096, 4096))
			fail_msg("page %llu differs from the eager restore", (unsigned long long)p);
	}
	/* (the pager counts a page just after the copy that released its reader) */
	for (int i = 0; i < 100; i++) {
		vmm__pager_stats(vmm__move_ram(vm)->pager, &st);
		if (st.loaded == NPAGES)
			break;
		usleep(10000);
	}
	assert_int_equal(st.loaded, NPAGES);
	assert_true(st.faults > NPAGES / 2); /* they came through the fault thread */

	/* A fresh restore, saved before anything was read: the save loads what is missing. */
	vmm_vm_destroy(vm);
	live = NULL;
	vm = uffd(at("a.snap"));
	assert_int_equal(vmm_vm_start(vm), 0);
	vmm_snapshot_opts_init(&o);
	o.flags = VMM_SNAPSHOT_STOP;
	assert_int_equal(vmm_snapshot_save(vm, at("b.snap"), &o, NULL), 0);
	vmm_vm_destroy(vm);
	live = NULL;
	{
		uint8_t *again = eager_ram(at("b.snap"));

		assert_memory_equal(again, ref, NPAGES * 4096);
		free(again);
	}
	free(ref);
}

/* Flips one byte of RAM page `page` in the file. */
static void flip(const char *path, uint64_t page)
{
	int fd = open(path, O_RDWR);
	uint8_t b;
	off_t off = (off_t)(VMM_SNAP_RAM_OFFSET + page * 4096 + 100);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

/* The damaged page is VMM_ECORRUPT; its neighbours and every other page read right; the
 * VM is stopped with the code and cannot start, and a save refuses it. */
static void flipped_page(void **state)
{
	const uint64_t bad = FIRST / 4096 + 77;
	uint8_t page[4096], want[4096];
	struct vmm_exit ex;
	struct vmm_vm *vm;

	(void)state;
	make_snapshot(at("c.snap"), 0);
	flip(at("c.snap"), bad);
	vm = uffd(at("c.snap"));
	assert_int_equal(vmm_vm_mem_read(vm, bad * 4096, page, sizeof(page)), VMM_ECORRUPT);
	assert_non_null(strstr(vmm_last_error(), "checksum"));
	assert_int_equal(vmm_vm_mem_read(vm, bad * 4096 + 4000, page, 200), VMM_ECORRUPT);
	assert_int_equal(vmm_vm_mem_write(vm, bad * 4096, page, 1), VMM_ECORRUPT);
	for (uint64_t gpa = FIRST; gpa < LAST; gpa += 4096) {
		if (gpa == bad * 4096)
			continue;
		fill(gpa, want);
		assert_int_equal(vmm_vm_mem_read(vm, gpa, page, sizeof(page)), 0);
		assert_memory_equal(page, want, sizeof(page));
	}
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_STOPPED);
	assert_int_equal(vmm_vm_wait(vm, 0, &ex), 0);
	assert_int_equal(ex.reason, VMM_EXIT_ERROR);
	assert_int_equal(ex.status, VMM_ECORRUPT);
	assert_int_not_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm__memory_check(vmm__move_ram(vm)), VMM_ECORRUPT);
}

/* The pager confines itself as a migration thread (sandbox.h): in a child with that
 * kind's filter on, pages load, a flipped one fails as above (the stop kicks, the log
 * writes), and destroy ends the thread; a call outside its list would kill the child by
 * SIGSYS, saying which on stderr. */
static void sandboxed(void **state)
{
	const uint64_t bad = FIRST / 4096 + 5;
	struct vmm_sandbox_opts so;
	uint8_t page[4096], want[4096];
	struct vmm_vm *vm;
	int status;
	pid_t pid;

	(void)state;
	make_snapshot(at("s.snap"), 0);
	flip(at("s.snap"), bad);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int ok;

		vmm_sandbox_opts_init(&so);
		so.kinds = VMM_SANDBOX_MIGRATION;
		so.report_fd = 2;
		if (vmm_sandbox_enable(&so) || restore(at("s.snap"), VMM_RESTORE_UFFD, &vm))
			_exit(2);
		if (!vmm__move_ram(vm)->pager)
			_exit(3); /* no userfaultfd: the parent skips */
		ok = vmm_vm_mem_read(vm, bad * 4096, page, sizeof(page)) == VMM_ECORRUPT;
		for (uint64_t gpa = FIRST; ok && gpa < LAST; gpa += 4096 * 7) {
			fill(gpa, want);
			ok = gpa == bad * 4096 ||
			     (!vmm_vm_mem_read(vm, gpa, page, sizeof(page)) &&
			      !memcmp(page, want, sizeof(page)));
		}
		vmm_vm_destroy(vm);
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
		skip();
	if (WIFSIGNALED(status))
		fail_msg("the sandboxed child died by signal %d", WTERMSIG(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* A vCPU touching the damaged page: the VM stops with VMM_ECORRUPT, the vCPU leaves
 * KVM_RUN (it was kicked before its fault was released). */
static void vcpu_flipped_page(void **state)
{
	const uint64_t bad = FIRST / 4096 + 5;
	struct vmm_exit ex;
	struct vmm_vm *vm;

	(void)state;
	make_snapshot(at("d.snap"), 0);
	flip(at("d.snap"), bad);
	vm = uffd(at("d.snap"));
	fake_kvm_script_touch(0, FIRST + 4096); /* a good page first */
	fake_kvm_script_touch(0, bad * 4096);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 5000, &ex), 0);
	assert_int_equal(ex.reason, VMM_EXIT_ERROR);
	assert_int_equal(ex.status, VMM_ECORRUPT);
	assert_non_null(strstr(ex.detail, "checksum"));
}

/* A vCPU reads the right byte through the pager. */
static void vcpu_reads_page(void **state)
{
	uint8_t want[4096];
	struct vmm_vm *vm;

	(void)state;
	make_snapshot(at("e.snap"), 0);
	vm = uffd(at("e.snap"));
	fill(FIRST + 9 * 4096 + 0, want);
	fake_kvm_script_touch(0, FIRST + 9 * 4096 + 3);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(fake_kvm_script_wait(0), 0);
	assert_int_equal(fake_kvm_touched(0), want[3]);
}

/* Cut before the restore: the restore says so. Cut after: the pages past the cut are
 * VMM_ETRUNCATED, those before read right. */
static void truncated_file(void **state)
{
	uint8_t page[4096], want[4096];
	struct vmm_vm *vm;
	uint64_t half = (FIRST + LAST) / 2;

	(void)state;
	make_snapshot(at("f.snap"), 0);
	vm = uffd(at("f.snap"));
	assert_int_equal(truncate(at("f.snap"), (off_t)(VMM_SNAP_RAM_OFFSET + half)), 0);
	fill(FIRST, want);
	assert_int_equal(vmm_vm_mem_read(vm, FIRST, page, sizeof(page)), 0);
	assert_memory_equal(page, want, sizeof(page));
	assert_int_equal(vmm_vm_mem_read(vm, half + 4096, page, sizeof(page)), VMM_ETRUNCATED);
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_STOPPED);
	vmm_vm_destroy(vm);
	live = NULL;
	assert_int_equal(restore(at("f.snap"), VMM_RESTORE_UFFD, &vm), VMM_ETRUNCATED);
	assert_null(vm);
}

/* Compressed files have no page image: restored eagerly, and right. */
static void compressed_is_eager(void **state)
{
	uint8_t page[4096], want[4096];
	struct vmm_vm *vm;

	(void)state;
	make_snapshot(at("g.snap"), VMM_SNAPSHOT_COMPRESS);
	assert_int_equal(restore(at("g.snap"), VMM_RESTORE_UFFD, &vm), 0);
	live = vm;
	assert_null(vmm__move_ram(vm)->pager);
	fill(FIRST + 4096 * 3, want);
	assert_int_equal(vmm_vm_mem_read(vm, FIRST + 4096 * 3, page, sizeof(page)), 0);
	assert_memory_equal(page, want, sizeof(page));
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Destroy while a vCPU waits in KVM_RUN for a page the pager is slow to serve: the vCPU is
 * served, leaves, and everything is joined and freed (ASan: no leak) within the delay. */
static void destroy_with_pending_fault(void **state)
{
	struct vmm_vm *vm;
	double t0;

	(void)state;
	make_snapshot(at("h.snap"), 0);
	vm = uffd(at("h.snap"));
	vmm__pager_test_delay_us(300000);
	fake_kvm_script_touch(0, FIRST + 4096 * 11);
	fake_kvm_script_touch(0, FIRST + 4096 * 12);
	assert_int_equal(vmm_vm_start(vm), 0);
	usleep(50000); /* the vCPU is in its first fault now */
	t0 = now_s();
	vmm_vm_destroy(vm);
	live = NULL;
	assert_true(now_s() - t0 < 3.0);
}

static char logged[512];

static void keep_log(void *opaque, int level, const char *msg)
{
	(void)opaque, (void)level;
	snprintf(logged, sizeof(logged), "%s", msg);
}

static struct vmm_vm *uffd_wset(const char *path, uint32_t record_ms, uint32_t prefetch)
{
	struct vmm_restore_opts o;
	struct vmm_vm *vm;

	vmm_restore_opts_init(&o);
	o.mode = VMM_RESTORE_UFFD;
	o.wset_record_ms = record_ms;
	o.wset_prefetch = prefetch;
	o.log = keep_log;
	logged[0] = 0;
	assert_int_equal(vmm_snapshot_restore(path, &o, &vm), 0);
	live = vm;
	if (!vmm__move_ram(vm)->pager)
		skip();
	return vm;
}

static const uint64_t wpages[] = { 0x200, 0x201, 0x202, 0x2a0, 0x300, 0x555, 0x556, 0xd00 };
#define NW (sizeof(wpages) / sizeof(wpages[0]))
#define LATE_PAGE 0x900ull /* touched only after the recording window */

static void read_wpages(struct vmm_vm *vm)
{
	uint8_t page[4096], want[4096];

	for (size_t i = 0; i < NW; i++) {
		fill(wpages[i] * 4096, want);
		assert_int_equal(vmm_vm_mem_read(vm, wpages[i] * 4096, page, sizeof(page)), 0);
		assert_memory_equal(page, want, sizeof(page));
	}
}

/* Record what a run touches in its first 100 ms; the next restore prefetches exactly
 * that before it returns (no faults for those pages then); a damaged or another
 * snapshot's set is ignored with a warning, and the pages still read right. */
static void working_set(void **state)
{
	struct vmm__pager_stats st, st2;
	struct vmm_vm *vm;
	char cmd[1200];
	uint8_t late[8];
	int fd;

	(void)state;
	make_snapshot(at("w.snap"), 0);
	vm = uffd_wset(at("w.snap"), 100, 1);
	assert_int_equal(vmm_vm_start(vm), 0);
	read_wpages(vm);
	/* The window closes 100 ms after the start; the set is written at destroy. */
	usleep(300 * 1000);
	assert_int_equal(vmm_vm_mem_read(vm, LATE_PAGE * 4096, late, sizeof(late)), 0);
	assert_int_equal(access(at("w.snap.wset"), F_OK), -1);
	vmm_vm_destroy(vm);
	live = NULL;
	assert_int_equal(access(at("w.snap.wset"), F_OK), 0);

	vm = uffd_wset(at("w.snap"), 0, 1);
	assert_string_equal(logged, "");
	vmm__pager_stats(vmm__move_ram(vm)->pager, &st);

	assert_true(st.loaded >= NW);
	read_wpages(vm);
	vmm__pager_stats(vmm__move_ram(vm)->pager, &st2);
	assert_int_equal(st2.faults, st.faults); /* all prefetched */
	/* touched after the window: not in the set */
	assert_int_equal(vmm_vm_mem_read(vm, LATE_PAGE * 4096, late, sizeof(late)), 0);
	vmm__pager_stats(vmm__move_ram(vm)->pager, &st2);
	assert_int_equal(st2.faults, st.faults + 1);
	vmm_vm_destroy(vm);
	live = NULL;

	/* another snapshot's set */
	make_snapshot(at("x.snap"), 0);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", at("w.snap.wset"), at("x.snap.wset"));
	assert_int_equal(system(cmd), 0);
	vm = uffd_wset(at("x.snap"), 0, 1);
	assert_non_null(strstr(logged, "working set ignored"));
	assert_non_null(strstr(logged, "another snapshot"));
	read_wpages(vm);
	vmm_vm_destroy(vm);
	live = NULL;

	/* a damaged page copy: that page comes from the snapshot, the others from the set */
	fd = open(at("w.snap.wset"), O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "\x07", 1, 32 + 8 * NW + 8 + 4096 * 2 + 10), 1);
	close(fd);
	vm = uffd_wset(at("w.snap"), 0, 1);
	assert_non_null(strstr(logged, "did not match"));
	vmm__pager_stats(vmm__move_ram(vm)->pager, &st);
	assert_true(st.loaded >= NW - 1);
	read_wpages(vm);
	vmm_vm_destroy(vm);
	live = NULL;

	/* a damaged one: a page number changed */
	fd = open(at("w.snap.wset"), O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "\x07", 1, 32 + 8 * 3), 1);
	close(fd);
	vm = uffd_wset(at("w.snap"), 0, 1);
	assert_non_null(strstr(logged, "checksum"));
	vmm__pager_stats(vmm__move_ram(vm)->pager, &st);
	assert_true(st.loaded < NW);
	read_wpages(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(every_page_and_save, fake_vm_setup, teardown),
		cmocka_unit_test_setup_teardown(flipped_page, fake_vm_setup, teardown),
		cmocka_unit_test_setup_teardown(sandboxed, fake_vm_setup, teardown),
		cmocka_unit_test_setup_teardown(vcpu_flipped_page, fake_vm_setup, teardown),
		cmocka_unit_test_setup_teardown(vcpu_reads_page, fake_vm_setup, teardown),
		cmocka_unit_test_setup_teardown(truncated_file, fake_vm_setup, teardown),
		cmocka_unit_test_setup_teardown(compressed_is_eager, fake_vm_setup, teardown),
		cmocka_unit_test_setup_teardown(destroy_with_pending_fault, fake_vm_setup,
						teardown),
		cmocka_unit_test_setup_teardown(working_set, fake_vm_setup, teardown),
	};
	char cmd[600];
	int r;

	snprintf(dir, sizeof(dir), "/tmp/vmm-snapuffd.XXXXXX");
	assert_non_null(mkdtemp(dir));
	r = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		r = 1;
	return r;
}
