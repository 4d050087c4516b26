/* Snapshots written by an earlier libvmm (tests/golden/) must keep loading: each restores
 * and its guest continues to the output the uninterrupted run printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void golden(const char *name, enum vmm_restore_mode mode)
{
	char path[1024];
	struct vmm_restore_opts o;
	struct vmm_snapshot_info info = { .size = sizeof(info) };
	struct tu_output out;
	struct vmm_vm *vm;
	struct vmm_exit ex;
	char *before, *expected, *after;
	int r;

	snprintf(path, sizeof(path), "%s/tests/golden/%s.before", VMM_SOURCE_DIR, name);
	before = tu_read_file(path, NULL);
	snprintf(path, sizeof(path), "%s/tests/golden/%s.expected", VMM_SOURCE_DIR, name);
	expected = tu_read_file(path, NULL);
	snprintf(path, sizeof(path), "%s/tests/golden/%s.snap", VMM_SOURCE_DIR, name);
	assert_int_equal(vmm_snapshot_info(path, 1, &info), 0);
	assert_int_equal(info.verified, 1);
	assert_int_equal(info.format_major, 1);
	tu_output_init(&out);
	vmm_restore_opts_init(&o);
	o.mode = mode;
	o.serial_out = tu_output_sink;
	o.serial_opaque = &out;
	/* The files were saved on another host (an AVX-512 AMD CPU, its TSC rate): its CPUID
	 * has features this host may lack, and the check would rightly refuse them
	 * (VMM_ECPU). This test is about the file format staying loadable; the counter guest
	 * uses no instruction past SSE2 and keeps time by the PIT, so the mismatch is safe. */
	o.allow_cpu_mismatch = 1;
	r = vmm_snapshot_restore(path, &o, &vm);
	if (r)
		fail_msg("%s: %s (%s)", name, vmm_strerror(r), vmm_last_error());
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 60000, &ex), 0);
	assert_int_equal(ex.reason, VMM_EXIT_GUEST);
	assert_int_equal(ex.status, 0);
	vmm_vm_destroy(vm);
	after = tu_output_copy(&out);
	assert_true(strlen(before) < strlen(expected));
	assert_memory_equal(expected, before, strlen(before));
	assert_string_equal(after, expected + strlen(before));
	free(before), free(expected), free(after);
	tu_output_free(&out);
}

static void image_eager(void **s)
{
	golden("counter-v1", VMM_RESTORE_EAGER);
}

static void image_lazy(void **s)
{
	golden("counter-v1", VMM_RESTORE_LAZY);
}

static void compressed(void **s)
{
	golden("counter-v1-compressed", VMM_RESTORE_EAGER);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(image_eager),
		cmocka_unit_test(image_lazy),
		cmocka_unit_test(compressed),
	};

	tu_require_kvm();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
