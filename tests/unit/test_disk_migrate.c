/* Local disks copied in the migration stream (VMM_MIGRATE_DISKS_COPY), on the fake kernel
 * with both sides in this process: a fake guest driver writes blocks to the source's
 * virtio-blk disk through its MMIO window while a real vmm_migrate_send/receive runs over
 * loopback TCP (a writer thread during the first round, then the progress callback between
 * rounds, so that several rounds carry dirty blocks); the destination's own image
 * must then equal the source's byte for byte, with the source's holes still holes. Refusals
 * (another size, the same file) come before anything is written; a link cut before GO
 * leaves the source running with its image as it was. A snapshot with the disk restores
 * it into an empty image; a damaged or truncated section is refused, the image untouched. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "handover_proxy.h"
#include "migrate_util.h"
#include "libvmm/devices/virtio_blk.h"
#include "libvmm/devices/virtio_mmio.h"
#include "libvmm/vm_internal.h"
#include "libvmm/vm_move.h"
#include "migrate/stream.h"
#include "vmm/snapshot.h"

#define MIB (1ull << 20)
#define RAM_MIB 16
#define DISK_MIB 8
/* The source image: data in [0, 2) and [6, 8) MiB, a hole in [2, 6) the guest never
 * writes. */
#define HOLE_LO (2 * MIB)
#define HOLE_HI (6 * MIB)
/* Where a snapshot's disk section starts: after the RAM image and its page hashes. */
#define VMM_SNAP_OFF_RAM_END (4096 + RAM_MIB * MIB + RAM_MIB * MIB / 4096 * 8)

#define QUEUE_NOTIFY 0x050
#define STATUS 0x070
#define QNUM 16
#define RING 0x200000ull
#define BUF 0x400000ull
#define F_NEXT 1
#define F_WRITE 2

static char src_img[64], dst_img[64];

/* ---- a minimal guest driver of slot 0 (test_virtio.c has the full one) */

struct drv {
	struct vmm_vm *vm;
	uint16_t avail_idx;
	unsigned writes;
};

static void reg(struct drv *d, uint32_t off, uint32_t *v, int write)
{
	const struct vmm__bus_range *r = vmm__bus_find(&d->vm->mmio, VMM_VIRTIO_MMIO_BASE + off);

	assert_non_null(r);
	r->fn(r->opaque, VMM_VIRTIO_MMIO_BASE + off, (uint8_t *)v, 4, write);
}

static void wr(struct drv *d, uint32_t off, uint32_t v)
{
	reg(d, off, &v, 1);
}

static uint32_t rd(struct drv *d, uint32_t off)
{
	uint32_t v = 0;

	reg(d, off, &v, 0);
	return v;
}

static void drv_init(struct drv *d, struct vmm_vm *vm)
{
	static const uint8_t zero[0x3000];
	uint32_t f;

	memset(d, 0, sizeof(*d));
	d->vm = vm;
	assert_int_equal(rd(d, 0x008), 2); /* blk */
	wr(d, STATUS, 0);
	wr(d, STATUS, 3);
	wr(d, 0x014, 1);
	f = rd(d, 0x010);
	wr(d, 0x024, 1);
	wr(d, 0x020, f);
	wr(d, 0x024, 0);
	wr(d, 0x020, 0);
	wr(d, STATUS, 11);
	assert_int_equal(vmm_vm_mem_write(vm, RING, zero, sizeof(zero)), 0);
	wr(d, 0x030, 0);
	wr(d, 0x038, QNUM);
	wr(d, 0x080, (uint32_t)RING), wr(d, 0x084, 0);
	wr(d, 0x090, (uint32_t)RING + 0x1000), wr(d, 0x094, 0);
	wr(d, 0x0a0, (uint32_t)RING + 0x2000), wr(d, 0x0a4, 0);
	wr(d, 0x044, 1);
	wr(d, STATUS, 15);
}

static void put_desc(struct drv *d, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	struct {
		uint64_t addr;
		uint32_t len;
		uint16_t flags, next;
	} e = { addr, len, flags, next };

	assert_int_equal(vmm_vm_mem_write(d->vm, RING + 16ull * i, &e, 16), 0);
}

