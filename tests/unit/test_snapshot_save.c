/* vmm_snapshot_save on the fake kernel: what a saved file and an incremental chain must
 * keep. File modes (0600 by default: the file holds guest memory), relative parent paths
 * (one rule: relative to the child's directory, whatever the cwd at save or restore), and
 * incremental chains that must not lose pages when a tracked save fails or a migration
 * harvests the dirty log between the parent and the child. */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "libvmm/bitmap.h"
#include "libvmm/dirty.h"
#include "libvmm/memory.h"
#include "libvmm/vm_move.h"
#include "migrate/rounds.h"

#define PAGE 4096ull

static char dir[256];
static char cwd0[PATH_MAX];
static uint32_t ring; /* the dirty ring's size for new_vm, 0: KVM's bitmap */
static struct vmm_vm *live; /* the test's VM: a failed test leaves it to the teardown */

static const char *at(const char *name)
{
	static char buf[4][512];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s%s", dir, ring ? "ring-" : "", name);
	return buf[i];
}

/* A RUNNING fake VM. */
static struct vmm_vm *new_vm(void)
{
	static const uint8_t hlt_loop[] = { 0xf4, 0xeb, 0xfd };
	static uint8_t img[8192];
	size_t len = fake_elf64(img, 0x100000, 0x100000, hlt_loop, sizeof(hlt_loop));
	struct vmm_vm *vm = fake_vm_new(16, 1, ring, NULL, NULL);

	assert_non_null(vm);
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), 0);
	live = vm;
	assert_int_equal(vmm_vm_start(vm), 0);
	return vm;
}

/* Its vCPU thread must be gone before the next test resets the fake kernel. */
static int teardown(void **state)
{
	(void)state;
	vmm_vm_destroy(live);
	live = NULL;
	ring = 0;
	return chdir(cwd0);
}

/* Pages [first, first + n) rewritten with seed: even pages as the guest does (straight into
 * RAM, reported by KVM's dirty log), odd ones through vmm_vm_mem_write (a host mark). */
static void scribble(struct vmm_vm *vm, uint64_t first, uint64_t n, uint32_t seed)
{
	uint8_t *host = vmm__move_ram(vm)->host;
	uint32_t buf[PAGE / 4];

	for (uint64_t p = first; p < first + n; p++) {
		for (size_t i = 0; i < PAGE / 4; i++)
			buf[i] = seed * 2654435761u + (uint32_t)(p * 977 + i);
		if (p % 2 == 0) {
			memcpy(host + p * PAGE, buf, PAGE);
			if (ring)
				fake_kvm_ring_push(0, 0, p);
			else
				fake_kvm_dirty_set(0, p);
		} else {
			assert_int_equal(vmm_vm_mem_write(vm, p * PAGE, buf, PAGE), 0);
		}
	}
}

static int save(struct vmm_vm *vm, const char *path, uint32_t flags, const char *parent)
{
	struct vmm_snapshot_opts o;

	vmm_snapshot_opts_init(&o);
	o.flags = flags;
	o.parent = parent;
	return vmm_snapshot_save(vm, path, &o, NULL);
}

/* A copy of vm's RAM now, for restores_to. */
static uint8_t *ram_now(struct vmm_vm *vm)
{
	uint8_t *a = malloc(vmm_vm_mem_size(vm));

	assert_non_null(a);
	assert_int_equal(vmm_vm_mem_read(vm, 0, a, vmm_vm_mem_size(vm)), 0);
	return a;
}

/* Restores path eagerly and checks that every page equals ram (ram_now, freed here). Call
 * it once the test is done scribbling: the fake kernel's dirty log is the newest VM's. */
static void restores_to(const char *path, uint8_t *ram, uint64_t size)
{
	struct vmm_restore_opts o;
	struct vmm_vm *copy;
	uint8_t *b = malloc(size);
	int r;

	vmm_restore_opts_init(&o);
	r = vmm_snapshot_restore(path, &o, &copy);
	if (r)
		fail_msg("restore %s: %s (%s)", path, vmm_err_name(r), vmm_last_error());
	assert_int_equal(vmm_vm_mem_size(copy), size);
	assert_int_equal(vmm_vm_mem_read(copy, 0, b, size), 0);
	vmm_vm_destroy(copy);
	for (uint64_t p = 0; p < size / PAGE; p++)
		if (memcmp(ram + p * PAGE, b + p * PAGE, PAGE))
			fail_msg("%s: page %llu differs from the VM's", path, (unsigned long long)p);
	free(ram);
	free(b);
}

/* ---- item 13: the file holds guest memory */

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

