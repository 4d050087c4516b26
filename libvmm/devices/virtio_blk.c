/* virtio-blk on a file. With VERSION_1 the driver may frame a request any way it likes
 * (section 2.6.4), so the header, data and status are found by byte offset in the
 * request's readable and writable parts, not by descriptor. Data moves through a 64 KiB
 * bounce buffer: guest RAM is only touched through the device host's checked copies. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices.pb-c.h"
#include "vmm/devices.h"
#include "libvmm/devices/virtio_blk.h"
#include "libvmm/devices/virtio_mmio.h"
#include "libvmm/error_internal.h"

#define BLK_F_SEG_MAX 2
#define BLK_F_RO 5
#define BLK_F_FLUSH 9

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8

#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2

#define SECTOR 512ull
#define ID_LEN 20
#define BOUNCE (64 * 1024)
/* Data segments per request: the queue less the header and status descriptors. */
#define SEG_MAX (VMM_VIRTIO_QUEUE_MAX - 2)

struct blk {
	int fd;
	int read_only;
	uint64_t capacity; /* sectors */
	char serial[ID_LEN];
	char *path;
	int locked; /* holds its flock; 0 before a deferred lock is taken, or once released */
	/* vmm_device_info's counters; the transport's lock covers them. */
	uint64_t requests, errors, bytes_read, bytes_written;
	struct vmm__virtio_req req; /* the transport's lock covers req and buf */
	/* Blocks the guest wrote since the last take (a migration copying the image):
	 * dirty_lock alone guards the bitmap, so the migration thread never waits for a
	 * request in flight. NULL: not tracking. */
	pthread_mutex_t dirty_lock;
	uint64_t *dirty;
	uint8_t buf[BOUNCE];
};

/* A write's blocks are marked after pwrite returned: a take (clear) before the copy reads
 * the block either sees the data or finds the bit set again, never neither. */
static void mark_dirty(struct blk *b, uint64_t off, uint64_t len)
{
	if (!len)
		return;
	pthread_mutex_lock(&b->dirty_lock);
	if (b->dirty)
		for (uint64_t k = off / VMM_BLK_DIRTY_BLOCK; k <= (off + len - 1) / VMM_BLK_DIRTY_BLOCK;
		     k++)
			b->dirty[k / 64] |= 1ull << (k % 64);
	pthread_mutex_unlock(&b->dirty_lock);
}

/* Moves len bytes between the image at off and the request's data (readable part from
 * byte 16 for OUT, writable part from byte 0 for IN). -1: the transport failed. */
static int transfer(struct blk *b, struct vmm__virtio *t, int out, uint64_t off, uint64_t len,
		    uint8_t *status)
{
	for (uint64_t done = 0; done < len;) {
		size_t n = len - done < BOUNCE ? (size_t)(len - done) : BOUNCE;
		ssize_t io;

		if (out) {
			if (vmm__virtio_gather(t, &b->req, 16 + done, b->buf, n))
				return -1;
			io = pwrite(b->fd, b->buf, n, (off_t)(off + done));
		} else {
			io = pread(b->fd, b->buf, n, (off_t)(off + done));
		}
		if (io < 0 && errno == EINTR)
			continue;
		if (io <= 0) {
			*status = S_IOERR;
			return 0;
		}
		if (!out && vmm__virtio_scatter(t, &b->req, done, b->buf, (size_t)io))
			return -1;
		done += (uint64_t)io;
	}
	return 0;
}

/* Serves b->req: the status and the bytes written into the guest's buffers before it,
 * or -1 when the transport failed (nothing to push). */