/* The guest writes 4 KiB of generation gen at byte off (served on this thread). */
static void guest_write(struct drv *d, uint64_t off, unsigned gen)
{
	struct {
		uint32_t type, reserved;
		uint64_t sector;
	} h = { 1, 0, off / 512 };
	uint8_t data[4096], status = 0xee;
	uint16_t used;

	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(gen * 31 + i + off / 4096);
	assert_int_equal(vmm_vm_mem_write(d->vm, BUF - 0x1000, &h, sizeof(h)), 0);
	assert_int_equal(vmm_vm_mem_write(d->vm, BUF, data, sizeof(data)), 0);
	assert_int_equal(vmm_vm_mem_write(d->vm, BUF - 0x100, &status, 1), 0);
	put_desc(d, 0, BUF - 0x1000, sizeof(h), F_NEXT, 1);
	put_desc(d, 1, BUF, sizeof(data), F_NEXT, 2);
	put_desc(d, 2, BUF - 0x100, 1, F_WRITE, 0);
	{
		uint16_t head = 0;

		assert_int_equal(vmm_vm_mem_write(d->vm, RING + 0x1000 + 4 +
						  2ull * (d->avail_idx % QNUM), &head, 2), 0);
	}
	d->avail_idx++;
	assert_int_equal(vmm_vm_mem_write(d->vm, RING + 0x1000 + 2, &d->avail_idx, 2), 0);
	wr(d, QUEUE_NOTIFY, 0);
	assert_int_equal(vmm_vm_mem_read(d->vm, RING + 0x2000 + 2, &used, 2), 0);
	assert_int_equal(used, d->avail_idx);
	assert_int_equal(vmm_vm_mem_read(d->vm, BUF - 0x100, &status, 1), 0);
	assert_int_equal(status, 0);
	d->writes++;
}

/* A block outside the hole, spread by k. */
static uint64_t block_of(unsigned k)
{
	uint64_t b = (k * 37u) % 1024; /* 1024 blocks of 4 KiB: [0, 2) and [6, 8) MiB */

	return b < 512 ? b * 4096 : HOLE_HI + (b - 512) * 4096;
}

/* ---- images */

static void make_file(char *path, const char *tmpl, uint64_t size, int fill)
{
	int fd;

	snprintf(path, 64, "%s", tmpl);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (fill >= 0) {
		uint8_t *b = malloc(size);

		memset(b, fill, size);
		assert_int_equal(pwrite(fd, b, size, 0), (ssize_t)size);
		free(b);
	}
	close(fd);
}

/* The source: data at both ends, the hole sparse. */
static void make_source(void)
{
	uint8_t *b = malloc(2 * MIB);
	int fd;

	make_file(src_img, "/tmp/vmm-diskmig-src-XXXXXX", DISK_MIB * MIB, -1);
	for (uint64_t i = 0; i < 2 * MIB; i++)
		b[i] = (uint8_t)(i * 13 + i / 4096);
	fd = open(src_img, O_RDWR);
	assert_int_equal(pwrite(fd, b, 2 * MIB, 0), (ssize_t)(2 * MIB));
	assert_int_equal(pwrite(fd, b, 2 * MIB, (off_t)HOLE_HI), (ssize_t)(2 * MIB));
	close(fd);
	free(b);
}

static uint8_t *slurp(const char *path, uint64_t *size)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	*size = (uint64_t)st.st_size;
	b = malloc(*size ? *size : 1);
	assert_int_equal(pread(fd, b, *size, 0), (ssize_t)*size);
	close(fd);
	return b;
}

/* Block by block (4 KiB), naming the first that differs. */
static void assert_same_images(const char *a, const char *b)
{
	uint64_t na, nb;
	uint8_t *x = slurp(a, &na), *y = slurp(b, &nb);

	assert_int_equal(na, nb);
	unsigned bad = 0;

	for (uint64_t off = 0; off < na; off += 4096)
		if (memcmp(x + off, y + off, 4096) && bad++ < 8)
			print_message("    images differ in block at %llu (%02x %02x / %02x %02x)\n",
				      (unsigned long long)off, x[off], x[off + 1], y[off], y[off + 1]);
	if (bad)
		fail_msg("%u blocks differ", bad);
	free(x);
	free(y);
}

