/* The virtio devices on the fake kernel, driven as a guest driver would: the test sets up
 * a split virtqueue in guest RAM, writes the transport's registers through the VM's MMIO
 * bus (what a vCPU's MMIO exit does), notifies, and checks the used ring, the image
 * file's bytes and the interrupt line. Hostile rings must put the device in NEEDS_RESET
 * and touch nothing outside RAM; a snapshot taken with a request still available must
 * serve it after the restore, exactly once. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "libvmm/devices/virtio_mmio.h"
#include "libvmm/vm_internal.h"
#include "devices.pb-c.h"

#define MIB (1ull << 20)
#define RAM_MIB 16

/* Register offsets (VIRTIO 1.2, 4.2.2). */
#define MAGIC 0x000
#define VERSION 0x004
#define DEVICE_ID 0x008
#define DEV_FEATURES 0x010
#define DEV_FEATURES_SEL 0x014
#define DRV_FEATURES 0x020
#define DRV_FEATURES_SEL 0x024
#define QUEUE_SEL 0x030
#define QUEUE_NUM_MAX 0x034
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

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 64

#define F_NEXT 1
#define F_WRITE 2
#define F_INDIRECT 4

#define QNUM 16
/* The driver's memory: rings of slot n at RING_BASE + n * 64 KiB, buffers above. */
#define RING_BASE 0x200000ull
#define BUF_BASE 0x400000ull

struct drv {
	struct vmm_vm *vm;
	uint64_t base; /* MMIO window */
	uint32_t irq;
	uint64_t desc, avail, used;
	uint16_t avail_idx;
};

