/* virtio-net on the fake kernel, driven as a guest driver would (as test_virtio.c does for
 * blk and rng), with a SOCK_SEQPACKET socketpair as the tap: one send is one frame, as on
 * a tap. TX frames reach the peer without their virtio header; RX frames from the peer
 * reach the guest's buffers through the device's own thread, which runs with the VM and
 * stops at a pause; hostile rings and options are refused without a crash. */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "libvmm/devices/virtio_mmio.h"
#include "libvmm/vm_internal.h"

#define MIB (1ull << 20)
#define RAM_MIB 16

#define MAGIC 0x000
#define DEVICE_ID 0x008
#define DEV_FEATURES 0x010
#define DEV_FEATURES_SEL 0x014
#define DRV_FEATURES 0x020
#define DRV_FEATURES_SEL 0x024
#define QUEUE_SEL 0x030
#define QUEUE_NUM 0x038
#define QUEUE_READY 0x044
#define QUEUE_NOTIFY 0x050
#define ISR 0x060
#define ISR_ACK 0x064
#define STATUS 0x070
#define DESC_LO 0x080
#define DESC_HI 0x084
#define AVAIL_LO 0x090
#define AVAIL_HI 0x094
#define USED_LO 0x0a0
#define USED_HI 0x0a4
#define CONFIG 0x100

#define S_ALL 15
#define S_NEEDS_RESET 64
#define F_NEXT 1
#define F_WRITE 2

#define QNUM 16
#define RX 0
#define TX 1
#define HDR 12
#define RING_BASE 0x200000ull
#define BUF_BASE 0x400000ull

struct vq {
	uint64_t desc, avail, used;
	uint16_t avail_idx;
};

struct drv {
	struct vmm_vm *vm;
	uint64_t base;
	uint32_t irq;
	struct vq q[2];
};