/* No data in [lo, hi) of path: a hole, not written zeros. */
static int is_hole(const char *path, uint64_t lo, uint64_t hi)
{
	int fd = open(path, O_RDONLY);
	off_t d = lseek(fd, (off_t)lo, SEEK_DATA);

	close(fd);
	return d < 0 || (uint64_t)d >= hi;
}

static int setup(void **state)
{
	make_source();
	return fake_vm_setup(state);
}

static int teardown(void **state)
{
	(void)state;
	unlink(src_img);
	unlink(dst_img);
	dst_img[0] = 0;
	return 0;
}

/* ---- the VMs */

static int add_disk(struct vmm_vm *vm, const char *path)
{
	struct vmm_disk_opts o;

	vmm_disk_opts_init(&o);
	o.path = path;
	return vmm_vm_add_disk(vm, &o);
}

static int prepare(void *opaque, struct vmm_vm *vm)
{
	return add_disk(vm, opaque);
}

static struct vmm_vm *source(void)
{
	static const uint8_t hlt_loop[] = { 0xf4, 0xeb, 0xfd };
	static uint8_t kernel[8192];
	size_t len = fake_elf64(kernel, 0x100000, 0x100000, hlt_loop, sizeof(hlt_loop));
	struct vmm_vm *vm = fake_vm_new(RAM_MIB, 1, 0, NULL, NULL);

	assert_non_null(vm);
	assert_int_equal(add_disk(vm, src_img), 0);
	assert_int_equal(vmm_vm_load_kernel_image(vm, kernel, len, NULL, 0), 0);
	assert_int_equal(vmm_vm_start(vm), 0);
	return vm;
}

static void receiver(struct mu_rx *d, const char *img)
{
	mu_rx_init(d);
	d->o.prepare = prepare;
	d->o.prepare_opaque = (void *)img;
	d->o.timeout_ms = 5000;
	mu_rx_start(d);
}

static void copy_opts(struct vmm_migrate_opts *o)
{
	vmm_migrate_opts_init(o);
	o->disks = VMM_MIGRATE_DISKS_COPY;
	o->timeout_ms = 5000;
}

/* ---- the guest writes while the rounds run */

struct writer {
	struct drv d;
	pthread_t thread;
	int stop;
	unsigned gen;
	unsigned callbacks;
	uint32_t rounds_seen;
};

/* The writer thread stands for the guest: its writes to guest RAM (rings, buffers) race
 * the rounds' reads as a guest's do, which is what dirty tracking is for. Under KVM those
 * writes are invisible to TSan; here they are hidden from it the same way (the tracker's
 * own locking is checked without this, by tracking_races_the_request_path). */
#if defined(__SANITIZE_THREAD__)
void AnnotateIgnoreWritesBegin(const char *file, int line);
void AnnotateIgnoreWritesEnd(const char *file, int line);
#define GUEST_WRITES_BEGIN() AnnotateIgnoreWritesBegin(__FILE__, __LINE__)
#define GUEST_WRITES_END() AnnotateIgnoreWritesEnd(__FILE__, __LINE__)
#else
#define GUEST_WRITES_BEGIN() ((void)0)
#define GUEST_WRITES_END() ((void)0)
#endif

static void *guest_main(void *arg)
{
	struct writer *w = arg;

	while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
		GUEST_WRITES_BEGIN();
		guest_write(&w->d, block_of(w->d.writes), ++w->gen);
		GUEST_WRITES_END();
		usleep(200);
	}
	return NULL;
}

/* After every live round, on the sending thread: the first stops the writer thread (so
 * that the driver has one user), then each writes a generation of its own: dirty blocks
 * for the next round, the last ones for the final pass (the final round's report comes
 * after it, the guest paused: nothing is written then). */
static void progress(void *opaque, const struct vmm_migrate_round *rd,
		     const struct vmm_migrate_stats *total)
{
	struct writer *w = opaque;

	(void)total;
	w->rounds_seen = rd->round + 1;
	if (rd->final) /* reported after the last pass: the guest is paused, it writes nothing */
		return;
	if (w->callbacks++ == 0) {
		__atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
		pthread_join(w->thread, NULL);
	}
	for (unsigned i = 0; i < 16; i++)
		guest_write(&w->d, block_of(w->d.writes * 7 + 3), ++w->gen);
}

