/* Snapshot files under attack, no KVM needed: truncation, a flipped byte in each region
 * (preamble, RAM, page hashes, metadata, trailer), wrong magic, a future major version or
 * feature, a VM larger than allowed, a text file: each a specific error from both restore
 * and info, no crash, no VM left behind. The good files come from a VM on the fake kernel
 * (tests/util/fake_kvm.h); a full disk while a guest runs stays in
 * tests/integration/test_snapshot_bad.c. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "testutil.h"
#include "fake_vm.h"
#include "migrate/snapshot_file.h"
#include "migrate/stream.h"

static char dir[256];
static char good[512], goodz[512];

/* A paused VM with some RAM written, saved and stopped. */
static void make_snapshot(const char *path, uint32_t flags)
{
	static const char text[] = "a page of guest data that a snapshot must carry";
	struct vmm_snapshot_opts o;
	struct vmm_vm *vm = fake_vm_new_loaded(16, 1, NULL, NULL);

	assert_non_null(vm);
	for (uint64_t gpa = 0x300000; gpa < 0x340000; gpa += 4096)
		assert_int_equal(vmm_vm_mem_write(vm, gpa, text, sizeof(text)), 0);
	assert_int_equal(vmm_vm_start(vm), 0);
	vmm_snapshot_opts_init(&o);
	o.flags = flags | VMM_SNAPSHOT_STOP;
	assert_int_equal(vmm_snapshot_save(vm, path, &o, NULL), 0);
	vmm_vm_destroy(vm);
}

static void spit(const char *path, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, len), (ssize_t)len);
	close(fd);
}

/* Restores eagerly and checks the error; also snapshot-info with verification. */
static void expect_error(const char *path, int want, const char *what)
{
	struct vmm_restore_opts o;
	struct vmm_snapshot_info info = { .size = sizeof(info) };
	struct vmm_vm *vm = (void *)1;
	int r;

	vmm_restore_opts_init(&o);
	r = vmm_snapshot_restore(path, &o, &vm);
	if (r != want)
		fail_msg("%s: restore returned %s (%s), want %s", what, vmm_err_name(r),
			 vmm_last_error(), vmm_err_name(want));
	assert_null(vm);
	r = vmm_snapshot_info(path, 1, &info);
	if (r != want)
		fail_msg("%s: info returned %s (%s), want %s", what, vmm_err_name(r),
			 vmm_last_error(), vmm_err_name(want));
	assert_int_equal(info.verified, 0);
}

static void flip_at(const char *src, size_t at, int want, const char *what)
{
	char bad[600];
	size_t len;
	uint8_t *p = (uint8_t *)tu_read_file(src, &len);

	snprintf(bad, sizeof(bad), "%s/bad.snap", dir);
	assert_true(at < len);
	p[at] ^= 0x5a;
	spit(bad, p, len);
	expect_error(bad, want, what);
	free(p);
}

static void good_files_verify(void **state)
{
	struct vmm_snapshot_info info = { .size = sizeof(info) };

	(void)state;
	assert_int_equal(vmm_snapshot_info(good, 1, &info), 0);
	assert_int_equal(info.verified, 1);
	assert_int_equal(info.mem_size, 16 << 20);
	assert_int_equal(info.vcpus, 1);
	assert_true(info.disk_bytes < info.file_bytes); /* sparse: untouched RAM is holes */
	assert_int_equal(vmm_snapshot_info(goodz, 1, &info), 0);
	assert_int_equal(info.verified, 1);
}

static void truncated(void **state)
{
	size_t len;
	uint8_t *p = (uint8_t *)tu_read_file(good, &len);
	char bad[600];
	size_t cuts[] = { 0, 5, 100, 4095, 4096, 8192, len / 2, len - 33, len - 1 };

	(void)state;
	snprintf(bad, sizeof(bad), "%s/cut.snap", dir);
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		spit(bad, p, cuts[i]);
		expect_error(bad, VMM_ETRUNCATED, "truncated");
	}
	free(p);
}

static void flipped_regions(void **state)
{
	struct vmm__snap s;
	uint64_t data_page;
	int fd;

	(void)state;
	assert_int_equal(vmm__snap_open(good, &s), 0);
	/* The first page of RAM that holds data. */
	fd = open(good, O_RDONLY);
	data_page = (uint64_t)lseek(fd, 4096, SEEK_DATA);
	close(fd);
	flip_at(good, 0, VMM_EMAGIC, "magic");
	flip_at(good, 8, VMM_EVERSION, "major version");
	flip_at(good, 40, VMM_ECORRUPT, "preamble");
	flip_at(good, data_page + 100, VMM_ECORRUPT, "RAM");
	/* Written whole by flip_at (no holes): the last page is read in a later batch of the
	 * eager restore than the first. */
	flip_at(good, s.pre.ram_off + s.pre.ram_len - 1, VMM_ECORRUPT, "the last RAM page");
	flip_at(good, s.pre.hashes_off + 8, VMM_ECORRUPT, "page hashes");
	flip_at(good, s.pre.meta_off + s.pre.meta_len / 2, VMM_ECORRUPT, "metadata");
	flip_at(good, s.pre.file_len - 20, VMM_ECORRUPT, "trailer");
	vmm__snap_close(&s);
	assert_int_equal(vmm__snap_open(goodz, &s), 0);
	flip_at(goodz, s.pre.ram_off + s.pre.ram_len / 2, VMM_ECORRUPT, "compressed RAM");
	vmm__snap_close(&s);
}