static const uint8_t MAC[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

static uint32_t rd(struct drv *d, uint32_t off)
{
	const struct vmm__bus_range *r = vmm__bus_find(&d->vm->mmio, d->base + off);
	uint32_t v = 0;

	assert_non_null(r);
	r->fn(r->opaque, d->base + off, (uint8_t *)&v, 4, 0);
	return v;
}

static void rd_bytes(struct drv *d, uint32_t off, uint8_t *p, uint32_t n)
{
	const struct vmm__bus_range *r = vmm__bus_find(&d->vm->mmio, d->base + off);

	r->fn(r->opaque, d->base + off, p, n, 0);
}

static void wr(struct drv *d, uint32_t off, uint32_t v)
{
	const struct vmm__bus_range *r = vmm__bus_find(&d->vm->mmio, d->base + off);

	assert_non_null(r);
	r->fn(r->opaque, d->base + off, (uint8_t *)&v, 4, 1);
}

static void mem_put(struct vmm_vm *vm, uint64_t gpa, const void *p, size_t n)
{
	assert_int_equal(vmm_vm_mem_write(vm, gpa, p, n), 0);
}

static void mem_get(struct vmm_vm *vm, uint64_t gpa, void *p, size_t n)
{
	assert_int_equal(vmm_vm_mem_read(vm, gpa, p, n), 0);
}

/* Linux's probe: both queues of QNUM entries, every feature offered taken. */
static uint64_t drv_init(struct drv *d, struct vmm_vm *vm)
{
	uint8_t zero[0x3000] = { 0 };
	uint64_t f;

	memset(d, 0, sizeof(*d));
	d->vm = vm;
	d->base = VMM_VIRTIO_MMIO_BASE;
	d->irq = VMM_VIRTIO_IRQ_BASE;
	assert_int_equal(rd(d, MAGIC), 0x74726976);
	assert_int_equal(rd(d, DEVICE_ID), 1);
	wr(d, STATUS, 0);
	wr(d, STATUS, 1);
	wr(d, STATUS, 3);
	wr(d, DEV_FEATURES_SEL, 1);
	f = (uint64_t)rd(d, DEV_FEATURES) << 32;
	wr(d, DEV_FEATURES_SEL, 0);
	f |= rd(d, DEV_FEATURES);
	wr(d, DRV_FEATURES_SEL, 1);
	wr(d, DRV_FEATURES, (uint32_t)(f >> 32));
	wr(d, DRV_FEATURES_SEL, 0);
	wr(d, DRV_FEATURES, (uint32_t)f);
	wr(d, STATUS, 11);
	assert_int_equal(rd(d, STATUS), 11);
	for (uint32_t i = 0; i < 2; i++) {
		struct vq *q = &d->q[i];

		q->desc = RING_BASE + i * 0x10000;
		q->avail = q->desc + 0x1000;
		q->used = q->desc + 0x2000;
		mem_put(vm, q->desc, zero, sizeof(zero));
		wr(d, QUEUE_SEL, i);
		wr(d, QUEUE_NUM, QNUM);
		wr(d, DESC_LO, (uint32_t)q->desc), wr(d, DESC_HI, 0);
		wr(d, AVAIL_LO, (uint32_t)q->avail), wr(d, AVAIL_HI, 0);
		wr(d, USED_LO, (uint32_t)q->used), wr(d, USED_HI, 0);
		wr(d, QUEUE_READY, 1);
	}
	wr(d, STATUS, S_ALL);
	return f;
}

static void put_desc(struct drv *d, uint32_t qi, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct {
		uint64_t addr;
		uint32_t len;
		uint16_t flags, next;
	} e = { addr, len, flags, next };

	mem_put(d->vm, d->q[qi].desc + 16ull * i, &e, 16);
}

static void submit(struct drv *d, uint32_t qi, uint16_t head)
{
	struct vq *q = &d->q[qi];

	mem_put(d->vm, q->avail + 4 + 2ull * (q->avail_idx % QNUM), &head, 2);
	q->avail_idx++;
	mem_put(d->vm, q->avail + 2, &q->avail_idx, 2);
	wr(d, QUEUE_NOTIFY, qi);
}

static uint16_t used_idx(struct drv *d, uint32_t qi)
{
	uint16_t v;

	mem_get(d->vm, d->q[qi].used + 2, &v, 2);
	return v;
}

static void used_elem(struct drv *d, uint32_t qi, uint16_t n, uint32_t *id, uint32_t *len)
{
	uint32_t e[2];

	mem_get(d->vm, d->q[qi].used + 4 + 8ull * (n % QNUM), e, 8);
	*id = e[0], *len = e[1];
}

/* Waits up to ms until the device has handled `want` frames (given, sent or dropped);
 * its used index for RX then. The counters are read under the transport's lock, which
 * the RX thread holds while it fills the rings: what the test reads of guest RAM after
 * this is what the thread wrote (as the interrupt orders it for a guest). */
static uint16_t wait_used(struct drv *d, uint64_t want, int ms)
{
	struct timespec ts = { 0, 2 * 1000 * 1000 };
	struct vmm_device_info info;

	for (int i = 0; i < ms / 2; i++) {
		vmm_device_info_init(&info);
		assert_int_equal(vmm_vm_device_info(d->vm, 0, &info), 0);
		if (info.requests + info.errors >= want)
			break;
		nanosleep(&ts, NULL);
	}
	return used_idx(d, RX);
}

/* A VM with the net device on one end of a seqpacket pair (*peer: the other), a kernel
 * loaded so that it can start. */
static struct vmm_vm *vm_with_net(int *peer, const uint8_t *mac)
{
	static const uint8_t hlt[] = { 0xf4, 0xeb, 0xfd };
	static uint8_t img[8192];
	struct vmm_vm *vm = fake_vm_new(RAM_MIB, 1, 0, NULL, NULL);
	struct vmm_net_opts o;
	int sv[2];

	assert_non_null(vm);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	vmm_net_opts_init(&o);
	o.fd = sv[0];
	if (mac) {
		o.has_mac = 1;
		memcpy(o.mac, mac, 6);
	}
	assert_int_equal(vmm_vm_add_net(vm, &o), 0);
	close(sv[0]); /* the VM keeps its own copy */
	*peer = sv[1];
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, fake_elf64(img, 0x100000, 0x100000, hlt,
								       sizeof(hlt)), NULL, 0), 0);
	return vm;
}

/* One frame of n bytes numbered k. */
static void frame(uint8_t *f, size_t n, uint8_t k)
{
	for (size_t i = 0; i < n; i++)
		f[i] = (uint8_t)(k * 31 + i);
}