static void copies_while_the_guest_writes(void **state)
{
	struct vmm_vm *src = source();
	struct vmm_migrate_opts o;
	struct vmm_migrate_stats st;
	struct writer w = { 0 };
	struct mu_rx d;

	(void)state;
	/* The destination's image is full of something else, holes included. */
	make_file(dst_img, "/tmp/vmm-diskmig-dst-XXXXXX", DISK_MIB * MIB, 0xaa);
	drv_init(&w.d, src);
	assert_int_equal(pthread_create(&w.thread, NULL, guest_main, &w), 0);
	receiver(&d, dst_img);
	copy_opts(&o);
	o.connections = 2;
	o.downtime_limit_ns = 1; /* never reached: the rounds run to the cap */
	o.max_rounds = 4;
	o.progress = progress;
	o.progress_opaque = &w;
	assert_int_equal(vmm_migrate_send_to(src, "127.0.0.1", d.port, &o, &st), 0);
	assert_int_equal(mu_rx_join(&d), 0);
	print_message("    %u rounds, %u guest writes, %llu disk bytes, %llu wire bytes\n",
		      st.rounds, w.d.writes, (unsigned long long)st.disk_bytes,
		      (unsigned long long)st.wire_bytes);
	assert_true(w.callbacks >= 3);
	assert_true(st.rounds >= 3);
	assert_true(st.disk_bytes >= 4 * MIB);
	assert_true(vmm_vm_migrated(src));
	assert_int_equal(vmm_vm_run_state(d.vm), VMM_VM_RUNNING);
	assert_same_images(src_img, dst_img);
	assert_true(is_hole(src_img, HOLE_LO, HOLE_HI));
	assert_true(is_hole(dst_img, HOLE_LO, HOLE_HI));
	vmm_vm_destroy(d.vm);
	vmm_vm_destroy(src);
}

/* An image of another size: refused by name before a block is written; the source runs
 * on. */
static void other_size_refused(void **state)
{
	struct vmm_vm *src = source();
	struct vmm_migrate_opts o;
	uint64_t n;
	uint8_t *b;
	struct mu_rx d;

	(void)state;
	make_file(dst_img, "/tmp/vmm-diskmig-dst-XXXXXX", (DISK_MIB / 2) * MIB, 0xaa);
	receiver(&d, dst_img);
	copy_opts(&o);
	assert_int_not_equal(vmm_migrate_send_to(src, "127.0.0.1", d.port, &o, NULL), 0);
	assert_int_equal(mu_rx_join(&d), VMM_ESHAPE);
	print_message("    destination: %s\n", d.detail);
	assert_non_null(strstr(d.detail, "bytes"));
	assert_int_equal(vmm_vm_run_state(src), VMM_VM_RUNNING);
	b = slurp(dst_img, &n);
	for (uint64_t i = 0; i < n; i++)
		assert_int_equal(b[i], 0xaa);
	free(b);
	vmm_vm_destroy(src);
}

/* The source's own image on the same host: a copy onto itself is refused (VMM_EINVAL). */
static void same_file_refused(void **state)
{
	struct vmm_vm *src = source();
	struct vmm_migrate_opts o;
	struct mu_rx d;
	uint64_t n0, n1;
	uint8_t *before = slurp(src_img, &n0), *after;

	(void)state;
	receiver(&d, src_img);
	copy_opts(&o);
	assert_int_not_equal(vmm_migrate_send_to(src, "127.0.0.1", d.port, &o, NULL), 0);
	assert_int_equal(mu_rx_join(&d), VMM_EINVAL);
	print_message("    destination: %s\n", d.detail);
	assert_int_equal(vmm_vm_run_state(src), VMM_VM_RUNNING);
	after = slurp(src_img, &n1);
	assert_int_equal(n0, n1);
	assert_memory_equal(before, after, n0);
	free(before);
	free(after);
	vmm_vm_destroy(src);
}

