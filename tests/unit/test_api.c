/* The public API's struct rules, checked without KVM: every entry point takes its options
 * under the one size rule (libvmm/opts.h), vmm_snapshot_info writes no more than the
 * caller's size, and output structs keep room to grow. */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "libvmm/opts.h"
#include "vmm/vmm.h"

/* Stands for a public options struct: size first, reserved room last. */
struct opts_v2 {
	uint32_t size;
	uint32_t a;
	uint64_t b;
	uint64_t reserved[2];
};

/* The same struct as a newer header might declare it, with one field more. */
struct opts_v3 {
	struct opts_v2 v2;
	uint64_t c;
};

static void defaults(struct opts_v2 *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->a = 7;
	o->b = 9;
}

static void opts_copy_rules(void **state)
{
	struct opts_v2 dst, src;
	struct opts_v3 newer;

	(void)state;
	/* No options: the defaults stand. */
	defaults(&dst);
	assert_int_equal(VMM__OPTS_COPY(&dst, NULL, "x_init"), 0);
	assert_int_equal(dst.a, 7);

	/* An older caller's shorter struct: its fields are taken, the rest keep defaults. */
	defaults(&dst);
	defaults(&src);
	src.size = offsetof(struct opts_v2, reserved);
	src.a = 1;
	src.b = 2;
	assert_int_equal(VMM__OPTS_COPY(&dst, &src, "x_init"), 0);
	assert_int_equal(dst.a, 1);
	assert_int_equal(dst.b, 2);
	assert_int_equal(dst.size, sizeof(dst));

	/* Not initialised: too small. */
	src.size = offsetof(struct opts_v2, b);
	assert_int_equal(VMM__OPTS_COPY(&dst, &src, "x_init"), VMM_EINVAL);
	assert_non_null(strstr(vmm_last_error(), "x_init()"));
	src.size = 0;
	assert_int_equal(VMM__OPTS_COPY(&dst, &src, "x_init"), VMM_EINVAL);

	/* A newer caller's larger struct: fine while what we do not know is zero. */
	memset(&newer, 0, sizeof(newer));
	defaults(&newer.v2);
	newer.v2.size = sizeof(newer);
	newer.v2.a = 3;
	defaults(&dst);
	assert_int_equal(VMM__OPTS_COPY(&dst, &newer, "x_init"), 0);
	assert_int_equal(dst.a, 3);
	assert_int_equal(dst.size, sizeof(dst));
	newer.c = 1;
	assert_int_equal(VMM__OPTS_COPY(&dst, &newer, "x_init"), VMM_EINVAL);
}

/* Each entry point rejects an uninitialised options struct before doing anything else
 * (no KVM, no socket, no file is touched). */
static void entry_points_check_size(void **state)
{
	struct vmm_vm_config cfg;
	struct vmm_migrate_opts mo;
	struct vmm_receive_opts ro;
	struct vmm_restore_opts rs;
	struct vmm_vm *vm = NULL;

	(void)state;
	vmm_vm_config_init(&cfg);
	cfg.size = 4;
	assert_int_equal(vmm_vm_create(&cfg, &vm), VMM_EINVAL);
	assert_non_null(strstr(vmm_last_error(), "vmm_vm_config_init()"));
	assert_null(vm);

	vmm_migrate_opts_init(&mo);
	mo.size = 4;
	assert_int_equal(vmm_migrate_send_to(NULL, "127.0.0.1", 1, &mo, NULL), VMM_EINVAL);
	assert_non_null(strstr(vmm_last_error(), "vmm_migrate_opts_init()"));

	vmm_receive_opts_init(&ro);
	ro.size = 4;
	assert_int_equal(vmm_migrate_receive(-1, &ro, &vm), VMM_EINVAL);
	assert_non_null(strstr(vmm_last_error(), "vmm_receive_opts_init()"));
	assert_null(vm);

	vmm_restore_opts_init(&rs);
	rs.size = 4;
	assert_int_equal(vmm_snapshot_restore("/nonexistent", &rs, &vm), VMM_EINVAL);
	assert_non_null(strstr(vmm_last_error(), "vmm_restore_opts_init()"));
}