static void info_of(struct vmm_vm *vm, struct vmm_device_info *info)
{
	vmm_device_info_init(info);
	assert_int_equal(vmm_vm_device_info(vm, 0, info), 0);
	assert_string_equal(info->kind, "net");
}

static void config_and_tx(void **state)
{
	int peer;
	struct vmm_vm *vm = vm_with_net(&peer, MAC);
	struct drv d;
	uint8_t cfg[8], hdr[HDR] = { 0 }, f[1514], got[2000];
	struct vmm_device_info info;
	uint32_t id, len;
	uint64_t feat;

	(void)state;
	assert_non_null(strstr(vmm_vm_cmdline(vm), "virtio_mmio.device=4K@0xd0000000:16"));
	feat = drv_init(&d, vm);
	assert_true(feat & (1ull << 5));  /* MAC */
	assert_true(feat & (1ull << 16)); /* STATUS */
	assert_int_equal(feat & ~((1ull << 5) | (1ull << 16) | (1ull << 32)), 0);
	rd_bytes(&d, CONFIG, cfg, 4);
	rd_bytes(&d, CONFIG + 4, cfg + 4, 4);
	assert_memory_equal(cfg, MAC, 6);
	assert_int_equal(cfg[6] | cfg[7] << 8, 1); /* link up */
	/* Header in its own descriptor, frame split over two: the peer gets the frame only. */
	frame(f, sizeof(f), 1);
	mem_put(vm, BUF_BASE, hdr, HDR);
	mem_put(vm, BUF_BASE + 0x1000, f, sizeof(f));
	put_desc(&d, TX, 4, BUF_BASE, HDR, F_NEXT, 9);
	put_desc(&d, TX, 9, BUF_BASE + 0x1000, 1000, F_NEXT, 2);
	put_desc(&d, TX, 2, BUF_BASE + 0x1000 + 1000, sizeof(f) - 1000, 0, 0);
	submit(&d, TX, 4);
	assert_int_equal(used_idx(&d, TX), 1);
	used_elem(&d, TX, 0, &id, &len);
	assert_int_equal(id, 4);
	assert_int_equal(len, 0);
	assert_int_equal(recv(peer, got, sizeof(got), MSG_DONTWAIT), sizeof(f));
	assert_memory_equal(got, f, sizeof(f));
	/* Header and frame in one descriptor (VERSION_1 lets the driver frame it so). */
	frame(f, 60, 2);
	mem_put(vm, BUF_BASE, hdr, HDR);
	mem_put(vm, BUF_BASE + HDR, f, 60);
	put_desc(&d, TX, 0, BUF_BASE, HDR + 60, 0, 0);
	submit(&d, TX, 0);
	assert_int_equal(used_idx(&d, TX), 2);
	assert_int_equal(recv(peer, got, sizeof(got), MSG_DONTWAIT), 60);
	assert_memory_equal(got, f, 60);
	info_of(vm, &info);
	assert_int_equal(info.requests, 2);
	assert_int_equal(info.bytes_written, sizeof(f) + 60);
	assert_int_equal(info.errors, 0);
	assert_memory_equal(info.mac, MAC, 6);
	assert_int_equal(info.status, S_ALL);
	vmm_vm_destroy(vm);
	close(peer);
}

/* Gives the RX queue `count` buffers of `size` bytes from descriptor `first` on. */
static void rx_buffers(struct drv *d, uint16_t first, int count, uint32_t size)
{
	for (int i = 0; i < count; i++) {
		uint16_t di = (uint16_t)(first + i);

		put_desc(d, RX, di, BUF_BASE + 0x10000ull * di, size, F_WRITE, 0);
		submit(d, RX, di);
	}
}

static void rx_check(struct drv *d, uint16_t n, uint16_t desc, const uint8_t *f, size_t len)
{
	uint8_t got[2000], hdr[HDR] = { 0 };
	uint32_t id, ulen;

	hdr[10] = 1; /* num_buffers */
	used_elem(d, RX, n, &id, &ulen);
	assert_int_equal(id, desc);
	assert_int_equal(ulen, HDR + len);
	mem_get(d->vm, BUF_BASE + 0x10000ull * desc, got, HDR + len);
	assert_memory_equal(got, hdr, HDR);
	assert_memory_equal(got + HDR, f, len);
}

