/* Encrypted snapshots (migrate/snapshot_crypt.h) on the fake kernel: a round trip checked
 * page by page (image and compressed), no guest data in clear in the file, a fresh salt
 * per file, and every attack a specific error with no VM built: wrong or missing key, a
 * plain file given a key, a flipped byte in a RAM chunk, in the sealed metadata, in the
 * header, in the chunk table, and cuts anywhere. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "migrate/snapshot_crypt.h"
#include "migrate/snapshot_file.h"

#define MEM_MIB 16
static const char secret[] = "GUEST-SECRET: nobody on the shared storage may read this";
static char dir[256];
static char enc[512], encz[512], plain[512], bad[600];
static uint8_t key[32], key2[32];
static uint8_t *want; /* the saved VM's RAM, page by page */

/* A VM whose RAM holds a distinct pattern in many pages (and zeros elsewhere). */
static struct vmm_vm *pattern_vm(void)
{
	struct vmm_vm *vm = fake_vm_new_loaded(MEM_MIB, 1, NULL, NULL);
	char page[4096];

	assert_non_null(vm);
	for (uint64_t gpa = 0x200000; gpa < 0x600000; gpa += 4096 * 3) {
		for (size_t i = 0; i < sizeof(page); i++)
			page[i] = (char)((gpa >> 12) * 131 + i * 7);
		memcpy(page + 100, secret, sizeof(secret));
		assert_int_equal(vmm_vm_mem_write(vm, gpa, page, sizeof(page)), 0);
	}
	return vm;
}

static void save(struct vmm_vm *vm, const char *path, uint32_t flags, const uint8_t *k)
{
	struct vmm_snapshot_opts o;

	vmm_snapshot_opts_init(&o);
	o.flags = flags;
	o.key = k;
	o.key_len = k ? 32 : 0;
	if (vmm_snapshot_save(vm, path, &o, NULL))
		fail_msg("save %s: %s (%s)", path, vmm_err_name(vmm_snapshot_save(vm, path, &o, NULL)),
			 vmm_last_error());
}

static int restore(const char *path, const uint8_t *k, enum vmm_restore_mode mode,
		   struct vmm_vm **vm)
{
	struct vmm_restore_opts o;

	vmm_restore_opts_init(&o);
	o.key = k;
	o.key_len = k ? 32 : 0;
	o.mode = mode;
	*vm = (void *)1;
	return vmm_snapshot_restore(path, &o, vm);
}

static void spit(const char *path, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, len), (ssize_t)len);
	close(fd);
}

static void expect(const char *path, const uint8_t *k, int err, const char *what)
{
	struct vmm_vm *vm;
	int r = restore(path, k, VMM_RESTORE_EAGER, &vm);

	if (r != err)
		fail_msg("%s: restore returned %s (%s), want %s", what, vmm_err_name(r),
			 vmm_last_error(), vmm_err_name(err));
	assert_null(vm); /* nothing half-restored */
}

static void check_ram(struct vmm_vm *vm)
{
	uint8_t *got = malloc(MEM_MIB << 20);

	assert_non_null(got);
	assert_int_equal(vmm_vm_mem_read(vm, 0, got, MEM_MIB << 20), 0);
	for (uint64_t p = 0; p < (MEM_MIB << 20) / 4096; p++)
		if (memcmp(got + p * 4096, want + p * 4096, 4096))
			fail_msg("page %llu differs after the encrypted round trip",
				 (unsigned long long)p);
	free(got);
}

static void round_trip(void **state)
{
	const char *files[] = { enc, encz };
	struct vmm_vm *vm;

	(void)state;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(restore(files[i], key, VMM_RESTORE_EAGER, &vm), 0);
		check_ram(vm);
		vmm_vm_destroy(vm);
	}
	/* Lazy falls back to eager, and works. */
	assert_int_equal(restore(enc, key, VMM_RESTORE_LAZY, &vm), 0);
	check_ram(vm);
	vmm_vm_destroy(vm);
}

static void nothing_in_clear(void **state)
{
	const char *files[] = { enc, encz };
	size_t len;

	(void)state;
	for (int i = 0; i < 2; i++) {
		char *p = tu_read_file(files[i], &len);

		assert_null(memmem(p, len, "GUEST-SECRET", 12));
		assert_null(memmem(p, len, "LIBVMMSN", 8)); /* not even the plain preamble */
		free(p);
	}
	/* The plain file does have it: the search above can fail. */
	{
		char *p = tu_read_file(plain, &len);

		assert_non_null(memmem(p, len, "GUEST-SECRET", 12));
		free(p);
	}
}

/* Two saves of one VM under one key: a new salt, so different bytes everywhere. */
static void fresh_salt(void **state)
{
	struct vmm_vm *vm = pattern_vm();
	struct vmm__snap_enc_hdr h1, h2;
	char again[600];
	size_t l1, l2, same = 0;
	uint8_t *a, *b;

	(void)state;
	snprintf(again, sizeof(again), "%s/again.snap", dir);
	assert_int_equal(vmm_vm_start(vm), 0);
	save(vm, again, VMM_SNAPSHOT_STOP, key);
	vmm_vm_destroy(vm);
	a = (uint8_t *)tu_read_file(enc, &l1);
	b = (uint8_t *)tu_read_file(again, &l2);
	memcpy(&h1, a, sizeof(h1));
	memcpy(&h2, b, sizeof(h2));
	assert_memory_not_equal(h1.salt, h2.salt, 32);
	assert_int_equal(l1, l2);
	/* The first RAM chunk: 0x200000 holds data; no 16-byte block may repeat. */
	for (size_t off = 4096 + 0x200000; off < 4096 + 0x300000; off += 16)
		same += !memcmp(a + off, b + off, 16);
	assert_int_equal(same, 0);
	free(a);
	free(b);
	unlink(again);
}

