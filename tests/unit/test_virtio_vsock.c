/* virtio-vsock on the fake kernel and a fake vhost-vsock (the vhost ops hook): the
 * transport hands the rx and tx queues to the kernel (ioeventfd on QueueNotify with the
 * queue as datamatch, irqfd on the device's pin), vhost is set up at start and stopped at
 * pause with the indexes it reached saved, a restored guest gets TRANSPORT_RESET on the
 * event queue, bad CIDs are refused and a host without vhost-vsock says VMM_EUNSUPPORTED. */
#include <errno.h>
#include <linux/vhost.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "libvmm/devices/virtio_mmio.h"
#include "libvmm/devices/virtio_vsock.h"
#include "libvmm/dirty.h"
#include "libvmm/vm_internal.h"

#define RAM_MIB 16
#define QNUM 16
#define RING_BASE 0x200000ull
#define EV_BUF 0x500000ull

/* The fake vhost: what it was told. */
static struct {
	int absent;
	uint64_t cid;
	int running, starts, stops;
	uint32_t base[2];       /* SET_VRING_BASE */
	uint32_t reached[2];    /* what GET_VRING_BASE answers */
	struct vhost_vring_addr addr[2];
	uint64_t features;
	uint64_t *log;
} vh;

static int fake_open(void)
{
	if (vh.absent) {
		errno = ENOENT;
		return -1;
	}
	return eventfd(0, EFD_CLOEXEC); /* any fd the device may close */
}

static int fake_ioctl(int fd, unsigned long req, void *arg)
{
	(void)fd;
	switch (req) {
	case VHOST_SET_OWNER:
		return 0;
	case VHOST_GET_FEATURES:
		*(uint64_t *)arg = (1ull << 32) | (1ull << VHOST_F_LOG_ALL);
		return 0;
	case VHOST_SET_FEATURES:
		vh.features = *(uint64_t *)arg;
		return 0;
	case VHOST_VSOCK_SET_GUEST_CID:
		vh.cid = *(uint64_t *)arg;
		return 0;
	case VHOST_SET_MEM_TABLE:
		return 0;
	case VHOST_SET_LOG_BASE:
		vh.log = (uint64_t *)(uintptr_t)*(uint64_t *)arg;
		return 0;
	case VHOST_SET_VRING_NUM:
	case VHOST_SET_VRING_KICK:
	case VHOST_SET_VRING_CALL:
		return 0;
	case VHOST_SET_VRING_BASE: {
		struct vhost_vring_state *s = arg;

		vh.base[s->index] = s->num;
		return 0;
	}
	case VHOST_SET_VRING_ADDR: {
		struct vhost_vring_addr *a = arg;

		vh.addr[a->index] = *a;
		return 0;
	}
	case VHOST_GET_VRING_BASE: {
		struct vhost_vring_state *s = arg;

		s->num = vh.reached[s->index];
		return 0;
	}
	case VHOST_VSOCK_SET_RUNNING:
		/* What vhost wrote while it ran, in its log: the page at 0x600000. */
		if (vh.running && !*(int *)arg && vh.log)
			vh.log[0x600000 / 4096 / 64] |= 1ull << (0x600000 / 4096 % 64);
		vh.running = *(int *)arg;
		if (vh.running)
			vh.starts++;
		else
			vh.stops++;
		return 0;
	}
	errno = ENOTTY;
	return -1;
}

static const struct vmm__vhost_ops fake_vhost = { fake_open, fake_ioctl };

static int setup(void **state)
{
	memset(&vh, 0, sizeof(vh));
	vmm__vhost_set_ops_for_tests(&fake_vhost);
	return fake_vm_setup(state);
}

static int teardown(void **state)
{
	(void)state;
	vmm__vhost_set_ops_for_tests(NULL);
	return 0;
}

static uint32_t rd(struct vmm_vm *vm, uint32_t off)
{
	const struct vmm__bus_range *r = vmm__bus_find(&vm->mmio, VMM_VIRTIO_MMIO_BASE + off);
	uint32_t v = 0;

	assert_non_null(r);
	r->fn(r->opaque, VMM_VIRTIO_MMIO_BASE + off, (uint8_t *)&v, 4, 0);
	return v;
}