/* The RX thread runs with the VM: frames from the peer fill the guest's buffers and raise
 * the interrupt; one that finds no buffer waits for the driver's next; one too big for
 * the buffer is dropped; nothing is received while the VM is paused, and what came
 * meanwhile arrives after the resume. */
static void rx_with_the_vm(void **state)
{
	int peer;
	struct vmm_vm *vm = vm_with_net(&peer, NULL);
	struct drv d;
	uint8_t f[1514];
	struct vmm_device_info info;
	uint32_t raises0, raises1, id, len;
	struct vmm_exit ex;

	(void)state;
	drv_init(&d, vm);
	info_of(vm, &info);
	assert_int_equal(info.mac[0] & 3, 2); /* made up: unicast, locally administered */
	assert_int_equal(vmm_vm_start(vm), 0);
	rx_buffers(&d, 0, 2, 2048);
	fake_kvm_irq_level(d.irq, &raises0);
	frame(f, 1514, 1);
	assert_int_equal(send(peer, f, 1514, 0), 1514);
	assert_int_equal(wait_used(&d, 1, 5000), 1);
	rx_check(&d, 0, 0, f, 1514);
	assert_int_equal(fake_kvm_irq_level(d.irq, &raises1), 1);
	assert_true(raises1 > raises0);
	assert_true(rd(&d, ISR) & 1);
	wr(&d, ISR_ACK, 1);
	frame(f, 64, 2);
	assert_int_equal(send(peer, f, 64, 0), 64);
	assert_int_equal(wait_used(&d, 2, 5000), 2);
	rx_check(&d, 1, 1, f, 64);
	/* No buffer left: the frame waits in the device until the driver adds one. */
	frame(f, 100, 3);
	assert_int_equal(send(peer, f, 100, 0), 100);
	assert_int_equal(wait_used(&d, 3, 100), 2);
	rx_buffers(&d, 2, 1, 2048);
	assert_int_equal(wait_used(&d, 3, 5000), 3);
	rx_check(&d, 2, 2, f, 100);
	/* Too big for the buffer: dropped, the buffer returned empty. */
	rx_buffers(&d, 3, 1, 200);
	frame(f, 500, 4);
	assert_int_equal(send(peer, f, 500, 0), 500);
	assert_int_equal(wait_used(&d, 4, 5000), 4);
	used_elem(&d, RX, 3, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 0);
	/* Paused: nothing moves; resumed: the frame sent meanwhile arrives. */
	assert_int_equal(vmm_vm_pause(vm), 0);
	rx_buffers(&d, 4, 1, 2048);
	frame(f, 80, 5);
	assert_int_equal(send(peer, f, 80, 0), 80);
	assert_int_equal(wait_used(&d, 5, 100), 4);
	assert_int_equal(vmm_vm_resume(vm), 0);
	assert_int_equal(wait_used(&d, 5, 5000), 5);
	rx_check(&d, 4, 4, f, 80);
	info_of(vm, &info);
	assert_int_equal(info.requests, 4);
	assert_int_equal(info.errors, 1);
	assert_int_equal(info.bytes_read, 1514 + 64 + 100 + 80);
	assert_int_equal(vmm_vm_stop(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 5000, &ex), 0);
	vmm_vm_destroy(vm); /* a frame left in the socket is not read by anyone */
	close(peer);
}

/* The guest breaks the rules on either queue: NEEDS_RESET, nothing sent or written outside
 * RAM, no crash; the RX thread drops what it cannot place. */
