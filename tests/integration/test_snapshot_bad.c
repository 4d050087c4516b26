/* A full disk during save: an error, the VM still running, no file under the final name.
 * The attacks on saved files (truncation, flipped bytes, future features, huge VMs) need
 * no guest and are tests/unit/test_snapshot_files.c. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static char dir[256];
static int small_fs_mounted;

static int count_files(const char *d)
{
	DIR *dd = opendir(d);
	struct dirent *e;
	int n = 0;

	while ((e = readdir(dd)))
		n += e->d_name[0] != '.';
	closedir(dd);
	return n;
}

static void disk_full(void **state)
{
	char mnt[600], path[700];
	struct tu_output out;
	struct vmm_snapshot_opts o;
	struct vmm_vm *vm;
	struct vmm_exit ex;
	char *s;
	int r;

	(void)state;
	snprintf(mnt, sizeof(mnt), "%s/small", dir);
	if (!small_fs_mounted) {
		/* Without root the scenario cannot be staged; say so loudly. */
		print_message("SKIP disk_full: cannot mount a small tmpfs\n");
		skip();
	}
	snprintf(path, sizeof(path), "%s/full.snap", mnt);
	tu_output_init(&out);
	vm = tu_vm_new("memcheck.elf", "mem=24 gens=100000", 64, 1, &out);
	assert_int_equal(vmm_vm_start(vm), 0);
	tu_wait_lines(&out, vm, 2, 30); /* "gen 1 ok": the working set is written */
	vmm_snapshot_opts_init(&o);
	r = vmm_snapshot_save(vm, path, &o, NULL);
	assert_int_equal(r, VMM_ENOSPC);
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_RUNNING);
	assert_int_equal(count_files(mnt), 0); /* neither the file nor its temporary */
	o.flags = VMM_SNAPSHOT_COMPRESS | VMM_SNAPSHOT_LIVE;
	r = vmm_snapshot_save(vm, path, &o, NULL);
	assert_true(r == VMM_ENOSPC || r == 0); /* compressed may fit */
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_RUNNING);
	unlink(path);
	{
		struct vmm_snapshot_stats st;

		o.flags = 0;
		snprintf(path, sizeof(path), "%s/fits.snap", dir); /* a disk with room: fine */
		assert_int_equal(vmm_snapshot_save(vm, path, &o, &st), 0);
		assert_true(st.pages_written > 24 * 256 / 2); /* the working set really is there */
		unlink(path);
	}
	/* The guest kept running through all that, and its memory still verifies. */
	tu_wait_lines(&out, vm, 5, 30);
	assert_int_equal(vmm_vm_stop(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 10000, &ex), 0);
	s = tu_output_copy(&out);
	assert_null(strstr(s, "CORRUPT"));
	assert_non_null(strstr(s, "memcheck gen 4 ok"));
	free(s);
	vmm_vm_destroy(vm);
	tu_output_free(&out);
}

int main(void)
{
	char small[600];
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(disk_full),
	};
	int r;

	tu_require_kvm();
	snprintf(dir, sizeof(dir), "/tmp/vmm-snapbad.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(small, sizeof(small), "%s/small", dir);
	mkdir(small, 0755);
	small_fs_mounted = mount("tmpfs", small, "tmpfs", 0, "size=4m") == 0;
	r = cmocka_run_group_tests(tests, NULL, NULL);
	if (small_fs_mounted)
		umount(small);
	rmdir(small);
	rmdir(dir);
	return r;
}