static void file_modes(void **state)
{
	struct vmm_vm *vm = new_vm();
	struct vmm_snapshot_opts o;
	mode_t old = umask(022);

	(void)state;
	assert_int_equal(save(vm, at("m.snap"), 0, NULL), 0);
	assert_int_equal(mode_of(at("m.snap")), 0600);
	assert_int_equal(save(vm, at("mz.snap"), VMM_SNAPSHOT_COMPRESS, NULL), 0);
	assert_int_equal(mode_of(at("mz.snap")), 0600);
	vmm_snapshot_opts_init(&o);
	o.file_mode = 0640;
	assert_int_equal(vmm_snapshot_save(vm, at("m640.snap"), &o, NULL), 0);
	assert_int_equal(mode_of(at("m640.snap")), 0640);
	/* The umask applies, as to any file a process creates. */
	umask(077);
	assert_int_equal(vmm_snapshot_save(vm, at("m077.snap"), &o, NULL), 0);
	assert_int_equal(mode_of(at("m077.snap")), 0600);
	/* Permission bits only. */
	o.file_mode = 04755;
	assert_int_equal(vmm_snapshot_save(vm, at("bad.snap"), &o, NULL), VMM_EINVAL);
	assert_int_equal(access(at("bad.snap"), F_OK), -1);
	umask(old);
}

/* ---- item 10: relative parent paths */

static void relative_parent(void **state)
{
	struct vmm_snapshot_info info = { .size = sizeof(info) };
	struct vmm_vm *vm = new_vm();

	(void)state;
	assert_int_equal(mkdir(at("chain"), 0700), 0);
	assert_int_equal(mkdir(at("chain/base"), 0700), 0);
	assert_int_equal(mkdir(at("chain/inc"), 0700), 0);
	assert_int_equal(mkdir(at("elsewhere"), 0700), 0);
	/* Saved from dir: every path the caller passes is relative to its cwd. */
	assert_int_equal(chdir(dir), 0);
	scribble(vm, 100, 8, 1);
	assert_int_equal(save(vm, "chain/base/p.snap", VMM_SNAPSHOT_TRACK, NULL), 0);
	scribble(vm, 104, 8, 2);
	assert_int_equal(save(vm, "chain/base/c1.snap", VMM_SNAPSHOT_INCREMENTAL | VMM_SNAPSHOT_TRACK,
			      "chain/base/p.snap"), 0);
	scribble(vm, 110, 8, 3);
	assert_int_equal(save(vm, "chain/inc/c2.snap", VMM_SNAPSHOT_INCREMENTAL | VMM_SNAPSHOT_TRACK,
			      "chain/base/c1.snap"), 0);
	/* Recorded relative to the child's directory. */
	assert_int_equal(vmm_snapshot_info("chain/inc/c2.snap", 0, &info), 0);
	assert_string_equal(info.parent, "../base/c1.snap");
	assert_int_equal(vmm_snapshot_info("chain/base/c1.snap", 0, &info), 0);
	assert_string_equal(info.parent, "p.snap");
	/* Restored from another cwd, with a relative and an absolute path. */
	assert_int_equal(chdir(at("elsewhere")), 0);
	restores_to("../chain/inc/c2.snap", ram_now(vm), vmm_vm_mem_size(vm));
	restores_to(at("chain/inc/c2.snap"), ram_now(vm), vmm_vm_mem_size(vm));
	assert_int_equal(chdir(cwd0), 0);
}

/* ---- item 3: incremental chains keep every page */

/* A save that fails once its RAM pass is under way: the file may grow to `limit` bytes. */
static int save_limited(struct vmm_vm *vm, const char *path, uint32_t flags, const char *parent,
			rlim_t limit)
{
	struct rlimit old, lim;
	int r;

	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = limit;
	signal(SIGXFSZ, SIG_IGN); /* the write fails with EFBIG instead */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	r = save(vm, path, flags, parent);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	return r;
}

