/* An embedder's device state (vmm_vm_register_device_state) on the fake kernel: saved
 * with the machine state, given back byte for byte to the device registered under the
 * same name in a new VM (state load, snapshot restore, live migration: the last two
 * through their prepare callback); a saved device nobody registered refuses the load,
 * naming it, and a migration carrying one is refused before the commit, so the source
 * runs on. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "migrate_util.h"

/* A device whose state is `len` bytes of a pattern; load keeps what it got. */
struct dev {
	size_t len;
	uint8_t seed;
	int saves, loads;
	uint8_t *got;
	size_t got_len;
	int fail_load; /* load returns this */
};

static void pattern(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static int dev_save(void *opaque, uint8_t *buf, size_t cap, size_t *len)
{
	struct dev *d = opaque;

	d->saves++;
	*len = d->len;
	if (d->len <= cap)
		pattern(buf, d->len, d->seed);
	return 0;
}

static int dev_load(void *opaque, const uint8_t *buf, size_t len)
{
	struct dev *d = opaque;

	d->loads++;
	if (d->fail_load)
		return d->fail_load;
	free(d->got);
	d->got = malloc(len ? len : 1);
	memcpy(d->got, buf, len);
	d->got_len = len;
	return 0;
}

static void expect_loaded(const struct dev *src, const struct dev *dst)
{
	uint8_t *want = malloc(src->len ? src->len : 1);

	pattern(want, src->len, src->seed);
	assert_int_equal(dst->loads, 1);
	assert_int_equal(dst->got_len, src->len);
	assert_memory_equal(dst->got, want, src->len);
	free(want);
}

/* A source VM, started and paused, with device "disk0" (and "nic0" if nic). */
static struct vmm_vm *source(struct dev *disk, struct dev *nic)
{
	struct vmm_vm *vm = fake_vm_new_loaded(16, 1, NULL, NULL);

	assert_non_null(vm);
	assert_int_equal(vmm_vm_register_device_state(vm, "disk0", dev_save, dev_load, disk), 0);
	if (nic)
		assert_int_equal(vmm_vm_register_device_state(vm, "nic0", dev_save, dev_load, nic),
				 0);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_pause(vm), 0);
	return vm;
}

static void state_round_trip(void **state)
{
	/* 10000 bytes: more than a first guess of a buffer, so save is asked twice. */
	struct dev disk = { .len = 10000, .seed = 3 }, nic = { .len = 0, .seed = 9 };
	struct dev disk2 = { 0 }, nic2 = { 0 };
	struct vmm_vm *vm = source(&disk, &nic), *vm2;
	void *buf;
	size_t len;

	(void)state;
	assert_int_equal(vmm_vm_state_save(vm, &buf, &len), 0);
	assert_true(disk.saves >= 1);
	vm2 = fake_vm_new(16, 1, 0, NULL, NULL);
	assert_non_null(vm2);
	/* Registered in the other order: the name is what matches. */
	assert_int_equal(vmm_vm_register_device_state(vm2, "nic0", dev_save, dev_load, &nic2), 0);
	assert_int_equal(vmm_vm_register_device_state(vm2, "disk0", dev_save, dev_load, &disk2), 0);
	assert_int_equal(vmm_vm_state_load(vm2, buf, len), 0);
	expect_loaded(&disk, &disk2);
	expect_loaded(&nic, &nic2);
	assert_int_equal(vmm_vm_start(vm2), 0);
	free(buf);
	free(disk2.got);
	free(nic2.got);
	vmm_vm_destroy(vm2);
	vmm_vm_destroy(vm);
}

static void unregistered_device_refused(void **state)
{
	struct dev disk = { .len = 100, .seed = 1 }, nic = { 0 };
	struct vmm_vm *vm = source(&disk, NULL), *vm2;
	void *buf;
	size_t len;

	(void)state;
	assert_int_equal(vmm_vm_state_save(vm, &buf, &len), 0);
	vm2 = fake_vm_new(16, 1, 0, NULL, NULL);
	assert_non_null(vm2);
	assert_int_equal(vmm_vm_register_device_state(vm2, "nic0", dev_save, dev_load, &nic), 0);
	assert_int_equal(vmm_vm_state_load(vm2, buf, len), VMM_ESTATEDATA);
	print_message("    %s\n", vmm_last_error());
	assert_non_null(strstr(vmm_last_error(), "disk0"));
	assert_int_equal(nic.loads, 0);
	/* Not loaded: it may not start. */
	assert_int_equal(vmm_vm_start(vm2), VMM_ESTATE);
	free(buf);
	vmm_vm_destroy(vm2);
	vmm_vm_destroy(vm);
}

static void log_sink(void *opaque, int level, const char *msg)
{
	(void)level;
	snprintf(opaque, 256, "%s", msg);
}