static void hostile_rings(void **state)
{
	(void)state;
	for (int c = 0; c < 5; c++) {
		int peer;
		struct vmm_vm *vm = vm_with_net(&peer, MAC);
		struct drv d;
		uint8_t buf[64] = { 0 }, f[64];

		print_message("case %d\n", c);
		drv_init(&d, vm);
		mem_put(vm, BUF_BASE, buf, sizeof(buf));
		switch (c) {
		case 0: /* TX shorter than its header */
			put_desc(&d, TX, 0, BUF_BASE, 8, 0, 0);
			submit(&d, TX, 0);
			break;
		case 1: /* TX outside RAM */
			put_desc(&d, TX, 0, 1ull << 40, 100, 0, 0);
			submit(&d, TX, 0);
			break;
		case 2: /* TX chain loops */
			put_desc(&d, TX, 0, BUF_BASE, 20, F_NEXT, 1);
			put_desc(&d, TX, 1, BUF_BASE, 20, F_NEXT, 0);
			submit(&d, TX, 0);
			break;
		case 3: /* TX frame straddles the end of RAM */
			put_desc(&d, TX, 0, BUF_BASE, HDR, F_NEXT, 1);
			put_desc(&d, TX, 1, RAM_MIB * MIB - 10, 100, 0, 0);
			submit(&d, TX, 0);
			break;
		case 4: /* RX buffer outside RAM, met by the RX thread */
			assert_int_equal(vmm_vm_start(d.vm), 0);
			put_desc(&d, RX, 0, (1ull << 40) - 4096, 2048, F_WRITE, 0);
			submit(&d, RX, 0);
			frame(f, 64, 9);
			assert_int_equal(send(peer, f, 64, 0), 64);
			for (int i = 0; i < 2500 && !(rd(&d, STATUS) & S_NEEDS_RESET); i++)
				usleep(2000);
			break;
		}
		assert_true(rd(&d, STATUS) & S_NEEDS_RESET);
		assert_int_equal(used_idx(&d, TX), 0);
		assert_int_equal(used_idx(&d, RX), 0);
		assert_int_equal(recv(peer, f, sizeof(f), MSG_DONTWAIT), -1);
		vmm_vm_destroy(vm);
		close(peer);
	}
}

static void bad_options(void **state)
{
	struct vmm_vm *vm = fake_vm_new(RAM_MIB, 1, 0, NULL, NULL);
	struct vmm_net_opts o;
	int sv[2];

	(void)state;
	assert_int_equal(vmm_vm_add_net(vm, NULL), VMM_EINVAL);
	vmm_net_opts_init(&o);
	assert_int_equal(o.fd, -1);
	assert_int_equal(vmm_vm_add_net(vm, &o), VMM_EINVAL); /* no fd */
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	close(sv[1]);
	o.fd = sv[1]; /* closed */
	assert_int_equal(vmm_vm_add_net(vm, &o), VMM_EINVAL);
	o.fd = sv[0];
	o.has_mac = 1;
	o.mac[0] = 0x01; /* multicast */
	assert_int_equal(vmm_vm_add_net(vm, &o), VMM_EINVAL);
	o.size = 8;
	assert_int_equal(vmm_vm_add_net(vm, &o), VMM_EINVAL);
	/* Refusals took no slot. */
	assert_int_equal(vmm_vm_device_count(vm), 0);
	vmm_vm_destroy(vm);
	close(sv[0]);
}

static int load_net(struct vmm_vm *vm, const uint8_t *buf, size_t len)
{
	for (uint32_t i = 0; i < vm->devices.n; i++)
		if (!strcmp(vm->devices.items[i].ops->name, "virtio0-net"))
			return vm->devices.items[i].ops->load(vm->devices.items[i].dev, buf, len);
	return -1;
}

static int save_net(struct vmm_vm *vm, uint8_t **buf, size_t *len)
{
	for (uint32_t i = 0; i < vm->devices.n; i++)
		if (!strcmp(vm->devices.items[i].ops->name, "virtio0-net"))
			return vm->devices.items[i].ops->save(vm->devices.items[i].dev, buf, len);
	return -1;
}

/* The state carries the rings and the MAC: a device given another MAC refuses it, one
 * left to make its own takes the guest's; the restored device goes on where it was. */