/* The link is cut before READY reaches the source: it keeps the guest, running, with its
 * image as it was and its lock; the destination (in doubt) is discarded. */
static void cut_before_go_keeps_the_source(void **state)
{
	struct vmm_vm *src = source();
	struct vmm_migrate_opts o;
	struct hp_proxy cut;
	struct mu_rx d;
	uint64_t n0, n1;
	uint8_t *before = slurp(src_img, &n0), *after;
	int fd;

	(void)state;
	make_file(dst_img, "/tmp/vmm-diskmig-dst-XXXXXX", DISK_MIB * MIB, -1);
	receiver(&d, dst_img);
	hp_start(&cut, d.port, HP_CUT, HP_TO_SRC, VMM_REC_READY, NULL);
	copy_opts(&o);
	assert_int_not_equal(vmm_migrate_send_to(src, "127.0.0.1", cut.port, &o, NULL), 0);
	assert_int_equal(mu_rx_join(&d), VMM_EINDOUBT);
	assert_int_equal(vmm_vm_run_state(src), VMM_VM_RUNNING);
	assert_int_equal(vmm_migrate_resolve(d.vm, VMM_RESOLVE_DISCARD), 0);
	vmm_vm_destroy(d.vm);
	hp_stop(&cut);
	after = slurp(src_img, &n1);
	assert_int_equal(n0, n1);
	assert_memory_equal(before, after, n0);
	fd = open(src_img, O_RDWR);
	assert_int_not_equal(flock(fd, LOCK_EX | LOCK_NB), 0); /* still the source's */
	close(fd);
	free(before);
	free(after);
	vmm_vm_destroy(src);
}

/* The tracker against the request path: a thread writes through the device while this
 * one takes the dirty blocks over and over; every block written shows up in some take. */
static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (unsigned i = 0; i < 2000; i++)
		guest_write(&w->d, block_of(i), ++w->gen);
	__atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void tracking_races_the_request_path(void **state)
{
	struct vmm_vm *vm = fake_vm_new(RAM_MIB, 1, 0, NULL, NULL);
	uint64_t map[2], seen[2] = { 0, 0 }, want[2] = { 0, 0 }, takes = 0;
	struct writer w = { 0 };
	void *blk;

	(void)state;
	assert_non_null(vm);
	assert_int_equal(add_disk(vm, src_img), 0);
	assert_int_equal(vmm__move_disks(vm, &blk, 1), 1);
	assert_int_equal(vmm__blk_dirty_blocks(blk), DISK_MIB * MIB / VMM_BLK_DIRTY_BLOCK);
	assert_int_equal(vmm__blk_track(blk, 1), 0);
	drv_init(&w.d, vm);
	assert_int_equal(pthread_create(&w.thread, NULL, writer_main, &w), 0);
	while (!__atomic_load_n(&w.stop, __ATOMIC_ACQUIRE)) {
		takes += vmm__blk_take_dirty(blk, map) > 0;
		seen[0] |= map[0], seen[1] |= map[1];
	}
	pthread_join(w.thread, NULL);
	vmm__blk_take_dirty(blk, map);
	seen[0] |= map[0], seen[1] |= map[1];
	for (unsigned i = 0; i < 2000; i++) {
		uint64_t k = block_of(i) / VMM_BLK_DIRTY_BLOCK;

		want[k / 64] |= 1ull << (k % 64);
	}
	print_message("    %llu non-empty takes\n", (unsigned long long)takes);
	assert_int_equal(seen[0], want[0]);
	assert_int_equal(seen[1], want[1]);
	assert_int_equal(vmm__blk_take_dirty(blk, map), 0);
	assert_int_equal(vmm__blk_track(blk, 0), 0);
	guest_write(&w.d, 0, 1); /* not tracking: nothing recorded, nothing breaks */
	assert_int_equal(vmm__blk_take_dirty(blk, map), 0);
	vmm_vm_destroy(vm);
}

/* ---- snapshots that carry the disk */

