/* A disk on storage both ends share, across a live migration (fake kernel, both sides in
 * this process: flock conflicts between open file descriptions, so one process shows what
 * two would). The image's lock moves with the guest: the source holds it while it owns
 * the guest; the destination opens the image in its prepare callback but locks it only
 * after the source let it go, just before GO; a side that cannot get the lock does not
 * run the guest. A third process's view is a probe: open, try to lock, close. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "handover_proxy.h"
#include "migrate_util.h"
#include "migrate/stream.h"

#define MIB 8

static char img[64];

/* 1 if nobody holds the image: a third process could lock it (and let go at once). */
static int lock_free(void)
{
	int fd = open(img, O_RDWR), r;

	assert_true(fd >= 0);
	r = flock(fd, LOCK_EX | LOCK_NB);
	close(fd);
	return r == 0;
}

static int setup(void **state)
{
	int fd;

	snprintf(img, sizeof(img), "/tmp/vmm-disk-handover-XXXXXX");
	fd = mkstemp(img);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	return fake_vm_setup(state);
}

static int teardown(void **state)
{
	(void)state;
	unlink(img);
	return 0;
}

static int add_disk(struct vmm_vm *vm)
{
	struct vmm_disk_opts o;

	vmm_disk_opts_init(&o);
	o.path = img;
	return vmm_vm_add_disk(vm, &o);
}

static int prepare(void *opaque, struct vmm_vm *vm)
{
	(void)opaque;
	return add_disk(vm);
}

/* A running source with the disk (a halting loop for a kernel). */
static struct vmm_vm *source(void)
{
	static const uint8_t hlt_loop[] = { 0xf4, 0xeb, 0xfd };
	static uint8_t kernel[8192];
	size_t len = fake_elf64(kernel, 0x100000, 0x100000, hlt_loop, sizeof(hlt_loop));
	struct vmm_vm *vm = fake_vm_new(MIB, 1, 0, NULL, NULL);

	assert_non_null(vm);
	assert_int_equal(add_disk(vm), 0);
	assert_int_equal(vmm_vm_load_kernel_image(vm, kernel, len, NULL, 0), 0);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_false(lock_free());
	return vm;
}

static void receiver(struct mu_rx *d)
{
	mu_rx_init(d);
	d->o.prepare = prepare;
	d->o.timeout_ms = 2000;
	mu_rx_start(d);
}

static int running(struct vmm_vm *vm)
{
	return vm && vmm_vm_run_state(vm) == VMM_VM_RUNNING;
}

/* Hooks run by the proxy just before it forwards a record. */
struct probe {
	int free_at_ready; /* READY reaching the source: it still owns the guest and the lock */
	int free_at_go;    /* GO reaching the destination: the source let the lock go */
	int held_fd;       /* ... and a third process takes it there (-1: it does not) */
	int take_it;
};

static void at_ready(void *opaque)
{
	struct probe *p = opaque;

	p->free_at_ready = lock_free();
}

static void at_go(void *opaque)
{
	struct probe *p = opaque;

	p->free_at_go = lock_free();
	if (p->take_it) {
		p->held_fd = open(img, O_RDWR);
		assert_int_equal(flock(p->held_fd, LOCK_EX | LOCK_NB), 0);
	}
}

/* The lock stays with the source until it lets the guest go, then the destination has it
 * for as long as its guest lives. */