static int serve(struct blk *b, struct vmm__virtio *t, uint8_t *status, uint32_t *written)
{
	struct {
		uint32_t type, reserved;
		uint64_t sector;
	} h;
	uint64_t len;

	*status = S_OK;
	*written = 0;
	if (b->req.rlen < sizeof(h) || b->req.wlen < 1 || b->req.wlen > UINT32_MAX) {
		vmm__virtio_fail(t, "blk request without its header or status byte");
		return -1;
	}
	if (vmm__virtio_gather(t, &b->req, 0, &h, sizeof(h)))
		return -1;
	switch (h.type) {
	case T_IN:
	case T_OUT:
		len = h.type == T_IN ? b->req.wlen - 1 : b->req.rlen - sizeof(h);
		if (h.type == T_OUT && b->read_only) {
			*status = S_IOERR;
			return 0;
		}
		if ((len % SECTOR) || h.sector > b->capacity || len / SECTOR > b->capacity - h.sector) {
			*status = S_IOERR;
			return 0;
		}
		if (transfer(b, t, h.type == T_OUT, h.sector * SECTOR, len, status))
			return -1;
		if (*status == S_OK) {
			if (h.type == T_IN)
				*written = (uint32_t)len, b->bytes_read += len;
			else
				b->bytes_written += len, mark_dirty(b, h.sector * SECTOR, len);
		}
		return 0;
	case T_FLUSH:
		if (!b->read_only && fdatasync(b->fd))
			*status = S_IOERR;
		return 0;
	case T_GET_ID:
		len = b->req.wlen - 1 < ID_LEN ? b->req.wlen - 1 : ID_LEN;
		if (vmm__virtio_scatter(t, &b->req, 0, b->serial, (size_t)len))
			return -1;
		*written = (uint32_t)len;
		return 0;
	}
	*status = S_UNSUPP;
	return 0;
}

static void blk_notify(void *model, struct vmm__virtio *t, uint32_t q)
{
	struct blk *b = model;
	int got;

	while ((got = vmm__virtio_pop(t, q, &b->req)) == 1) {
		uint8_t status;
		uint32_t written;

		if (serve(b, t, &status, &written))
			return;
		b->requests++;
		b->errors += status != S_OK;
		/* The status is the last writable byte, whatever the data's length. */
		if (vmm__virtio_scatter(t, &b->req, b->req.wlen - 1, &status, 1))
			return;
		vmm__virtio_push(t, q, &b->req, written + 1);
	}
}

static uint64_t blk_features(void *model)
{
	const struct blk *b = model;

	return (1ull << BLK_F_SEG_MAX) | (1ull << BLK_F_FLUSH) |
	       (b->read_only ? 1ull << BLK_F_RO : 0);
}

/* struct virtio_blk_config up to seg_max: capacity, size_max (not offered), seg_max. */
static void blk_config_read(void *model, uint32_t off, uint8_t *data, uint32_t size)
{
	const struct blk *b = model;
	uint8_t cfg[16] = { 0 };
	uint32_t seg_max = SEG_MAX;

	memcpy(cfg, &b->capacity, 8);
	memcpy(cfg + 12, &seg_max, 4);
	memcpy(data, cfg + off, size);
}

static int blk_save(void *model, uint8_t **buf, size_t *len)
{
	const struct blk *b = model;
	Vmm__Devices__VirtioBlk m = VMM__DEVICES__VIRTIO_BLK__INIT;

	m.has_capacity = 1, m.capacity = b->capacity;
	m.has_read_only = 1, m.read_only = b->read_only;
	m.has_serial = 1, m.serial.data = (uint8_t *)b->serial, m.serial.len = ID_LEN;
	*len = vmm__devices__virtio_blk__get_packed_size(&m);
	*buf = malloc(*len);
	if (!*buf)
		return vmm__err(VMM_ENOMEM, "virtio-blk state");
	vmm__devices__virtio_blk__pack(&m, *buf);
	return 0;
}