static void snapshot_info_honours_size(void **state)
{
	struct vmm_snapshot_info info;

	(void)state;
	memset(&info, 0, sizeof(info));
	assert_int_equal(vmm_snapshot_info("/nonexistent", 0, &info), VMM_EINVAL);
	info.size = sizeof(info);
	assert_int_equal(vmm_snapshot_info("/nonexistent", 0, &info), VMM_ENOENT);
}

static void structs_have_room(void **state)
{
	(void)state;
	/* An output struct grows into its reserved room, never past it. */
	assert_true(sizeof(((struct vmm_exit *)0)->reserved) >= 4 * sizeof(uint64_t));
	assert_int_equal(offsetof(struct vmm_vm_config, size), 0);
	assert_int_equal(offsetof(struct vmm_snapshot_opts, size), 0);
	assert_int_equal(offsetof(struct vmm_restore_opts, size), 0);
	assert_int_equal(offsetof(struct vmm_migrate_opts, size), 0);
	assert_int_equal(offsetof(struct vmm_receive_opts, size), 0);
	assert_int_equal(offsetof(struct vmm_snapshot_info, size), 0);
}

/* vmm_last_error() is errno-like: every failure sets it, a success leaves it alone, so it
 * still says what failed after the caller has cleaned up (destroyed the VM, removed a
 * file) with calls that succeed. A fresh thread has "". */
static void *fresh_thread(void *arg)
{
	(void)arg;
	return (void *)(uintptr_t)(vmm_last_error()[0] == '\0');
}

static void last_error_is_errno_like(void **state)
{
	char path[] = "/tmp/vmm-api-XXXXXX", snap[64], want[512];
	struct vmm_snapshot_info info = { .size = sizeof(info) };
	struct vmm_snapshot_opts so;
	struct vmm_restore_opts ro;
	struct vmm_vm *vm, *copy;
	struct vmm_exit ex;
	pthread_t t;
	void *fresh;
	uint8_t b[64];

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, fresh_thread, NULL), 0);
	assert_int_equal(pthread_join(t, &fresh), 0);
	assert_true(fresh != NULL);
	fake_kvm_install();
	assert_non_null(mkdtemp(path));
	snprintf(snap, sizeof(snap), "%s/a.snap", path);
	assert_int_equal(vmm_snapshot_info("/nonexistent/x.snap", 0, &info), VMM_ENOENT);
	snprintf(want, sizeof(want), "%s", vmm_last_error());
	assert_true(want[0] != '\0');
	/* A VM's whole life, every call succeeding. */
	vm = fake_vm_new_loaded(16, 1, NULL, NULL);
	assert_non_null(vm);
	assert_int_equal(vmm_vm_mem_write(vm, 0x200000, "x", 1), 0);
	assert_int_equal(vmm_vm_mem_read(vm, 0x200000, b, 1), 0);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_pause(vm), 0);
	vmm_snapshot_opts_init(&so);
	so.flags = VMM_SNAPSHOT_TRACK;
	assert_int_equal(vmm_snapshot_save(vm, snap, &so, NULL), 0);
	assert_int_equal(vmm_vm_resume(vm), 0);
	assert_int_equal(vmm_vm_stop(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 1000, &ex), 0);
	assert_int_equal(vmm_snapshot_info(snap, 1, &info), 0);
	vmm_restore_opts_init(&ro);
	ro.mode = VMM_RESTORE_LAZY;
	assert_int_equal(vmm_snapshot_restore(snap, &ro, &copy), 0);
	vmm_vm_destroy(copy);
	vmm_vm_destroy(vm);
	assert_string_equal(vmm_last_error(), want);
	unlink(snap);
	rmdir(path);
	fake_kvm_uninstall();
}

static void version_agrees(void **state)
{
	char want[32];

	(void)state;
	snprintf(want, sizeof(want), "%d.%d.%d", VMM_VERSION_MAJOR, VMM_VERSION_MINOR,
		 VMM_VERSION_PATCH);
	assert_string_equal(vmm_version_string(), want);
	assert_int_equal(vmm_version(), VMM_VERSION_HEX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(opts_copy_rules),
		cmocka_unit_test(entry_points_check_size),
		cmocka_unit_test(snapshot_info_honours_size),
		cmocka_unit_test(structs_have_room),
		cmocka_unit_test(version_agrees),
		cmocka_unit_test(last_error_is_errno_like),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