/* A device registered here that the saved VM did not have keeps its state. */
static void registered_device_without_state(void **state)
{
	struct dev disk = { .len = 100, .seed = 1 }, disk2 = { 0 }, nic2 = { 0 };
	struct vmm_vm_config cfg;
	struct vmm_vm *vm = source(&disk, NULL), *vm2;
	char logged[256] = "";
	void *buf;
	size_t len;

	(void)state;
	assert_int_equal(vmm_vm_state_save(vm, &buf, &len), 0);
	vmm_vm_config_init(&cfg);
	cfg.mem_size = 16 << 20;
	cfg.log = log_sink, cfg.log_opaque = logged;
	assert_int_equal(vmm_vm_create(&cfg, &vm2), 0);
	assert_int_equal(vmm_vm_register_device_state(vm2, "disk0", dev_save, dev_load, &disk2), 0);
	assert_int_equal(vmm_vm_register_device_state(vm2, "nic0", dev_save, dev_load, &nic2), 0);
	assert_int_equal(vmm_vm_state_load(vm2, buf, len), 0);
	expect_loaded(&disk, &disk2);
	assert_int_equal(nic2.loads, 0);
	print_message("    log: %s\n", logged);
	assert_non_null(strstr(logged, "nic0"));
	free(buf);
	free(disk2.got);
	vmm_vm_destroy(vm2);
	vmm_vm_destroy(vm);
}

static void load_error_fails_the_load(void **state)
{
	struct dev disk = { .len = 100, .seed = 1 }, disk2 = { .fail_load = VMM_ESTATEDATA };
	struct vmm_vm *vm = source(&disk, NULL), *vm2;
	void *buf;
	size_t len;

	(void)state;
	assert_int_equal(vmm_vm_state_save(vm, &buf, &len), 0);
	vm2 = fake_vm_new(16, 1, 0, NULL, NULL);
	assert_non_null(vm2);
	assert_int_equal(vmm_vm_register_device_state(vm2, "disk0", dev_save, dev_load, &disk2), 0);
	assert_int_equal(vmm_vm_state_load(vm2, buf, len), VMM_ESTATEDATA);
	assert_non_null(strstr(vmm_last_error(), "disk0"));
	assert_int_equal(vmm_vm_start(vm2), VMM_ESTATE);
	free(buf);
	vmm_vm_destroy(vm2);
	vmm_vm_destroy(vm);
}

static void register_checks(void **state)
{
	struct dev d = { 0 };
	struct vmm_vm *vm = fake_vm_new_loaded(16, 1, NULL, NULL);
	char longname[VMM_DEVICE_NAME_MAX + 2];

	(void)state;
	assert_non_null(vm);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	assert_int_equal(vmm_vm_register_device_state(vm, "", dev_save, dev_load, &d), VMM_EINVAL);
	assert_int_equal(vmm_vm_register_device_state(vm, "a b", dev_save, dev_load, &d), VMM_EINVAL);
	assert_int_equal(vmm_vm_register_device_state(vm, longname, dev_save, dev_load, &d),
			 VMM_EINVAL);
	longname[VMM_DEVICE_NAME_MAX] = 0;
	assert_int_equal(vmm_vm_register_device_state(vm, longname, dev_save, dev_load, &d), 0);
	assert_int_equal(vmm_vm_register_device_state(vm, "x", NULL, dev_load, &d), VMM_EINVAL);
	assert_int_equal(vmm_vm_register_device_state(vm, "x", dev_save, NULL, &d), VMM_EINVAL);
	assert_int_equal(vmm_vm_register_device_state(NULL, "x", dev_save, dev_load, &d), VMM_EINVAL);
	assert_int_equal(vmm_vm_register_device_state(vm, "x", dev_save, dev_load, &d), 0);
	assert_int_equal(vmm_vm_register_device_state(vm, "x", dev_save, dev_load, &d), VMM_EBUSY);
	/* The built-in UART's name is no clash: embedder names live apart. */
	assert_int_equal(vmm_vm_register_device_state(vm, "uart-com1", dev_save, dev_load, &d), 0);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_register_device_state(vm, "y", dev_save, dev_load, &d), VMM_ESTATE);
	vmm_vm_destroy(vm);
}

/* ---- snapshots: the device is registered from the restore's prepare callback */

static int prepare_disk(void *opaque, struct vmm_vm *vm)
{
	return vmm_vm_register_device_state(vm, "disk0", dev_save, dev_load, opaque);
}

static int prepare_fails(void *opaque, struct vmm_vm *vm)
{
	(void)opaque, (void)vm;
	return VMM_EBUSY;
}