/* The guest saw a disk of this size and mode: the restoring VM must give it the same. */
static int blk_load_check(void *model, const uint8_t *buf, size_t len)
{
	const struct blk *b = model;
	Vmm__Devices__VirtioBlk *m = buf ? vmm__devices__virtio_blk__unpack(NULL, len, buf) : NULL;
	int r = 0;

	if (!m)
		return vmm__err(VMM_ESTATEDATA, "virtio-blk: state missing or does not parse");
	if (m->capacity != b->capacity || !!m->read_only != !!b->read_only)
		r = vmm__err(VMM_ESTATEDATA,
			     "virtio-blk: the guest was saved with a %s disk of %llu sectors, this "
			     "one is %s with %llu",
			     m->read_only ? "read-only" : "writable", (unsigned long long)m->capacity,
			     b->read_only ? "read-only" : "writable",
			     (unsigned long long)b->capacity);
	vmm__devices__virtio_blk__free_unpacked(m, NULL);
	return r;
}

/* Takes the image's lock unless held already. defer_ok: a lock held elsewhere is not an
 * error now (a destination's source still has it); acquire takes it before the start. */
static int take_lock(struct blk *b, int defer_ok)
{
	if (b->locked)
		return 0;
	if (!flock(b->fd, (b->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB)) {
		b->locked = 1;
		return 0;
	}
	if (errno == EWOULDBLOCK)
		return defer_ok ? 0 : vmm__err(VMM_ELOCKED, "disk %s is locked by another process",
					      b->path);
	return vmm__err(VMM_ESYS, "flock disk %s: %s", b->path, strerror(errno));
}

static int blk_acquire(void *model)
{
	return take_lock(model, 0);
}

/* Written data reaches the image before another process may open it for the guest. */
static int blk_release(void *model)
{
	struct blk *b = model;

	if (!b->locked)
		return 0;
	if (!b->read_only && fdatasync(b->fd))
		return vmm__err(VMM_ESYS, "flush disk %s: %s", b->path, strerror(errno));
	flock(b->fd, LOCK_UN);
	b->locked = 0;
	return 0;
}

static void blk_info(void *model, struct vmm_device_info *info)
{
	const struct blk *b = model;

	info->path = b->path;
	info->read_only = (uint32_t)b->read_only;
	info->capacity = b->capacity * SECTOR;
	memcpy(info->serial, b->serial, ID_LEN); /* the rest of the 24 bytes stays 0 */
	info->requests = b->requests;
	info->errors = b->errors;
	info->bytes_read = b->bytes_read;
	info->bytes_written = b->bytes_written;
}

static void blk_destroy(void *model)
{
	struct blk *b = model;

	if (b->fd >= 0)
		close(b->fd); /* drops the lock */
	free(b->dirty);
	pthread_mutex_destroy(&b->dirty_lock);
	free(b->path);
	free(b);
}

static const struct vmm__virtio_model blk_model = {
	.kind = "blk",
	.device_id = 2,
	.nqueues = 1,
	.features = blk_features,
	.config_len = 16,
	.config_read = blk_config_read,
	.notify = blk_notify,
	.save = blk_save,
	.load_check = blk_load_check,
	.destroy = blk_destroy,
	.info = blk_info,
	.release = blk_release,
	.acquire = blk_acquire,
};

static int sys_err(int code, const char *what, const char *path)
{
	return vmm__err(code, "%s disk %s: %s", what, path, strerror(errno));
}

static int blk_open(struct blk *b, const char *path, int defer_lock)
{
	struct stat st;
	uint64_t bytes;
	int r;

	b->fd = open(path, (b->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (b->fd < 0)
		return sys_err(errno == ENOENT ? VMM_ENOENT : VMM_ESYS, "open", path);
	/* Exclusive for a writer; readers may share a read-only image but not with a writer. */
	r = take_lock(b, defer_lock);
	if (r)
		return r;
	if (fstat(b->fd, &st))
		return sys_err(VMM_ESYS, "fstat", path);
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(b->fd, BLKGETSIZE64, &bytes))
			return sys_err(VMM_ESYS, "BLKGETSIZE64", path);
	} else if (S_ISREG(st.st_mode)) {
		bytes = (uint64_t)st.st_size;
	} else {
		return vmm__err(VMM_EINVAL, "disk %s is neither a file nor a block device", path);
	}
	if (bytes < SECTOR)
		return vmm__err(VMM_EINVAL, "disk %s is smaller than one sector", path);
	/* A partial last sector is left out: the guest addresses whole sectors. */
	b->capacity = bytes / SECTOR;
	return 0;
}

int vmm__virtio_blk_create(const struct vmm__device_host *host, uint32_t slot, const char *path,
			   int read_only, const char *serial, int defer_lock)
{
	struct blk *b = calloc(1, sizeof(*b));
	char id[ID_LEN + 1];
	int r;

	if (!b)
		return vmm__err(VMM_ENOMEM, "virtio-blk");
	b->read_only = !!read_only;
	pthread_mutex_init(&b->dirty_lock, NULL);
	b->path = strdup(path);
	r = b->path ? blk_open(b, path, defer_lock) : vmm__err(VMM_ENOMEM, "virtio-blk");
	if (r) {
		blk_destroy(b);
		return r;
	}
	if (serial)
		snprintf(id, sizeof(id), "%s", serial);
	else
		snprintf(id, sizeof(id), "libvmm-disk%u", slot);
	memcpy(b->serial, id, strnlen(id, ID_LEN)); /* zero-padded, not terminated at 20 */
	return vmm__virtio_create(host, slot, &blk_model, b);
}

/* ---- the image as a migration copies it (virtio_blk.h) */

void *vmm__virtio_blk_of(struct vmm__virtio *t)
{
	return t ? vmm__virtio_model_of(t, &blk_model) : NULL;
}

int vmm__blk_fd(const void *blk)
{
	return ((const struct blk *)blk)->fd;
}

uint64_t vmm__blk_bytes(const void *blk)
{
	return ((const struct blk *)blk)->capacity * SECTOR;
}

int vmm__blk_read_only(const void *blk)
{
	return ((const struct blk *)blk)->read_only;
}

const char *vmm__blk_path(const void *blk)
{
	return ((const struct blk *)blk)->path;
}

uint64_t vmm__blk_dirty_blocks(const void *blk)
{
	return (vmm__blk_bytes(blk) + VMM_BLK_DIRTY_BLOCK - 1) / VMM_BLK_DIRTY_BLOCK;
}

int vmm__blk_track(void *blk, int on)
{
	struct blk *b = blk;
	uint64_t *map = NULL;

	if (on) {
		map = calloc((vmm__blk_dirty_blocks(b) + 63) / 64, 8);
		if (!map)
			return vmm__err(VMM_ENOMEM, "dirty bitmap of disk %s", b->path);
	}
	pthread_mutex_lock(&b->dirty_lock);
	free(b->dirty);
	b->dirty = map;
	pthread_mutex_unlock(&b->dirty_lock);
	return 0;
}

uint64_t vmm__blk_take_dirty(void *blk, uint64_t *out)
{
	struct blk *b = blk;
	uint64_t words = (vmm__blk_dirty_blocks(b) + 63) / 64, n = 0;

	pthread_mutex_lock(&b->dirty_lock);
	if (b->dirty) {
		memcpy(out, b->dirty, words * 8);
		memset(b->dirty, 0, words * 8);
	} else {
		memset(out, 0, words * 8);
	}
	pthread_mutex_unlock(&b->dirty_lock);
	for (uint64_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(out[i]);
	return n;
}

uint64_t vmm__blk_dirty_count(void *blk)
{
	struct blk *b = blk;
	uint64_t words = (vmm__blk_dirty_blocks(b) + 63) / 64, n = 0;

	pthread_mutex_lock(&b->dirty_lock);
	for (uint64_t i = 0; b->dirty && i < words; i++)
		n += (uint64_t)__builtin_popcountll(b->dirty[i]);
	pthread_mutex_unlock(&b->dirty_lock);
	return n;
}