static uint32_t rd(struct drv *d, uint32_t off)
{
	const struct vmm__bus_range *r = vmm__bus_find(&d->vm->mmio, d->base + off);
	uint32_t v = 0;

	assert_non_null(r);
	r->fn(r->opaque, d->base + off, (uint8_t *)&v, 4, 0);
	return v;
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

static void drv_attach(struct drv *d, struct vmm_vm *vm, uint32_t slot)
{
	memset(d, 0, sizeof(*d));
	d->vm = vm;
	d->base = VMM_VIRTIO_MMIO_BASE + slot * VMM_VIRTIO_MMIO_SIZE;
	d->irq = VMM_VIRTIO_IRQ_BASE + slot;
	d->desc = RING_BASE + slot * 0x10000;
	d->avail = d->desc + 0x1000;
	d->used = d->desc + 0x2000;
}

/* Linux's virtio_mmio probe and virtio_dev_probe, in order (VIRTIO 1.2, 3.1.1). Returns
 * the device features. */
static uint64_t drv_init(struct drv *d, struct vmm_vm *vm, uint32_t slot, uint32_t id)
{
	uint64_t features;
	uint8_t zero[0x3000] = { 0 };

	drv_attach(d, vm, slot);
	assert_int_equal(rd(d, MAGIC), 0x74726976);
	assert_int_equal(rd(d, VERSION), 2);
	assert_int_equal(rd(d, DEVICE_ID), id);
	wr(d, STATUS, 0);
	wr(d, STATUS, S_ACK);
	wr(d, STATUS, S_ACK | S_DRIVER);
	wr(d, DEV_FEATURES_SEL, 1);
	features = (uint64_t)rd(d, DEV_FEATURES) << 32;
	wr(d, DEV_FEATURES_SEL, 0);
	features |= rd(d, DEV_FEATURES);
	assert_true(features & (1ull << 32)); /* VIRTIO_F_VERSION_1 */
	wr(d, DRV_FEATURES_SEL, 1);
	wr(d, DRV_FEATURES, (uint32_t)(features >> 32));
	wr(d, DRV_FEATURES_SEL, 0);
	wr(d, DRV_FEATURES, (uint32_t)features);
	wr(d, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	assert_int_equal(rd(d, STATUS), S_ACK | S_DRIVER | S_FEATURES_OK);
	mem_put(vm, d->desc, zero, sizeof(zero));
	wr(d, QUEUE_SEL, 0);
	assert_int_equal(rd(d, QUEUE_READY), 0);
	assert_int_equal(rd(d, QUEUE_NUM_MAX), VMM_VIRTIO_QUEUE_MAX);
	wr(d, QUEUE_NUM, QNUM);
	wr(d, DESC_LO, (uint32_t)d->desc), wr(d, DESC_HI, 0);
	wr(d, AVAIL_LO, (uint32_t)d->avail), wr(d, AVAIL_HI, 0);
	wr(d, USED_LO, (uint32_t)d->used), wr(d, USED_HI, 0);
	wr(d, QUEUE_READY, 1);
	assert_int_equal(rd(d, QUEUE_READY), 1);
	wr(d, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	return features;
}

static void put_desc(struct drv *d, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	struct {
		uint64_t addr;
		uint32_t len;
		uint16_t flags, next;
	} e = { addr, len, flags, next };

	mem_put(d->vm, d->desc + 16ull * i, &e, 16);
}

/* Makes head available; notifies unless told not to. */
static void submit(struct drv *d, uint16_t head, int notify)
{
	mem_put(d->vm, d->avail + 4 + 2ull * (d->avail_idx % QNUM), &head, 2);
	d->avail_idx++;
	mem_put(d->vm, d->avail + 2, &d->avail_idx, 2);
	if (notify)
		wr(d, QUEUE_NOTIFY, 0);
}

static uint16_t used_idx(struct drv *d)
{
	uint16_t v;

	mem_get(d->vm, d->used + 2, &v, 2);
	return v;
}

static void used_elem(struct drv *d, uint16_t n, uint32_t *id, uint32_t *len)
{
	uint32_t e[2];

	mem_get(d->vm, d->used + 4 + 8ull * (n % QNUM), e, 8);
	*id = e[0], *len = e[1];
}

static int irq_level(struct drv *d)
{
	return fake_kvm_irq_level(d->irq, NULL);
}

/* A 1 MiB image whose sector s holds bytes (s * 7 + i) & 0xff. */
static void make_image(char *path, size_t sectors)
{
	int fd = mkstemp(path);
	uint8_t sec[512];

	assert_true(fd >= 0);
	for (size_t s = 0; s < sectors; s++) {
		for (int i = 0; i < 512; i++)
			sec[i] = (uint8_t)(s * 7 + i);
		assert_int_equal(write(fd, sec, 512), 512);
	}
	close(fd);
}

static void file_read(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static struct vmm_vm *vm_with(const char *disk, int ro, int rng_first)
{
	struct vmm_vm *vm = fake_vm_new(RAM_MIB, 1, 0, NULL, NULL);
	struct vmm_disk_opts o;

	assert_non_null(vm);
	if (rng_first)
		assert_int_equal(vmm_vm_add_rng(vm, NULL), 0);
	if (disk) {
		vmm_disk_opts_init(&o);
		o.path = disk;
		o.read_only = (uint32_t)ro;
		o.serial = "disk-serial-0123456789"; /* longer than 20: cut */
		assert_int_equal(vmm_vm_add_disk(vm, &o), 0);
	}
	return vm;
}

/* vmm_vm_device_info() of a slot, which must succeed. */
static void info_of(struct vmm_vm *vm, uint32_t slot, struct vmm_device_info *info)
{
	vmm_device_info_init(info);
	assert_int_equal(vmm_vm_device_info(vm, slot, info), 0);
	assert_int_equal(info->slot, slot);
}

static void rng_fills_buffers(void **state)
{
	struct vmm_vm *vm = vm_with(NULL, 0, 1);
	struct drv d;
	uint8_t buf[4096] = { 0 }, zero[4096] = { 0 };
	uint32_t id, len, raises0, raises1;
	struct vmm_device_info info;

	(void)state;
	assert_int_equal(drv_init(&d, vm, 0, 4) >> 32, 1); /* VERSION_1, no device features */
	mem_put(vm, BUF_BASE, buf, sizeof(buf));
	put_desc(&d, 3, BUF_BASE, 4096, F_WRITE, 0);
	fake_kvm_irq_level(d.irq, &raises0);
	assert_int_equal(irq_level(&d), 0);
	submit(&d, 3, 1);
	assert_int_equal(used_idx(&d), 1);
	used_elem(&d, 0, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 4096);
	mem_get(vm, BUF_BASE, buf, sizeof(buf));
	assert_memory_not_equal(buf, zero, sizeof(buf));
	info_of(vm, 0, &info);
	assert_string_equal(info.kind, "rng");
	assert_null(info.path);
	assert_int_equal(info.status, 15); /* ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK */
	assert_int_equal(info.requests, 1);
	assert_int_equal(info.bytes_read, 4096);
	assert_int_equal(info.errors, 0);
	/* The line is held until the driver acknowledges. */
	assert_int_equal(fake_kvm_irq_level(d.irq, &raises1), 1);
	assert_int_equal(raises1, raises0 + 1);
	assert_int_equal(rd(&d, ISR), 1);
	wr(&d, ISR_ACK, 1);
	assert_int_equal(rd(&d, ISR), 0);
	assert_int_equal(irq_level(&d), 0);
	vmm_vm_destroy(vm);
}

struct blk_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

/* One blk request: header, data split in two descriptors (len1 + len2 bytes, len2 may be
 * 0), status. Returns the status byte; *written the used length. */
static uint8_t blk_req(struct drv *d, uint32_t type, uint64_t sector, uint64_t data,
		       uint32_t len1, uint32_t len2, uint32_t *written)
{
	struct blk_hdr h = { type, 0, sector };
	uint16_t dflags = type == 1 ? 0 : F_WRITE, n = 0, before = used_idx(d);
	uint8_t status = 0xee;
	uint32_t id;
	const uint64_t hdr_at = BUF_BASE - 0x1000, st_at = BUF_BASE - 0x100;

	mem_put(d->vm, hdr_at, &h, sizeof(h));
	mem_put(d->vm, st_at, &status, 1);
	/* Descriptors 5.. in a non-sequential order: chains follow `next`, not the table. */
	put_desc(d, 5, hdr_at, sizeof(h), F_NEXT, 9);
	if (len1) {
		put_desc(d, 9, data, len1, dflags | F_NEXT, len2 ? 2 : 7);
		if (len2)
			put_desc(d, 2, data + len1, len2, dflags | F_NEXT, 7);
	} else {
		put_desc(d, 5, hdr_at, sizeof(h), F_NEXT, 7);
	}
	put_desc(d, 7, st_at, 1, F_WRITE, 0);
	submit(d, 5, 1);
	assert_int_equal(used_idx(d), (uint16_t)(before + 1));
	used_elem(d, before, &id, written);
	assert_int_equal(id, 5);
	mem_get(d->vm, st_at, &status, 1);
	(void)n;
	return status;
}

static void blk_reads_and_writes(void **state)
{
	char img[] = "/tmp/vmm-virtio-blk-XXXXXX";
	struct vmm_vm *vm;
	struct drv d;
	uint8_t out[1536], in[1536], file[1536], ser[20];
	struct vmm_device_info info;
	uint64_t features;
	uint32_t w;

	(void)state;
	make_image(img, 2048);
	vm = vm_with(img, 0, 0);
	features = drv_init(&d, vm, 0, 2);
	assert_true(features & (1u << 9)); /* FLUSH */
	assert_true(features & (1u << 2)); /* SEG_MAX */
	assert_false(features & (1u << 5)); /* not RO */
	assert_int_equal(rd(&d, CONFIG), 2048); /* capacity, low half */
	assert_int_equal(rd(&d, CONFIG + 4), 0);
	assert_int_equal(rd(&d, CONFIG + 12), VMM_VIRTIO_QUEUE_MAX - 2); /* seg_max */

	/* OUT: 3 sectors at sector 5, data in 1000 + 536 bytes. */
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 13 + 1);
	mem_put(vm, BUF_BASE, out, sizeof(out));
	assert_int_equal(blk_req(&d, 1, 5, BUF_BASE, 1000, 536, &w), 0);
	assert_int_equal(w, 1); /* the status byte only */
	file_read(img, 5 * 512, file, sizeof(file));
	assert_memory_equal(file, out, sizeof(out));
	/* IN: read them back elsewhere, data in 512 + 1024. */
	memset(in, 0, sizeof(in));
	mem_put(vm, BUF_BASE + 0x10000, in, sizeof(in));
	assert_int_equal(blk_req(&d, 0, 5, BUF_BASE + 0x10000, 512, 1024, &w), 0);
	assert_int_equal(w, 1537);
	mem_get(vm, BUF_BASE + 0x10000, in, sizeof(in));
	assert_memory_equal(in, out, sizeof(in));
	/* Sector 4 untouched. */
	file_read(img, 4 * 512, file, 512);
	for (int i = 0; i < 512; i++)
		assert_int_equal(file[i], (uint8_t)(4 * 7 + i));

	/* Past the end (2047 + 2 sectors), and not whole sectors: IOERR, file unchanged. */
	assert_int_equal(blk_req(&d, 1, 2047, BUF_BASE, 1024, 0, &w), 1);
	assert_int_equal(blk_req(&d, 0, 2048, BUF_BASE, 512, 0, &w), 1);
	assert_int_equal(blk_req(&d, 1, 0, BUF_BASE, 100, 0, &w), 1);
	assert_int_equal(blk_req(&d, 1, UINT64_MAX, BUF_BASE, 512, 0, &w), 1);
	file_read(img, 2047 * 512, file, 512);
	for (int i = 0; i < 512; i++)
		assert_int_equal(file[i], (uint8_t)(2047 * 7 + i));
	file_read(img, 0, file, 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(file[i], (uint8_t)i);

	/* FLUSH, GET_ID (20 bytes, not terminated), an unknown type: UNSUPP. */
	assert_int_equal(blk_req(&d, 4, 0, 0, 0, 0, &w), 0);
	assert_int_equal(blk_req(&d, 8, 0, BUF_BASE, 20, 0, &w), 0);
	assert_int_equal(w, 21);
	mem_get(vm, BUF_BASE, ser, sizeof(ser));
	assert_memory_equal(ser, "disk-serial-01234567", 20);
	assert_int_equal(blk_req(&d, 77, 0, BUF_BASE, 512, 0, &w), 2);
	assert_int_equal(rd(&d, STATUS) & S_NEEDS_RESET, 0);

	/* What the embedder sees: 9 requests, 5 of them refused; 1536 bytes each way. */
	info_of(vm, 0, &info);
	assert_string_equal(info.kind, "blk");
	assert_string_equal(info.path, img);
	assert_int_equal(info.read_only, 0);
	assert_int_equal(info.capacity, 2048 * 512);
	assert_string_equal(info.serial, "disk-serial-01234567");
	assert_int_equal(info.status, 15);
	assert_int_equal(info.requests, 9);
	assert_int_equal(info.errors, 5);
	assert_int_equal(info.bytes_written, 1536);
	assert_int_equal(info.bytes_read, 1536);
	assert_int_equal(vmm_vm_device_count(vm), 1);
	assert_int_equal(vmm_vm_device_info(vm, 1, &info), VMM_ENOENT);
	info.size = 8;
	assert_int_equal(vmm_vm_device_info(vm, 0, &info), VMM_EINVAL);
	assert_int_equal(vmm_vm_device_info(vm, 0, NULL), VMM_EINVAL);
	assert_int_equal(vmm_vm_device_count(NULL), 0);
	vmm_vm_destroy(vm);
	unlink(img);
}

static void blk_read_only(void **state)
{
	char img[] = "/tmp/vmm-virtio-ro-XXXXXX";
	struct vmm_vm *vm;
	struct drv d;
	uint8_t buf[512], file[512];
	uint32_t w;

	(void)state;
	make_image(img, 16);
	vm = vm_with(img, 1, 1); /* rng in slot 0, the disk in slot 1 */
	assert_true(drv_init(&d, vm, 1, 2) & (1u << 5)); /* RO offered */
	memset(buf, 0x5a, sizeof(buf));
	mem_put(vm, BUF_BASE, buf, sizeof(buf));
	assert_int_equal(blk_req(&d, 1, 3, BUF_BASE, 512, 0, &w), 1);
	file_read(img, 3 * 512, file, 512);
	assert_int_equal(file[0], (uint8_t)(3 * 7));
	assert_int_equal(blk_req(&d, 0, 3, BUF_BASE, 512, 0, &w), 0);
	mem_get(vm, BUF_BASE, buf, sizeof(buf));
	assert_memory_equal(buf, file, 512);
	/* A reader may share the image with another reader, never with a writer. */
	{
		struct vmm_vm *vm2 = fake_vm_new(RAM_MIB, 1, 0, NULL, NULL);
		struct vmm_disk_opts o;

		vmm_disk_opts_init(&o);
		o.path = img;
		o.read_only = 1;
		assert_int_equal(vmm_vm_add_disk(vm2, &o), 0);
		vmm_vm_destroy(vm2);
		vm2 = fake_vm_new(RAM_MIB, 1, 0, NULL, NULL);
		o.read_only = 0;
		assert_int_equal(vmm_vm_add_disk(vm2, &o), VMM_ELOCKED);
		vmm_vm_destroy(vm2);
	}
	vmm_vm_destroy(vm);
	unlink(img);
}

static void blk_image_locked(void **state)
{
	char img[] = "/tmp/vmm-virtio-lock-XXXXXX";
	struct vmm_vm *vm, *vm2;
	struct vmm_disk_opts o;

	(void)state;
	make_image(img, 8);
	vm = vm_with(img, 0, 0);
	vm2 = fake_vm_new(RAM_MIB, 1, 0, NULL, NULL);
	vmm_disk_opts_init(&o);
	o.path = img;
	assert_int_equal(vmm_vm_add_disk(vm2, &o), VMM_ELOCKED);
	assert_non_null(strstr(vmm_last_error(), img));
	o.read_only = 1;
	assert_int_equal(vmm_vm_add_disk(vm2, &o), VMM_ELOCKED);
	/* Refused devices take no slot and announce nothing. */
	assert_null(strstr(vmm_vm_cmdline(vm2), "virtio_mmio"));
	vmm_vm_destroy(vm); /* its lock goes with it */
	o.read_only = 0;
	assert_int_equal(vmm_vm_add_disk(vm2, &o), 0);
	assert_non_null(strstr(vmm_vm_cmdline(vm2), "virtio_mmio.device=4K@0xd0000000:16"));
	o.path = "/nonexistent/disk.img";
	assert_int_equal(vmm_vm_add_disk(vm2, &o), VMM_ENOENT);
	vmm_vm_destroy(vm2);
	unlink(img);
}

static void cmdline_and_order(void **state)
{
	static const uint8_t hlt[] = { 0xf4, 0xeb, 0xfd };
	static uint8_t img[8192];
	struct vmm_vm_config cfg;
	struct vmm_vm *vm;
	struct vmm_rng_opts ro;

	(void)state;
	vmm_vm_config_init(&cfg);
	cfg.mem_size = RAM_MIB * MIB;
	cfg.cmdline = "console=ttyS0";
	assert_int_equal(vmm_vm_create(&cfg, &vm), 0);
	vmm_rng_opts_init(&ro);
	assert_int_equal(vmm_vm_add_rng(vm, &ro), 0);
	assert_int_equal(vmm_vm_add_rng(vm, NULL), 0);
	assert_string_equal(vmm_vm_cmdline(vm),
			    "console=ttyS0 virtio_mmio.device=4K@0xd0000000:16 "
			    "virtio_mmio.device=4K@0xd0001000:17");
	ro.size = 4; /* not initialised */
	assert_int_equal(vmm_vm_add_rng(vm, &ro), VMM_EINVAL);
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, fake_elf64(img, 0x100000, 0x100000, hlt,
								       sizeof(hlt)), NULL, 0), 0);
	/* Too late once the kernel is in: it would never hear of the device. */
	assert_int_equal(vmm_vm_add_rng(vm, NULL), VMM_ESTATE);
	vmm_vm_destroy(vm);
	/* Eight at most. */
	vm = fake_vm_new(RAM_MIB, 1, 0, NULL, NULL);
	for (int i = 0; i < 8; i++)
		assert_int_equal(vmm_vm_add_rng(vm, NULL), 0);
	assert_int_equal(vmm_vm_add_rng(vm, NULL), VMM_EINVAL);
	vmm_vm_destroy(vm);
}

/* A broken ring: the device says NEEDS_RESET, raises a configuration interrupt, serves
 * nothing more and wrote nothing; a reset brings it back. */
static void expect_broken(struct drv *d, uint16_t used_before)
{
	assert_true(rd(d, STATUS) & S_NEEDS_RESET);
	assert_true(rd(d, ISR) & 2);
	assert_int_equal(irq_level(d), 1);
	assert_int_equal(used_idx(d), used_before);
}

static void hostile_rings(void **state)
{
	static const struct {
		const char *what;
		int kind;
	} cases[] = {
		{ "buffer outside RAM", 0 }, { "buffer straddles the end of RAM", 1 },
		{ "chain loops", 2 },	      { "chain longer than the queue", 3 },
		{ "head beyond the queue", 4 }, { "available index jumps", 5 },
		{ "indirect descriptor", 6 },   { "next beyond the queue", 7 },
		{ "readable after writable", 8 },
	};
	char img[] = "/tmp/vmm-virtio-hostile-XXXXXX";

	(void)state;
	make_image(img, 64);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct vmm_vm *vm = vm_with(img, 0, 1);
		struct drv d, blk;
		uint8_t zero[64] = { 0 }, after[64];
		uint16_t jump = 100;
		uint32_t w;

		print_message("case: %s\n", cases[c].what);
		drv_init(&d, vm, 0, 4);
		drv_init(&blk, vm, 1, 2);
		mem_put(vm, BUF_BASE, zero, sizeof(zero));
		switch (cases[c].kind) {
		case 0:
			put_desc(&d, 0, 1ull << 40, 4096, F_WRITE, 0);
			submit(&d, 0, 1);
			break;
		case 1:
			put_desc(&d, 0, RAM_MIB * MIB - 100, 200, F_WRITE, 0);
			submit(&d, 0, 1);
			break;
		case 2:
			put_desc(&d, 0, BUF_BASE, 8, F_WRITE | F_NEXT, 1);
			put_desc(&d, 1, BUF_BASE + 8, 8, F_WRITE | F_NEXT, 0);
			submit(&d, 0, 1);
			break;
		case 3:
			for (uint16_t i = 0; i < QNUM; i++)
				put_desc(&d, i, BUF_BASE + i, 1, F_WRITE | F_NEXT, (uint16_t)(i + 1) % QNUM);
			submit(&d, 0, 1);
			break;
		case 4:
			submit(&d, QNUM, 1);
			break;
		case 5:
			put_desc(&d, 0, BUF_BASE, 8, F_WRITE, 0);
			mem_put(vm, d.avail + 2, &jump, 2);
			wr(&d, QUEUE_NOTIFY, 0);
			break;
		case 6:
			put_desc(&d, 0, BUF_BASE, 16, F_INDIRECT, 0);
			submit(&d, 0, 1);
			break;
		case 7:
			put_desc(&d, 0, BUF_BASE, 8, F_WRITE | F_NEXT, 999);
			submit(&d, 0, 1);
			break;
		case 8:
			put_desc(&d, 0, BUF_BASE, 8, F_WRITE | F_NEXT, 1);
			put_desc(&d, 1, BUF_BASE + 8, 8, F_NEXT, 2);
			put_desc(&d, 2, BUF_BASE + 16, 8, F_WRITE, 0);
			submit(&d, 0, 1);
			break;
		}
		expect_broken(&d, 0);
		mem_get(vm, BUF_BASE, after, sizeof(after));
		assert_memory_equal(after, zero, sizeof(after));
		/* Further notifies are ignored until the driver resets the device. */
		put_desc(&d, 0, BUF_BASE, 8, F_WRITE, 0);
		submit(&d, 0, 1);
		assert_int_equal(used_idx(&d), 0);
		/* The other device never noticed. */
		assert_int_equal(rd(&blk, STATUS) & S_NEEDS_RESET, 0);
		assert_int_equal(blk_req(&blk, 0, 1, BUF_BASE + 0x1000, 512, 0, &w), 0);
		/* A reset (status 0) and a fresh setup: it serves again. */
		wr(&d, STATUS, 0);
		assert_int_equal(rd(&d, STATUS), 0);
		assert_int_equal(irq_level(&d), 0);
		drv_init(&d, vm, 0, 4);
		put_desc(&d, 0, BUF_BASE, 8, F_WRITE, 0);
		submit(&d, 0, 1);
		assert_int_equal(used_idx(&d), 1);
		vmm_vm_destroy(vm);
	}
	unlink(img);
}

static void bad_setup_refused(void **state)
{
	struct vmm_vm *vm = vm_with(NULL, 0, 1);
	struct drv d;

	(void)state;
	drv_attach(&d, vm, 0);
	/* A driver without VERSION_1 (legacy) does not get FEATURES_OK. */
	wr(&d, STATUS, S_ACK | S_DRIVER);
	wr(&d, DRV_FEATURES_SEL, 1);
	wr(&d, DRV_FEATURES, 0);
	wr(&d, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	assert_int_equal(rd(&d, STATUS) & S_FEATURES_OK, 0);
	/* Nor one that accepts what was not offered. */
	wr(&d, STATUS, 0);
	wr(&d, STATUS, S_ACK | S_DRIVER);
	wr(&d, DRV_FEATURES_SEL, 1);
	wr(&d, DRV_FEATURES, 1);
	wr(&d, DRV_FEATURES_SEL, 0);
	wr(&d, DRV_FEATURES, 1u << 28); /* INDIRECT_DESC: not offered */
	wr(&d, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	assert_int_equal(rd(&d, STATUS) & S_FEATURES_OK, 0);
	/* A queue of a size that is not a power of 2, or with rings outside RAM, is not made
	 * ready: the device needs a reset. */
	wr(&d, STATUS, 0);
	drv_init(&d, vm, 0, 4);
	wr(&d, STATUS, 0);
	wr(&d, QUEUE_NUM, 12);
	wr(&d, DESC_LO, 0x200000);
	wr(&d, AVAIL_LO, 0x201000);
	wr(&d, USED_LO, 0x202000);
	wr(&d, QUEUE_READY, 1);
	assert_int_equal(rd(&d, QUEUE_READY), 0);
	assert_true(rd(&d, STATUS) & S_NEEDS_RESET);
	wr(&d, STATUS, 0);
	wr(&d, QUEUE_NUM, 16);
	wr(&d, USED_HI, 1); /* 4 GiB + ...: no RAM there */
	wr(&d, QUEUE_READY, 1);
	assert_int_equal(rd(&d, QUEUE_READY), 0);
	assert_true(rd(&d, STATUS) & S_NEEDS_RESET);
	/* No queue 1 on an rng. */
	wr(&d, STATUS, 0);
	wr(&d, QUEUE_SEL, 1);
	assert_int_equal(rd(&d, QUEUE_NUM_MAX), 0);
	vmm_vm_destroy(vm);
}

struct devs {
	const char *img;
	int ro;
	int with_rng;
	int extra_rng; /* one more after the disk */
};

static int prepare(void *opaque, struct vmm_vm *vm)
{
	const struct devs *p = opaque;
	struct vmm_disk_opts o;
	int r = 0;

	if (p->with_rng)
		r = vmm_vm_add_rng(vm, NULL);
	if (!r && p->img) {
		vmm_disk_opts_init(&o);
		o.path = p->img;
		o.read_only = (uint32_t)p->ro;
		r = vmm_vm_add_disk(vm, &o);
	}
	if (!r && p->extra_rng)
		r = vmm_vm_add_rng(vm, NULL);
	return r;
}

static struct vmm_vm *restore(const char *snap, struct devs *p, int expect)
{
	struct vmm_restore_opts ro;
	struct vmm_vm *vm = NULL;

	vmm_restore_opts_init(&ro);
	ro.prepare = prepare;
	ro.prepare_opaque = p;
	assert_int_equal(vmm_snapshot_restore(snap, &ro, &vm), expect);
	return vm;
}

/* Saved with one write done and the next one available but not yet notified, the
 * interrupt of the first still pending: the restored device has the same registers and
 * queue, raises the same line, and serves the second request exactly once. */
static void snapshot_mid_queue(void **state)
{
	static const uint8_t hlt[] = { 0xf4, 0xeb, 0xfd };
	static uint8_t kimg[8192];
	char img[] = "/tmp/vmm-virtio-snap-XXXXXX", small[] = "/tmp/vmm-virtio-small-XXXXXX";
	char snap[] = "/tmp/vmm-virtio-snapfile-XXXXXX";
	struct devs both = { img, 0, 1, 0 }, none = { NULL, 0, 0, 0 }, disk_only = { img, 0, 0, 0 };
	struct devs other = { small, 0, 1, 0 }, ro = { img, 1, 1, 0 }, extra = { img, 0, 1, 1 };
	struct vmm_snapshot_opts so;
	struct vmm_vm *vm, *vm2;
	struct drv d, d2;
	uint8_t a[512], b[512], file[512];
	uint32_t id, len, w;
	int fd = mkstemp(snap);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	make_image(img, 256);
	make_image(small, 128);
	vm = vm_with(img, 0, 1);
	assert_int_equal(vmm_vm_load_kernel_image(vm, kimg, fake_elf64(kimg, 0x100000, 0x100000,
								       hlt, sizeof(hlt)), NULL, 0), 0);
	drv_init(&d, vm, 1, 2);
	memset(a, 0xa1, sizeof(a));
	memset(b, 0xb2, sizeof(b));
	mem_put(vm, BUF_BASE, a, sizeof(a));
	assert_int_equal(blk_req(&d, 1, 10, BUF_BASE, 512, 0, &w), 0);
	assert_int_equal(irq_level(&d), 1);
	/* The second request: sector 11 from b, descriptors 0-2, available, not notified. */
	{
		struct blk_hdr h = { 1, 0, 11 };
		uint8_t st = 0xee;

		mem_put(vm, BUF_BASE + 0x2000, &h, sizeof(h));
		mem_put(vm, BUF_BASE + 0x3000, b, sizeof(b));
		mem_put(vm, BUF_BASE + 0x4000, &st, 1);
		put_desc(&d, 0, BUF_BASE + 0x2000, sizeof(h), F_NEXT, 1);
		put_desc(&d, 1, BUF_BASE + 0x3000, 512, F_NEXT, 2);
		put_desc(&d, 2, BUF_BASE + 0x4000, 1, F_WRITE, 0);
		submit(&d, 0, 0);
	}
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_pause(vm), 0);
	vmm_snapshot_opts_init(&so);
	assert_int_equal(vmm_snapshot_save(vm, snap, &so, NULL), 0);
	vmm_vm_destroy(vm); /* and with it the image's lock */
	file_read(img, 11 * 512, file, 512);
	assert_int_equal(file[0], (uint8_t)(11 * 7)); /* not written before the restore */

	/* Devices that differ are refused, naming what differs. */
	assert_null(restore(snap, &none, VMM_ESTATEDATA));
	assert_non_null(strstr(vmm_last_error(), "virtio0-rng"));
	assert_null(restore(snap, &disk_only, VMM_ESTATEDATA)); /* the disk in the wrong slot */
	assert_null(restore(snap, &other, VMM_ESTATEDATA));
	assert_non_null(strstr(vmm_last_error(), "sectors"));
	assert_null(restore(snap, &ro, VMM_ESTATEDATA));
	assert_null(restore(snap, &extra, VMM_ESTATEDATA)); /* one device more */
	assert_non_null(strstr(vmm_last_error(), "virtio2-rng"));

	vm2 = restore(snap, &both, 0);
	assert_non_null(vm2);
	drv_attach(&d2, vm2, 1);
	/* The registers the driver set, and the pending interrupt, are back. */
	assert_int_equal(rd(&d2, STATUS), S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	assert_int_equal(rd(&d2, QUEUE_READY), 1);
	assert_int_equal(rd(&d2, ISR), 1);
	assert_int_equal(irq_level(&d2), 1);
	assert_int_equal(used_idx(&d2), 1);
	d2.avail_idx = 2;
	wr(&d2, ISR_ACK, 1);
	assert_int_equal(irq_level(&d2), 0);
	/* The guest's notify arrives after the restore: served once, as descriptor 0. */
	wr(&d2, QUEUE_NOTIFY, 0);
	assert_int_equal(used_idx(&d2), 2);
	used_elem(&d2, 1, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 1);
	file_read(img, 11 * 512, file, 512);
	assert_memory_equal(file, b, 512);
	file_read(img, 10 * 512, file, 512);
	assert_memory_equal(file, a, 512);
	wr(&d2, QUEUE_NOTIFY, 0);
	assert_int_equal(used_idx(&d2), 2);
	assert_int_equal(irq_level(&d2), 1);
	assert_int_equal(vmm_vm_start(vm2), 0);
	vmm_vm_destroy(vm2);
	unlink(snap);
	unlink(img);
	unlink(small);
}

/* The device's own load hook, given a state the guest could not have produced: a ring
 * outside RAM, an index past 16 bits, features never offered, another device: refused,
 * and the device keeps what it had. */
static int load_virtio(struct vmm_vm *vm, const char *name, const Vmm__Devices__VirtioMmio *m)
{
	uint8_t buf[512];
	size_t len = vmm__devices__virtio_mmio__pack(m, buf);

	for (uint32_t i = 0; i < vm->devices.n; i++)
		if (!strcmp(vm->devices.items[i].ops->name, name))
			return vm->devices.items[i].ops->load(vm->devices.items[i].dev, buf, len);
	fail_msg("no device %s", name);
	return -1;
}

static void hostile_state_refused(void **state)
{
	struct vmm_vm *vm = vm_with(NULL, 0, 1);
	Vmm__Devices__VirtioMmio m = VMM__DEVICES__VIRTIO_MMIO__INIT;
	Vmm__Devices__VirtioQueue q = VMM__DEVICES__VIRTIO_QUEUE__INIT, *qp = &q;
	struct drv d;

	(void)state;
	drv_attach(&d, vm, 0);
	m.has_device_id = m.has_device_features = m.has_driver_features = m.has_status = 1;
	m.has_interrupt_status = 1;
	q.has_num = q.has_ready = q.has_desc_addr = q.has_avail_addr = q.has_used_addr = 1;
	q.has_last_avail_idx = 1;
	m.device_id = 4;
	m.device_features = 1ull << 32;
	m.driver_features = 1ull << 32;
	m.status = S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK;
	m.n_queues = 1;
	m.queues = &qp;
	q.num = 16, q.ready = 1;
	q.desc_addr = 0x200000, q.avail_addr = 0x201000, q.used_addr = 0x202000;
	assert_int_equal(load_virtio(vm, "virtio0-rng", &m), 0);
	assert_int_equal(rd(&d, STATUS), m.status);

	q.used_addr = 1ull << 40;
	assert_int_equal(load_virtio(vm, "virtio0-rng", &m), VMM_ESTATEDATA);
	q.used_addr = 0x202000, q.num = 24; /* not a power of 2 */
	assert_int_equal(load_virtio(vm, "virtio0-rng", &m), VMM_ESTATEDATA);
	q.num = 16, q.last_avail_idx = 70000;
	assert_int_equal(load_virtio(vm, "virtio0-rng", &m), VMM_ESTATEDATA);
	q.last_avail_idx = 0, m.driver_features |= 1;
	assert_int_equal(load_virtio(vm, "virtio0-rng", &m), VMM_ESTATEDATA);
	m.driver_features = 1ull << 32, m.device_id = 2;
	assert_int_equal(load_virtio(vm, "virtio0-rng", &m), VMM_ESTATEDATA);
	m.device_id = 4, m.n_queues = 0;
	assert_int_equal(load_virtio(vm, "virtio0-rng", &m), VMM_ESTATEDATA);
	m.n_queues = 1, m.interrupt_status = 9;
	assert_int_equal(load_virtio(vm, "virtio0-rng", &m), VMM_ESTATEDATA);
	/* Refusals left the device as the good load put it. */
	assert_int_equal(rd(&d, STATUS), S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	assert_int_equal(rd(&d, QUEUE_READY), 1);
	vmm_vm_destroy(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(rng_fills_buffers, fake_vm_setup),
		cmocka_unit_test_setup(blk_reads_and_writes, fake_vm_setup),
		cmocka_unit_test_setup(blk_read_only, fake_vm_setup),
		cmocka_unit_test_setup(blk_image_locked, fake_vm_setup),
		cmocka_unit_test_setup(cmdline_and_order, fake_vm_setup),
		cmocka_unit_test_setup(hostile_rings, fake_vm_setup),
		cmocka_unit_test_setup(bad_setup_refused, fake_vm_setup),
		cmocka_unit_test_setup(snapshot_mid_queue, fake_vm_setup),
		cmocka_unit_test_setup(hostile_state_refused, fake_vm_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