static void snapshot_restore_prepare(void **state)
{
	struct dev disk = { .len = 5000, .seed = 77 }, disk2 = { 0 };
	struct vmm_vm *vm = source(&disk, NULL), *vm2 = (void *)1;
	struct vmm_snapshot_opts so;
	struct vmm_restore_opts ro;
	char path[] = "/tmp/vmm-devstate-XXXXXX";
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	vmm_snapshot_opts_init(&so);
	assert_int_equal(vmm_snapshot_save(vm, path, &so, NULL), 0);
	vmm_vm_destroy(vm);

	/* Without prepare: refused, naming the device, nothing left behind. */
	vmm_restore_opts_init(&ro);
	assert_int_equal(vmm_snapshot_restore(path, &ro, &vm2), VMM_ESTATEDATA);
	assert_non_null(strstr(vmm_last_error(), "disk0"));
	assert_null(vm2);

	ro.prepare = prepare_disk, ro.prepare_opaque = &disk2;
	assert_int_equal(vmm_snapshot_restore(path, &ro, &vm2), 0);
	expect_loaded(&disk, &disk2);
	assert_int_equal(vmm_vm_start(vm2), 0);
	vmm_vm_destroy(vm2);

	/* Lazily too. */
	ro.mode = VMM_RESTORE_LAZY;
	disk2.loads = 0;
	assert_int_equal(vmm_snapshot_restore(path, &ro, &vm2), 0);
	expect_loaded(&disk, &disk2);
	vmm_vm_destroy(vm2);

	/* A prepare that fails fails the restore with its code. */
	ro.prepare = prepare_fails;
	assert_int_equal(vmm_snapshot_restore(path, &ro, &vm2), VMM_EBUSY);
	assert_null(vm2);
	free(disk2.got);
	unlink(path);
}

/* ---- live migration on the fake kernel, prepare on the receiving side */

static int migrate(struct vmm_vm *vm, vmm_prepare_fn prepare, void *opaque, struct vmm_vm **out,
		   int *send_r)
{
	struct vmm_migrate_opts mo;
	struct mu_rx x;

	mu_rx_init(&x);
	x.o.timeout_ms = 5000;
	x.o.no_start = 1;
	x.o.prepare = prepare, x.o.prepare_opaque = opaque;
	mu_rx_start(&x);
	vmm_migrate_opts_init(&mo);
	mo.timeout_ms = 5000;
	*send_r = vmm_migrate_send_to(vm, "127.0.0.1", x.port, &mo, NULL);
	print_message("    send: %s: %s\n", vmm_err_name(*send_r), vmm_last_error());
	mu_rx_join(&x);
	print_message("    receive: %s: %s\n", vmm_err_name(x.r), x.detail);
	*out = x.vm;
	return x.r;
}

static void migration_prepare(void **state)
{
	struct dev disk = { .len = 3000, .seed = 5 }, disk2 = { 0 };
	struct vmm_vm *vm = fake_vm_new_loaded(16, 1, NULL, NULL), *vm2 = NULL;
	int sr;

	(void)state;
	assert_non_null(vm);
	assert_int_equal(vmm_vm_register_device_state(vm, "disk0", dev_save, dev_load, &disk), 0);
	assert_int_equal(vmm_vm_start(vm), 0);

	/* No prepare: refused before the commit, the source runs on. */
	assert_int_equal(migrate(vm, NULL, NULL, &vm2, &sr), VMM_ESTATEDATA);
	assert_int_not_equal(sr, 0);
	assert_null(vm2);
	assert_int_equal(vmm_vm_migrated(vm), 0);
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_RUNNING);

	/* A prepare that fails: refused at the hello, the source runs on. */
	assert_int_equal(migrate(vm, prepare_fails, NULL, &vm2, &sr), VMM_EBUSY);
	assert_int_equal(sr, VMM_EREFUSED);
	assert_null(vm2);
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_RUNNING);

	assert_int_equal(migrate(vm, prepare_disk, &disk2, &vm2, &sr), 0);
	assert_int_equal(sr, 0);
	assert_non_null(vm2);
	expect_loaded(&disk, &disk2);
	assert_int_equal(vmm_vm_migrated(vm), 1);
	assert_int_equal(vmm_vm_start(vm2), 0);
	free(disk2.got);
	vmm_vm_destroy(vm2);
	vmm_vm_destroy(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(state_round_trip, fake_vm_setup),
		cmocka_unit_test_setup(unregistered_device_refused, fake_vm_setup),
		cmocka_unit_test_setup(registered_device_without_state, fake_vm_setup),
		cmocka_unit_test_setup(load_error_fails_the_load, fake_vm_setup),
		cmocka_unit_test_setup(register_checks, fake_vm_setup),
		cmocka_unit_test_setup(snapshot_restore_prepare, fake_vm_setup),
		cmocka_unit_test_setup(migration_prepare, fake_vm_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