/* Rewrites a file with valid hashes after edit() changed its preamble or metadata (which
 * may change length: the file is rebuilt around it). */
static void reseal(const char *src, const char *dst,
		   void (*edit)(struct vmm__snap_preamble *, uint8_t **meta))
{
	size_t len;
	uint8_t *p = (uint8_t *)tu_read_file(src, &len), *meta, *out;
	struct vmm__snap_preamble pre;
	struct vmm__snap_trailer tr;

	memcpy(&pre, p, sizeof(pre));
	meta = malloc(pre.meta_len);
	memcpy(meta, p + pre.meta_off, pre.meta_len);
	edit(&pre, &meta);
	pre.meta_hash = XXH3_64bits(meta, pre.meta_len);
	pre.file_len = pre.meta_off + pre.meta_len + sizeof(tr);
	vmm__snap_seal(&pre, &tr);
	out = calloc(1, pre.file_len);
	memcpy(out, p, pre.meta_off);
	memcpy(out, &pre, sizeof(pre));
	memcpy(out + pre.meta_off, meta, pre.meta_len);
	memcpy(out + pre.meta_off + pre.meta_len, &tr, sizeof(tr));
	spit(dst, out, pre.file_len);
	free(out);
	free(meta);
	free(p);
}

static void future_feature(struct vmm__snap_preamble *pre, uint8_t **meta)
{
	pre->required_features |= 1ull << 40;
}

/* The metadata says 2 TiB of RAM: more than libvmm allows. */
static void huge_vm(struct vmm__snap_preamble *pre, uint8_t **meta)
{
	Vmm__Stream__SnapshotMeta *m = vmm__stream__snapshot_meta__unpack(NULL, pre->meta_len, *meta);

	assert_non_null(m);
	m->hello->shape->mem_size = 2ull << 40;
	pre->meta_len = vmm__stream__snapshot_meta__get_packed_size(m);
	*meta = realloc(*meta, pre->meta_len);
	vmm__stream__snapshot_meta__pack(m, *meta);
	vmm__stream__snapshot_meta__free_unpacked(m, NULL);
}

static void future_and_oversized(void **state)
{
	char bad[600];

	(void)state;
	snprintf(bad, sizeof(bad), "%s/craft.snap", dir);
	reseal(good, bad, future_feature);
	expect_error(bad, VMM_EFEATURE, "future feature");
	assert_non_null(strstr(vmm_last_error(), "0x10000000000"));
	reseal(good, bad, huge_vm);
	expect_error(bad, VMM_ESHAPE, "2 TiB VM");
	expect_error("/nonexistent/snap", VMM_ENOENT, "missing file");
	spit(bad, "hello, world, this is not a snapshot at all........", 50);
	expect_error(bad, VMM_EMAGIC, "text file");
}

/* The good files restore (onto the fake kernel) with their RAM. */
static void good_files_restore(void **state)
{
	struct vmm_restore_opts o;
	struct vmm_vm *vm;
	char buf[16];

	(void)state;
	vmm_restore_opts_init(&o);
	assert_int_equal(vmm_snapshot_restore(goodz, &o, &vm), 0);
	assert_int_equal(vmm_vm_mem_read(vm, 0x33f000, buf, sizeof(buf)), 0);
	assert_memory_equal(buf, "a page of guest ", sizeof(buf));
	vmm_vm_destroy(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(good_files_verify), cmocka_unit_test(good_files_restore),
		cmocka_unit_test(truncated),         cmocka_unit_test(flipped_regions),
		cmocka_unit_test(future_and_oversized),
	};
	char path[700];
	int r;

	fake_kvm_install();
	snprintf(dir, sizeof(dir), "/tmp/vmm-snapfiles.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(good, sizeof(good), "%s/good.snap", dir);
	snprintf(goodz, sizeof(goodz), "%s/goodz.snap", dir);
	make_snapshot(good, 0);
	make_snapshot(goodz, VMM_SNAPSHOT_COMPRESS);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(good);
	unlink(goodz);
	for (const char **f = (const char *[]){ "bad", "cut", "craft", NULL }; *f; f++) {
		snprintf(path, sizeof(path), "%s/%s.snap", dir, *f);
		unlink(path);
	}
	rmdir(dir);
	return r;
}