static void state_round_trip(void **state)
{
	int peer, peer2, peer3;
	struct vmm_vm *vm = vm_with_net(&peer, MAC), *vm2, *vm3;
	static const uint8_t other[6] = { 0x52, 0x54, 0, 0, 0, 1 };
	struct drv d, d3;
	struct vmm_device_info info;
	uint8_t *buf, hdr[HDR] = { 0 }, f[64], got[64], rarp[100];
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	size_t len;

	(void)state;
	drv_init(&d, vm);
	put_desc(&d, TX, 0, BUF_BASE, HDR + 64, 0, 0);
	frame(f, 64, 7);
	mem_put(vm, BUF_BASE, hdr, HDR);
	mem_put(vm, BUF_BASE + HDR, f, 64);
	submit(&d, TX, 0);
	assert_int_equal(save_net(vm, &buf, &len), 0);
	vm2 = vm_with_net(&peer2, other);
	assert_int_equal(load_net(vm2, buf, len), VMM_ESTATEDATA);
	vm3 = vm_with_net(&peer3, NULL);
	assert_int_equal(load_net(vm3, buf, len), 0);
	info_of(vm3, &info);
	assert_memory_equal(info.mac, MAC, 6);
	/* The restored device sends the next frame from where the first left off. */
	d3 = d;
	d3.vm = vm3;
	{
		uint8_t ring[0x3000];

		mem_get(vm, d.q[TX].desc, ring, sizeof(ring));
		mem_put(vm3, d.q[TX].desc, ring, sizeof(ring));
	}
	mem_put(vm3, BUF_BASE, hdr, HDR);
	frame(f, 64, 8);
	mem_put(vm3, BUF_BASE + HDR, f, 64);
	submit(&d3, TX, 0);
	assert_int_equal(used_idx(&d3, TX), 2);
	assert_int_equal(recv(peer3, got, sizeof(got), MSG_DONTWAIT), 64);
	assert_memory_equal(got, f, 64);
	/* Started, the restored device announces the guest: a RARP broadcast from its MAC.
	 * The device that was never restored says nothing. */
	assert_int_equal(recv(peer3, got, sizeof(got), MSG_DONTWAIT), -1);
	assert_int_equal(vmm_vm_start(vm3), 0);
	assert_int_equal(recv(peer3, rarp, sizeof(rarp), MSG_DONTWAIT), 60);
	assert_memory_equal(rarp, bcast, 6);
	assert_memory_equal(rarp + 6, MAC, 6);
	assert_int_equal(rarp[12] << 8 | rarp[13], 0x8035);
	assert_int_equal(rarp[20] << 8 | rarp[21], 3); /* reverse request */
	assert_memory_equal(rarp + 22, MAC, 6);
	assert_memory_equal(rarp + 32, MAC, 6);
	assert_int_equal(vmm_vm_pause(vm3), 0);
	assert_int_equal(vmm_vm_resume(vm3), 0); /* once, not at every resume */
	assert_int_equal(recv(peer, rarp, sizeof(rarp), MSG_DONTWAIT), 64); /* its frame */
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(recv(peer3, rarp, sizeof(rarp), MSG_DONTWAIT), -1);
	assert_int_equal(recv(peer, rarp, sizeof(rarp), MSG_DONTWAIT), -1);
	free(buf);
	vmm_vm_destroy(vm);
	vmm_vm_destroy(vm2);
	vmm_vm_destroy(vm3);
	close(peer);
	close(peer2);
	close(peer3);
}

/* A tap in its own network namespace (root only: skipped elsewhere). */
static int tap_open(const char *name, short flags)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = flags;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The real backend: frames the guest sends appear on the tap interface (seen by a
 * packet socket bound to it), frames sent out of the interface reach the guest; a tap
 * with IFF_VNET_HDR is refused. */