static void flip_byte(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x5a;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

static int restore_into(const char *snap, const char *img, struct vmm_vm **out)
{
	struct vmm_restore_opts ro;

	vmm_restore_opts_init(&ro);
	ro.prepare = prepare;
	ro.prepare_opaque = (void *)img;
	return vmm_snapshot_restore(snap, &ro, out);
}

static void all_bytes(const char *path, uint8_t v)
{
	uint64_t n;
	uint8_t *b = slurp(path, &n);

	for (uint64_t i = 0; i < n; i++)
		if (b[i] != v)
			fail_msg("byte %llu of %s is 0x%02x", (unsigned long long)i, path, b[i]);
	free(b);
}

/* One file restores the whole machine: the disk goes into an empty image of the same
 * size, block by block the source's, its hole a hole. A damaged or truncated section is
 * refused before a byte of the image is written. */
static void snapshot_carries_the_disk(void **state)
{
	struct vmm_vm *src = source(), *vm = NULL;
	struct vmm_snapshot_opts so;
	struct drv d;
	char snap[96], bad[112];
	uint64_t disks_off = VMM_SNAP_OFF_RAM_END;
	int fd;

	(void)state;
	drv_init(&d, src);
	for (unsigned i = 0; i < 40; i++)
		guest_write(&d, block_of(i * 5), i + 1);
	snprintf(snap, sizeof(snap), "%s.snap", src_img);
	vmm_snapshot_opts_init(&so);
	so.disks = 1;
	assert_int_equal(vmm_snapshot_save(src, snap, &so, NULL), 0);
	vmm_vm_destroy(src); /* its image stays as saved */

	make_file(dst_img, "/tmp/vmm-diskmig-dst-XXXXXX", DISK_MIB * MIB, -1);
	assert_int_equal(restore_into(snap, dst_img, &vm), 0);
	assert_same_images(src_img, dst_img);
	assert_true(is_hole(dst_img, HOLE_LO, HOLE_HI));
	vmm_vm_destroy(vm);

	/* Damaged inside the section: refused, the image untouched. */
	snprintf(bad, sizeof(bad), "%s.bad", snap);
	{
		uint64_t n;
		uint8_t *b = slurp(snap, &n);

		fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_int_equal(write(fd, b, n), (ssize_t)n);
		close(fd);
		free(b);
	}
	flip_byte(bad, disks_off + 4096);
	unlink(dst_img);
	make_file(dst_img, "/tmp/vmm-diskmig-dst-XXXXXX", DISK_MIB * MIB, 0xaa);
	vm = NULL;
	assert_int_equal(restore_into(bad, dst_img, &vm), VMM_ECORRUPT);
	print_message("    damaged: %s\n", vmm_last_error());
	assert_null(vm);
	all_bytes(dst_img, 0xaa);
	/* Truncated inside the section: refused as well, the image untouched. */
	assert_int_equal(truncate(bad, (off_t)(disks_off + 8192)), 0);
	assert_int_not_equal(restore_into(bad, dst_img, &vm), 0);
	print_message("    truncated: %s\n", vmm_last_error());
	all_bytes(dst_img, 0xaa);
	/* Another size: refused by name. */
	unlink(dst_img);
	make_file(dst_img, "/tmp/vmm-diskmig-dst-XXXXXX", 2 * MIB, 0xaa);
	assert_int_equal(restore_into(snap, dst_img, &vm), VMM_ESHAPE);
	all_bytes(dst_img, 0xaa);
	unlink(bad);
	unlink(snap);
}

/* A mode this libvmm does not know. */
static void unknown_mode_refused(void **state)
{
	struct vmm_vm *src = source();
	struct vmm_migrate_opts o;
	int fds[1] = { -1 };

	(void)state;
	copy_opts(&o);
	o.disks = 7;
	assert_int_equal(vmm_migrate_send(src, fds, 1, &o, NULL), VMM_EINVAL);
	assert_int_equal(vmm_vm_run_state(src), VMM_VM_RUNNING);
	vmm_vm_destroy(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(copies_while_the_guest_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(other_size_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(same_file_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(cut_before_go_keeps_the_source, setup, teardown),
		cmocka_unit_test_setup_teardown(unknown_mode_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(tracking_races_the_request_path, setup, teardown),
		cmocka_unit_test_setup_teardown(snapshot_carries_the_disk, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