static void keys_refused(void **state)
{
	struct vmm_snapshot_info info = { .size = sizeof(info) };
	struct vmm_snapshot_opts o;
	struct vmm_restore_opts ro;
	struct vmm_vm *vm = pattern_vm();

	(void)state;
	expect(enc, key2, VMM_EKEY, "wrong key");
	expect(encz, key2, VMM_EKEY, "wrong key (compressed)");
	expect(enc, NULL, VMM_EKEY, "no key");
	expect(plain, key, VMM_EKEY, "a plain file given a key");
	assert_int_equal(vmm_snapshot_info(enc, 0, &info), VMM_EKEY);
	/* A key of the wrong length, and an encrypted incremental. */
	assert_int_equal(vmm_vm_start(vm), 0);
	vmm_snapshot_opts_init(&o);
	o.key = key;
	o.key_len = 16;
	assert_int_equal(vmm_snapshot_save(vm, bad, &o, NULL), VMM_EINVAL);
	o.key_len = 32;
	o.flags = VMM_SNAPSHOT_INCREMENTAL;
	o.parent = plain;
	assert_int_equal(vmm_snapshot_save(vm, bad, &o, NULL), VMM_EINVAL);
	assert_int_equal(access(bad, F_OK), -1);
	vmm_restore_opts_init(&ro);
	ro.key_len = 32;
	assert_int_equal(vmm_snapshot_restore(enc, &ro, &vm), VMM_EINVAL);
	vmm_vm_destroy(vm);
}

static void flip(const char *src, size_t at, int err, const char *what)
{
	size_t len;
	uint8_t *p = (uint8_t *)tu_read_file(src, &len);

	assert_true(at < len);
	p[at] ^= 0x01;
	spit(bad, p, len);
	expect(bad, key, err, what);
	free(p);
}

static void tampered(void **state)
{
	struct vmm__snap_enc_hdr h;
	struct vmm__snap ps;
	size_t len;
	char *p = tu_read_file(enc, &len);

	(void)state;
	memcpy(&h, p, sizeof(h));
	free(p);
	/* The plain file of the same VM has the same layout: where the metadata sits. */
	assert_int_equal(vmm__snap_open(plain, &ps), 0);
	flip(enc, 4096 + 0x200000 + 5, VMM_ECORRUPT, "a byte of a RAM chunk");
	flip(enc, 4096 + 0x5ff000, VMM_ECORRUPT, "a byte of the last data chunk");
	flip(enc, 4096 + ps.pre.meta_off + ps.pre.meta_len / 2, VMM_ECORRUPT,
	     "a byte of the metadata");
	flip(enc, 4096 + 10, VMM_ECORRUPT, "a byte of the plain preamble");
	flip(enc, h.table_off + 3, VMM_ECORRUPT, "a byte of the chunk table");
	flip(enc, len - 1, VMM_ECORRUPT, "the table's tag");
	flip(enc, offsetof(struct vmm__snap_enc_hdr, plain_len), VMM_ECORRUPT, "header length");
	flip(enc, offsetof(struct vmm__snap_enc_hdr, reserved1), VMM_ECORRUPT,
	     "a reserved header byte (authenticated too)");
	flip(enc, offsetof(struct vmm__snap_enc_hdr, salt), VMM_EKEY, "the salt");
	flip(enc, 0, VMM_EKEY, "the magic (then a plain file given a key)");
	flip(encz, 4096 + 300, VMM_ECORRUPT, "a byte of a compressed chunk");
	vmm__snap_close(&ps);
}

static void truncated(void **state)
{
	size_t len;
	uint8_t *p = (uint8_t *)tu_read_file(enc, &len);
	size_t cuts[] = { 0, 5, 100, 4095, 4096, 4096 + 0x200000, len / 2, len - 17, len - 1 };

	(void)state;
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		spit(bad, p, cuts[i]);
		expect(bad, key, VMM_ETRUNCATED, "truncated");
	}
	/* And one byte too many. */
	p = realloc(p, len + 1);
	p[len] = 0;
	spit(bad, p, len + 1);
	expect(bad, key, VMM_ECORRUPT, "a byte appended");
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),   cmocka_unit_test(nothing_in_clear),
		cmocka_unit_test(fresh_salt),   cmocka_unit_test(keys_refused),
		cmocka_unit_test(tampered),     cmocka_unit_test(truncated),
	};
	struct vmm_vm *vm;
	int r;

	fake_kvm_install();
	for (int i = 0; i < 32; i++) {
		key[i] = (uint8_t)(i * 17 + 3);
		key2[i] = key[i];
	}
	key2[31] ^= 1;
	snprintf(dir, sizeof(dir), "/tmp/vmm-snapcrypt.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(enc, sizeof(enc), "%s/enc.snap", dir);
	snprintf(encz, sizeof(encz), "%s/encz.snap", dir);
	snprintf(plain, sizeof(plain), "%s/plain.snap", dir);
	snprintf(bad, sizeof(bad), "%s/bad.snap", dir);
	vm = pattern_vm();
	want = malloc(MEM_MIB << 20);
	assert_int_equal(vmm_vm_mem_read(vm, 0, want, MEM_MIB << 20), 0);
	assert_int_equal(vmm_vm_start(vm), 0);
	save(vm, enc, 0, key);
	save(vm, encz, VMM_SNAPSHOT_COMPRESS, key);
	save(vm, plain, VMM_SNAPSHOT_STOP, NULL);
	vmm_vm_destroy(vm);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	for (const char *const *f = (const char *const[]){ enc, encz, plain, bad, NULL }; *f; f++)
		unlink(*f);
	rmdir(dir);
	free(want);
	return r;
}