static void wr(struct vmm_vm *vm, uint32_t off, uint32_t v)
{
	const struct vmm__bus_range *r = vmm__bus_find(&vm->mmio, VMM_VIRTIO_MMIO_BASE + off);

	assert_non_null(r);
	r->fn(r->opaque, VMM_VIRTIO_MMIO_BASE + off, (uint8_t *)&v, 4, 1);
}

static struct vmm_vm *vm_with_vsock(uint64_t cid)
{
	static const uint8_t hlt[] = { 0xf4, 0xeb, 0xfd };
	static uint8_t img[8192];
	struct vmm_vm *vm = fake_vm_new(RAM_MIB, 1, 0, NULL, NULL);
	struct vmm_vsock_opts o;

	assert_non_null(vm);
	vmm_vsock_opts_init(&o);
	o.guest_cid = cid;
	assert_int_equal(vmm_vm_add_vsock(vm, &o), 0);
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, fake_elf64(img, 0x100000, 0x100000, hlt,
								       sizeof(hlt)), NULL, 0), 0);
	return vm;
}

static uint64_t qaddr(uint32_t q, int part)
{
	return RING_BASE + q * 0x10000 + (uint64_t)part * 0x1000;
}

/* Linux's probe: VERSION_1, three queues of QNUM, DRIVER_OK. */
static void drv_init(struct vmm_vm *vm)
{
	static const uint8_t zero[0x3000];

	assert_int_equal(rd(vm, 0x008), 19);
	wr(vm, 0x070, 0), wr(vm, 0x070, 1), wr(vm, 0x070, 3);
	wr(vm, 0x024, 1), wr(vm, 0x020, 1); /* VERSION_1 */
	wr(vm, 0x070, 11);
	assert_int_equal(rd(vm, 0x070), 11);
	for (uint32_t q = 0; q < 3; q++) {
		assert_int_equal(vmm_vm_mem_write(vm, qaddr(q, 0), zero, sizeof(zero)), 0);
		wr(vm, 0x030, q);
		wr(vm, 0x038, QNUM);
		wr(vm, 0x080, (uint32_t)qaddr(q, 0)), wr(vm, 0x084, 0);
		wr(vm, 0x090, (uint32_t)qaddr(q, 1)), wr(vm, 0x094, 0);
		wr(vm, 0x0a0, (uint32_t)qaddr(q, 2)), wr(vm, 0x0a4, 0);
		wr(vm, 0x044, 1);
	}
	wr(vm, 0x070, 15);
}

static struct vmm__virtio *transport(struct vmm_vm *vm)
{
	struct vmm__virtio *t = NULL;

	for (uint32_t i = 0; i < vm->devices.n && !t; i++)
		t = vmm__virtio_at(vm->devices.items[i].ops, vm->devices.items[i].dev, 0);
	assert_non_null(t);
	return t;
}

static void *dev_named(struct vmm_vm *vm, const char *name, const struct vmm__device_ops **ops)
{
	for (uint32_t i = 0; i < vm->devices.n; i++)
		if (!strcmp(vm->devices.items[i].ops->name, name)) {
			*ops = vm->devices.items[i].ops;
			return vm->devices.items[i].dev;
		}
	fail();
	return NULL;
}

static void no_vhost(void **state)
{
	struct vmm_vm *vm = fake_vm_new(RAM_MIB, 1, 0, NULL, NULL);
	struct vmm_vsock_opts o;

	(void)state;
	vh.absent = 1;
	vmm_vsock_opts_init(&o);
	o.guest_cid = 3;
	assert_int_equal(vmm_vm_add_vsock(vm, &o), VMM_EUNSUPPORTED);
	assert_int_equal(vmm_vm_device_count(vm), 0);
	vmm_vm_destroy(vm);
}