static void failed_incremental_retried(void **state)
{
	const uint32_t inc = VMM_SNAPSHOT_INCREMENTAL | VMM_SNAPSHOT_TRACK;
	struct vmm_vm *vm = new_vm();
	uint8_t *ram1;

	(void)state;
	scribble(vm, 0, 64, 1);
	assert_int_equal(save(vm, at("f0.snap"), VMM_SNAPSHOT_TRACK, NULL), 0);
	scribble(vm, 512, 256, 2); /* 1 MiB dirtied */
	assert_int_not_equal(save_limited(vm, at("f1.snap"), inc, at("f0.snap"), 256 << 10), 0);
	assert_int_equal(access(at("f1.snap"), F_OK), -1);
	scribble(vm, 2048, 4, 3);
	/* The retry holds what the failed attempt had harvested too. */
	assert_int_equal(save(vm, at("f1.snap"), inc, at("f0.snap")), 0);
	ram1 = ram_now(vm);
	/* And the chain goes on from the retry. */
	scribble(vm, 3000, 4, 4);
	assert_int_equal(save(vm, at("f2.snap"), inc, at("f1.snap")), 0);
	restores_to(at("f1.snap"), ram1, vmm_vm_mem_size(vm));
	restores_to(at("f2.snap"), ram_now(vm), vmm_vm_mem_size(vm));
}

/* The same with the dirty ring, whose harvest also empties what KVM held. */
static void failed_incremental_retried_ring(void **state)
{
	ring = 256;
	failed_incremental_retried(state);
	ring = 0;
}

/* A migration's rounds into a sink that keeps nothing: it harvests the same tracker. */
static int drop_begin(void *ctx, uint32_t round, uint64_t npages, int final)
{
	(void)ctx, (void)round, (void)npages, (void)final;
	return 0;
}
static int drop_chunk(void *arg, const uint64_t *pages, uint64_t first, uint64_t n)
{
	(void)arg, (void)pages, (void)first, (void)n;
	return 0;
}
static int drop_copy(void *ctx, struct vmm__rounds *rs)
{
	(void)ctx;
	return vmm__rounds_walk(rs, 0, 1, drop_chunk, NULL);
}
static uint64_t drop_bytes(void *ctx)
{
	(void)ctx;
	return 1;
}

static void migration_between(void **state)
{
	const uint32_t inc = VMM_SNAPSHOT_INCREMENTAL | VMM_SNAPSHOT_TRACK;
	const struct vmm__rounds_sink sink = {
		.begin = drop_begin, .copy = drop_copy, .pass_bytes = drop_bytes,
	};
	const struct vmm__rounds_opts ro = { .live = 1, .max_rounds = 2, .stopped_why = "test" };
	struct vmm__rounds_result res;
	struct vmm_vm *vm = new_vm();

	(void)state;
	assert_int_equal(save(vm, at("g0.snap"), VMM_SNAPSHOT_TRACK, NULL), 0);
	scribble(vm, 700, 32, 5);
	/* A migration that then fails: the source runs on, tracking as before. */
	assert_int_equal(vmm__rounds_run(vm, &ro, &sink, &res), 0);
	assert_int_equal(vmm_vm_resume(vm), 0);
	scribble(vm, 900, 4, 6);
	assert_int_equal(save(vm, at("g1.snap"), inc, at("g0.snap")), 0);
	restores_to(at("g1.snap"), ram_now(vm), vmm_vm_mem_size(vm));
}

/* A save without TRACK that fails leaves the VM's tracking as it was. */
static void failed_untracked_keeps_tracking(void **state)
{
	struct vmm_vm *vm = new_vm();

	(void)state;
	assert_int_equal(save(vm, at("h0.snap"), VMM_SNAPSHOT_TRACK, NULL), 0);
	scribble(vm, 40, 256, 7);
	assert_int_not_equal(save_limited(vm, at("hx.snap"), VMM_SNAPSHOT_COMPRESS, NULL, 64 << 10), 0);
	scribble(vm, 400, 4, 8);
	assert_int_equal(save(vm, at("h1.snap"), VMM_SNAPSHOT_INCREMENTAL | VMM_SNAPSHOT_TRACK,
			      at("h0.snap")), 0);
	restores_to(at("h1.snap"), ram_now(vm), vmm_vm_mem_size(vm));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(file_modes, fake_vm_setup, teardown),
		cmocka_unit_test_setup_teardown(relative_parent, fake_vm_setup, teardown),
		cmocka_unit_test_setup_teardown(failed_incremental_retried, fake_vm_setup, teardown),
		cmocka_unit_test_setup_teardown(failed_incremental_retried_ring, fake_vm_setup,
						teardown),
		cmocka_unit_test_setup_teardown(migration_between, fake_vm_setup, teardown),
		cmocka_unit_test_setup_teardown(failed_untracked_keeps_tracking, fake_vm_setup, teardown),
	};
	char cmd[600];
	int r;

	assert_non_null(getcwd(cwd0, sizeof(cwd0)));
	snprintf(dir, sizeof(dir), "/tmp/vmm-snapsave.XXXXXX");
	assert_non_null(mkdtemp(dir));
	r = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		r = 1;
	return r;
}