static void real_tap(void **state)
{
	static const uint8_t hlt[] = { 0xf4, 0xeb, 0xfd };
	static uint8_t img[8192];
	struct vmm_vm *vm;
	struct vmm_net_opts o;
	struct drv d;
	struct ifreq ifr;
	struct sockaddr_ll ll = { 0 };
	uint8_t hdr[HDR] = { 0 }, f[100], got[2048];
	int tap, vh, ps, sk;
	ssize_t n = -1;

	(void)state;
	if (unshare(CLONE_NEWNET)) {
		print_message("no network namespace here (%s): skipped\n", strerror(errno));
		skip();
	}
	tap = tap_open("vmmt0", IFF_TAP | IFF_NO_PI);
	vh = tap_open("vmmt1", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
	if (tap < 0 || vh < 0) {
		print_message("no tap here: skipped\n");
		skip();
	}
	/* Fewer frames of the interface's own (IPv6 neighbour discovery), if it lets us. */
	n = open("/proc/sys/net/ipv6/conf/vmmt0/disable_ipv6", O_WRONLY | O_CLOEXEC);
	if (n >= 0) {
		if (write((int)n, "1", 1) < 0)
			print_message("IPv6 stays on vmmt0\n");
		close((int)n);
	}
	n = -1;
	sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "vmmt0");
	assert_int_equal(ioctl(sk, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	assert_int_equal(ioctl(sk, SIOCSIFFLAGS, &ifr), 0);
	assert_int_equal(ioctl(sk, SIOCGIFINDEX, &ifr), 0);
	ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	assert_true(ps >= 0);
	ll.sll_family = AF_PACKET;
	ll.sll_protocol = htons(ETH_P_ALL);
	ll.sll_ifindex = ifr.ifr_ifindex;
	assert_int_equal(bind(ps, (struct sockaddr *)&ll, sizeof(ll)), 0);

	vm = fake_vm_new(RAM_MIB, 1, 0, NULL, NULL);
	vmm_net_opts_init(&o);
	o.fd = vh;
	assert_int_equal(vmm_vm_add_net(vm, &o), VMM_EINVAL);
	o.fd = tap;
	assert_int_equal(vmm_vm_add_net(vm, &o), 0);
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, fake_elf64(img, 0x100000, 0x100000, hlt,
								       sizeof(hlt)), NULL, 0), 0);
	drv_init(&d, vm);
	assert_int_equal(vmm_vm_start(vm), 0);
	/* TX: a broadcast frame of an unused EtherType (the host stack ignores it). */
	memset(f, 0xff, 6);
	memcpy(f + 6, MAC, 6);
	f[12] = 0x88, f[13] = 0xb5; /* local experimental */
	for (size_t i = 14; i < sizeof(f); i++)
		f[i] = (uint8_t)i;
	mem_put(vm, BUF_BASE, hdr, HDR);
	mem_put(vm, BUF_BASE + HDR, f, sizeof(f));
	put_desc(&d, TX, 0, BUF_BASE, HDR + sizeof(f), 0, 0);
	submit(&d, TX, 0);
	for (int i = 0; i < 50; i++) {
		struct pollfd p = { ps, POLLIN, 0 };

		if (poll(&p, 1, 100) == 1 && (n = recv(ps, got, sizeof(got), 0)) == sizeof(f) &&
		    !memcmp(got, f, sizeof(f)))
			break;
		n = -1; /* something else on the interface (IPv6 chatter) */
	}
	assert_int_equal(n, sizeof(f));
	/* RX: the same frame, sent out of the interface, reaches the guest. */
	rx_buffers(&d, 0, 12, 2048); /* room for the interface's own chatter too */
	f[20] = 0x5a;
	assert_int_equal(send(ps, f, sizeof(f), 0), sizeof(f));
	/* The interface may send its own frames too: the test looks at what arrived with the
	 * VM paused (the RX thread joined: nothing writes RAM while it reads), resuming it
	 * until the frame is there. */
	for (int i = 0;; i++) {
		uint16_t u, k;
		uint32_t id, len;

		assert_true(i < 100);
		wait_used(&d, 2, 50);
		assert_int_equal(vmm_vm_pause(vm), 0);
		u = used_idx(&d, RX);
		for (k = 0; k < u; k++) {
			used_elem(&d, RX, k, &id, &len);
			mem_get(vm, BUF_BASE + 0x10000ull * id, got, HDR + sizeof(f));
			if (len == HDR + sizeof(f) && !memcmp(got + HDR, f, sizeof(f)))
				break;
		}
		if (k < u)
			break;
		assert_int_equal(vmm_vm_resume(vm), 0);
	}
	vmm_vm_destroy(vm);
	close(tap);
	close(vh);
	close(ps);
	close(sk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(config_and_tx, fake_vm_setup),
		cmocka_unit_test_setup(rx_with_the_vm, fake_vm_setup),
		cmocka_unit_test_setup(hostile_rings, fake_vm_setup),
		cmocka_unit_test_setup(bad_options, fake_vm_setup),
		cmocka_unit_test_setup(state_round_trip, fake_vm_setup),
		cmocka_unit_test_setup(real_tap, fake_vm_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