static void bad_cid(void **state)
{
	struct vmm_vm *vm = fake_vm_new(RAM_MIB, 1, 0, NULL, NULL);
	struct vmm_vsock_opts o;
	static const uint64_t bad[] = { 0, 1, 2, 0xffffffffull, 1ull << 32 };

	(void)state;
	vmm_vsock_opts_init(&o);
	assert_int_equal(o.vhost_fd, -1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.guest_cid = bad[i];
		assert_int_equal(vmm_vm_add_vsock(vm, &o), VMM_EINVAL);
	}
	assert_int_equal(vmm_vm_add_vsock(vm, NULL), VMM_EINVAL);
	o.guest_cid = 3;
	o.size = 4;
	assert_int_equal(vmm_vm_add_vsock(vm, &o), VMM_EINVAL);
	assert_int_equal(vmm_vm_device_count(vm), 0);
	vmm_vm_destroy(vm);
}

/* The transport's ioeventfd and irqfd, registered as the device is added: the window's
 * QueueNotify, 4 bytes, datamatch = the queue; the device's pin, 16 + slot. */
static void kernel_queues(void **state)
{
	struct vmm_vm *vm = vm_with_vsock(42);
	struct kvm_ioeventfd e[4];
	struct kvm_irqfd f[4];
	struct vmm_device_info info;
	uint64_t cid = 0;
	uint8_t b[8];

	(void)state;
	assert_int_equal(vh.cid, 42);
	assert_int_equal(fake_kvm_ioeventfds(e, 4), 2);
	assert_int_equal(fake_kvm_irqfds(f, 4), 2);
	for (uint32_t q = 0; q < 2; q++) {
		assert_int_equal(e[q].addr, VMM_VIRTIO_MMIO_BASE + 0x50);
		assert_int_equal(e[q].len, 4);
		assert_int_equal(e[q].datamatch, q);
		assert_true(e[q].flags & KVM_IOEVENTFD_FLAG_DATAMATCH);
		assert_int_equal(f[q].gsi, VMM_VIRTIO_IRQ_BASE);
		assert_int_not_equal(e[q].fd, f[q].fd);
	}
	assert_int_not_equal(e[0].fd, e[1].fd);
	/* The configuration space holds the CID; InterruptStatus says "used" for irqfd's
	 * interrupts, which the transport never sees. */
	for (uint32_t i = 0; i < 8; i++) {
		const struct vmm__bus_range *r = vmm__bus_find(&vm->mmio, VMM_VIRTIO_MMIO_BASE + 0x100 + i);

		r->fn(r->opaque, VMM_VIRTIO_MMIO_BASE + 0x100 + i, &b[i], 1, 0);
		cid |= (uint64_t)b[i] << (8 * i);
	}
	assert_int_equal(cid, 42);
	assert_int_equal(rd(vm, 0x060) & 1, 1);
	vmm_device_info_init(&info);
	assert_int_equal(vmm_vm_device_info(vm, 0, &info), 0);
	assert_string_equal(info.kind, "vsock");
	assert_int_equal(info.guest_cid, 42);
	vmm_vm_destroy(vm);
}

/* vhost runs with the guest only: set up from the transport's queues at start, stopped
 * at pause with the indexes it reached taken back and saved; a restored device carries
 * them to its vhost and sends TRANSPORT_RESET on the event queue as it starts. */