static void lock_moves_with_the_guest(void **state)
{
	struct vmm_vm *src = source();
	struct probe pr = { .held_fd = -1 };
	struct hp_proxy ready, go;
	struct vmm_device_info info;
	struct mu_rx d;

	(void)state;
	receiver(&d);
	/* Two proxies in a row: one watches READY going back, the other GO going out. */
	hp_start_call(&go, d.port, HP_TO_DST, VMM_REC_GO, at_go, &pr);
	hp_start_call(&ready, go.port, HP_TO_SRC, VMM_REC_READY, at_ready, &pr);
	assert_int_equal(vmm_migrate_send_to(src, "127.0.0.1", ready.port, NULL, NULL), 0);
	assert_int_equal(mu_rx_join(&d), 0);
	assert_true(hp_fired(&ready) && hp_fired(&go));
	/* Joined: what the hooks wrote on the proxies' threads is ours to read. */
	hp_stop(&ready);
	hp_stop(&go);
	assert_int_equal(pr.free_at_ready, 0);
	assert_int_equal(pr.free_at_go, 1);
	assert_true(running(d.vm));
	assert_false(running(src));
	vmm_device_info_init(&info);
	assert_int_equal(vmm_vm_device_info(d.vm, 0, &info), 0);
	assert_string_equal(info.path, img);

	vmm_vm_destroy(src);
	assert_false(lock_free()); /* the destination's */
	vmm_vm_destroy(d.vm);
	assert_true(lock_free());
}

/* The link breaks before READY reaches the source: the source keeps the guest and never
 * let the lock go; the destination, in doubt, never took it. */
static void failure_before_go_keeps_it(void **state)
{
	struct vmm_vm *src = source();
	struct hp_proxy cut;
	struct mu_rx d;

	(void)state;
	receiver(&d);
	hp_start(&cut, d.port, HP_CUT, HP_TO_SRC, VMM_REC_READY, NULL);
	assert_int_not_equal(vmm_migrate_send_to(src, "127.0.0.1", cut.port, NULL, NULL), 0);
	assert_int_equal(mu_rx_join(&d), VMM_EINDOUBT);
	assert_true(running(src));
	assert_int_equal(vmm_migrate_resolve(d.vm, VMM_RESOLVE_DISCARD), 0);
	vmm_vm_destroy(d.vm);
	assert_false(lock_free()); /* still the source's */
	hp_stop(&cut);
	vmm_vm_destroy(src);
	assert_true(lock_free());
}

/* Between the source's release and the destination's start another process locks the
 * image: the destination refuses to start (VMM_ELOCKED) and says so; the source, told,
 * cannot take its lock back either and stays paused: nobody runs the guest without its
 * disk. Once the other process lets go, the source resumes. */
static void lock_taken_meanwhile(void **state)
{
	struct vmm_vm *src = source();
	struct probe pr = { .held_fd = -1, .take_it = 1 };
	struct hp_proxy go;
	struct mu_rx d;
	int r;

	(void)state;
	receiver(&d);
	hp_start_call(&go, d.port, HP_TO_DST, VMM_REC_GO, at_go, &pr);
	r = vmm_migrate_send_to(src, "127.0.0.1", go.port, NULL, NULL);
	print_message("    source: %s (%s)\n", vmm_err_name(r), vmm_last_error());
	hp_stop(&go); /* joined: pr.held_fd is ours to read */
	assert_int_equal(r, VMM_ELOCKED);
	assert_int_equal(mu_rx_join(&d), VMM_ELOCKED);
	assert_false(running(d.vm));
	assert_int_equal(vmm_vm_run_state(src), VMM_VM_PAUSED);
	assert_int_equal(vmm_vm_migrated(src), 0);
	assert_int_equal(vmm_vm_in_doubt(src), 0);
	assert_int_equal(vmm_vm_resume(src), VMM_ELOCKED);
	assert_int_equal(vmm_vm_run_state(src), VMM_VM_PAUSED);

	close(pr.held_fd);
	assert_int_equal(vmm_vm_resume(src), 0);
	assert_true(running(src));
	assert_false(lock_free());
	vmm_vm_destroy(d.vm);
	vmm_vm_destroy(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(lock_moves_with_the_guest, setup, teardown),
		cmocka_unit_test_setup_teardown(failure_before_go_keeps_it, setup, teardown),
		cmocka_unit_test_setup_teardown(lock_taken_meanwhile, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