static void lifecycle_and_state(void **state)
{
	struct vmm_vm *vm = vm_with_vsock(7), *vm2;
	const struct vmm__device_ops *ops = NULL;
	struct vmm__virtio_queue q;
	void *dev;
	uint8_t *buf;
	size_t len;
	uint16_t idx, head = 0;
	uint32_t ev = 0xffffffffu, elem[2];
	struct {
		uint64_t addr;
		uint32_t len;
		uint16_t flags, next;
	} d = { EV_BUF, 8, 2, 0 };

	(void)state;
	drv_init(vm);
	assert_int_equal(vh.starts, 0); /* DRIVER_OK before the guest runs: not yet */
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vh.starts, 1);
	assert_int_equal(vh.running, 1);
	assert_true(vh.features & (1ull << VHOST_F_LOG_ALL));
	assert_non_null(vh.log);
	assert_int_equal(vh.addr[0].log_guest_addr, qaddr(0, 2));
	assert_true(vh.addr[1].flags & (1u << VHOST_VRING_F_LOG));
	assert_int_equal(vh.base[0], 0);
	/* vhost moves on; at the pause it stops and its indexes come back. */
	vh.reached[0] = 5, vh.reached[1] = 3;
	assert_int_equal(vmm__dirty_start(&vm->dirty), 0);
	{
		uint64_t bm[RAM_MIB * 256 / 64] = { 0 };

		assert_int_equal(vmm__dirty_sync(&vm->dirty, bm), 0);
		memset(bm, 0, sizeof(bm));
		assert_int_equal(vmm_vm_pause(vm), 0);
		/* vhost's writes reach the dirty tracker by the pause (a migration's last
		 * round), though KVM never saw them. */
		assert_int_equal(vmm__dirty_sync(&vm->dirty, bm), 0);
		assert_true(bm[0x600 / 64] & (1ull << (0x600 % 64)));
	}
	assert_int_equal(vh.running, 0);
	assert_int_equal(vh.stops, 1);
	vmm__virtio_queue_get(transport(vm), 0, &q);
	assert_int_equal(q.last_avail, 5);
	vmm__virtio_queue_get(transport(vm), 1, &q);
	assert_int_equal(q.last_avail, 3);
	dev = dev_named(vm, "virtio0-vsock", &ops);
	assert_int_equal(ops->save(dev, &buf, &len), 0);
	assert_int_equal(vmm_vm_resume(vm), 0);
	assert_int_equal(vh.starts, 2);
	assert_int_equal(vh.base[0], 5);
	assert_int_equal(vh.base[1], 3);

	/* Restored elsewhere (another CID is allowed: the guest re-reads it at the reset). */
	vm2 = vm_with_vsock(9);
	dev = dev_named(vm2, "virtio0-vsock", &ops);
	assert_int_equal(ops->load(dev, (const uint8_t *)"\x01\x02", 2), VMM_ESTATEDATA);
	{
		uint8_t ring[0x3000];

		for (uint32_t qi = 0; qi < 3; qi++) {
			assert_int_equal(vmm_vm_mem_read(vm, qaddr(qi, 0), ring, sizeof(ring)), 0);
			assert_int_equal(vmm_vm_mem_write(vm2, qaddr(qi, 0), ring, sizeof(ring)), 0);
		}
	}
	assert_int_equal(ops->load(dev, buf, len), 0);
	vmm__virtio_queue_get(transport(vm2), 0, &q);
	assert_int_equal(q.last_avail, 5);
	/* One event buffer offered before the restored guest runs. */
	assert_int_equal(vmm_vm_mem_write(vm2, qaddr(2, 0), &d, 16), 0);
	assert_int_equal(vmm_vm_mem_write(vm2, qaddr(2, 1) + 4, &head, 2), 0);
	idx = 1;
	assert_int_equal(vmm_vm_mem_write(vm2, qaddr(2, 1) + 2, &idx, 2), 0);
	assert_int_equal(vmm_vm_mem_write(vm2, EV_BUF, &ev, 4), 0);
	vh.starts = 0;
	assert_int_equal(vmm_vm_start(vm2), 0);
	assert_int_equal(vh.starts, 1);
	assert_int_equal(vh.base[0], 5);
	assert_int_equal(vmm_vm_mem_read(vm2, qaddr(2, 2) + 2, &idx, 2), 0);
	assert_int_equal(idx, 1);
	assert_int_equal(vmm_vm_mem_read(vm2, qaddr(2, 2) + 4, elem, 8), 0);
	assert_int_equal(elem[0], 0);
	assert_int_equal(elem[1], 4);
	assert_int_equal(vmm_vm_mem_read(vm2, EV_BUF, &ev, 4), 0);
	assert_int_equal(ev, 0); /* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET */
	/* Once, not at every resume. */
	assert_int_equal(vmm_vm_pause(vm2), 0);
	assert_int_equal(vmm_vm_resume(vm2), 0);
	assert_int_equal(vmm_vm_mem_read(vm2, qaddr(2, 2) + 2, &idx, 2), 0);
	assert_int_equal(idx, 1);
	free(buf);
	vmm_vm_destroy(vm);
	vmm_vm_destroy(vm2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(no_vhost, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_cid, setup, teardown),
		cmocka_unit_test_setup_teardown(kernel_queues, setup, teardown),
		cmocka_unit_test_setup_teardown(lifecycle_and_state, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
