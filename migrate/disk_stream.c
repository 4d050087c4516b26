/* Disk images in the migration stream (disk_stream.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libvmm/devices/virtio_blk.h"
#include "libvmm/error_internal.h"
#include "libvmm/vm_move.h"
#include "migrate/disk_stream.h"
#include "migrate/stream.h"
#include "migrate/xport.h"

#include <xxhash.h>

#define MAX_DISKS 8 /* the virtio slots */
/* Data per record: below the stream's small-record bound (VMM_REC_SMALL_MAX), a multiple
 * of the dirty block. */
#define CHUNK (512 * 1024u)

enum { K_LAYOUT = 1, K_DATA = 2, K_HOLE = 3 };

struct disk_rec {
	uint32_t kind;
	uint32_t disk; /* K_LAYOUT: how many disks */
	uint64_t off;
	uint64_t len;  /* K_DATA: bytes following; K_HOLE: the hole's length */
};

struct layout_disk {
	uint64_t bytes;
	uint64_t dev, ino; /* the source's image, to refuse a copy onto itself */
};

struct layout {
	uint8_t boot_id[40];
	struct layout_disk d[MAX_DISKS];
};

struct vmm__disk_tx {
	unsigned n;
	void *blk[MAX_DISKS];
	uint64_t *map;  /* a take, sized for the largest disk */
	uint64_t bytes; /* data sent */
	uint8_t buf[CHUNK];
};

struct vmm__disk_rx {
	int restore;
	unsigned n;
	void *blk[MAX_DISKS];
	int have_layout;
	uint8_t buf[CHUNK];
};

/* This boot of this host: two VMMs that see the same one share the file system. */
static void boot_id(uint8_t out[40])
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	memset(out, 0, 40);
	if (f) {
		if (!fgets((char *)out, 40, f))
			memset(out, 0, 40);
		fclose(f);
	}
}

int vmm__disk_tx_new(struct vmm_vm *vm, struct vmm__disk_tx **out)
{
	struct vmm__disk_tx *tx = calloc(1, sizeof(*tx));
	uint64_t words = 1;
	int r = 0;

	*out = NULL;
	if (!tx)
		return vmm__err(VMM_ENOMEM, "disk stream");
	tx->n = vmm__move_disks(vm, tx->blk, MAX_DISKS);
	for (unsigned i = 0; i < tx->n; i++) {
		uint64_t w = (vmm__blk_dirty_blocks(tx->blk[i]) + 63) / 64;

		words = w > words ? w : words;
	}
	tx->map = calloc(words, 8);
	if (!tx->map)
		r = vmm__err(VMM_ENOMEM, "disk stream bitmap");
	/* Before round 0 reads anything: a write during it is copied again later. */
	for (unsigned i = 0; i < tx->n && !r; i++)
		r = vmm__blk_track(tx->blk[i], 1);
	if (r) {
		vmm__disk_tx_free(tx);
		return r;
	}
	*out = tx;
	return 0;
}

void vmm__disk_tx_free(struct vmm__disk_tx *tx)
{
	if (!tx)
		return;
	for (unsigned i = 0; i < tx->n; i++)
		vmm__blk_track(tx->blk[i], 0);
	free(tx->map);
	free(tx);
}

uint64_t vmm__disk_tx_bytes(const struct vmm__disk_tx *tx)
{
	return tx ? tx->bytes : 0;
}

uint64_t vmm__disk_tx_pending_bytes(struct vmm__disk_tx *tx)
{
	uint64_t n = 0;

	for (unsigned i = 0; tx && i < tx->n; i++)
		n += vmm__blk_dirty_count(tx->blk[i]) * VMM_BLK_DIRTY_BLOCK;
	return n;
}

int vmm__disk_tx_layout(struct vmm__disk_tx *tx, struct vmm__xport *xp)
{
	uint8_t rec[sizeof(struct disk_rec) + sizeof(struct layout)];
	struct disk_rec h = { .kind = K_LAYOUT, .disk = tx->n };
	struct layout l;

	memset(&l, 0, sizeof(l));
	boot_id(l.boot_id);
	for (unsigned i = 0; i < tx->n; i++) {
		struct stat st;

		l.d[i].bytes = vmm__blk_bytes(tx->blk[i]);
		if (!fstat(vmm__blk_fd(tx->blk[i]), &st))
			l.d[i].dev = st.st_dev, l.d[i].ino = st.st_ino;
	}
	memcpy(rec, &h, sizeof(h));
	memcpy(rec + sizeof(h), &l, sizeof(l));
	return vmm__stream_write_rec(xp, VMM_REC_DISK, rec, sizeof(rec));
}

static int all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

static int send_hole(struct vmm__xport *xp, unsigned disk, uint64_t off, uint64_t len)
{
	struct disk_rec h = { .kind = K_HOLE, .disk = disk, .off = off, .len = len };

	return len ? vmm__stream_write_rec(xp, VMM_REC_DISK, &h, sizeof(h)) : 0;
}

/* [off, off + len) of disk i, read now, as data or (all zero) hole records. */
static int send_range(struct vmm__disk_tx *tx, struct vmm__xport *xp, unsigned i, uint64_t off,
		      uint64_t len)
{
	int fd = vmm__blk_fd(tx->blk[i]);

	while (len) {
		size_t n = len < CHUNK - sizeof(struct disk_rec) ? (size_t)len :
								    CHUNK - sizeof(struct disk_rec);
		struct disk_rec h = { .kind = K_DATA, .disk = i, .off = off, .len = n };
		uint8_t *data = tx->buf + sizeof(h);
		ssize_t got = pread(fd, data, n, (off_t)off);
		int r;

		if (got < 0 && errno == EINTR)
			continue;
		if (got != (ssize_t)n)
			return vmm__err(VMM_EIO, "read disk %s at %llu: %s", vmm__blk_path(tx->blk[i]),
					(unsigned long long)off, got < 0 ? strerror(errno) : "short");
		if (all_zero(data, n)) {
			r = send_hole(xp, i, off, n);
		} else {
			memcpy(tx->buf, &h, sizeof(h));
			r = vmm__stream_write_rec(xp, VMM_REC_DISK, tx->buf, sizeof(h) + n);
			tx->bytes += n;
		}
		if (r)
			return r;
		off += n, len -= n;
	}
	return 0;
}

/* Round 0: the extents with data, and the holes between them as holes. A file system
 * without SEEK_DATA (or a block device) is one extent. */
static int send_all(struct vmm__disk_tx *tx, struct vmm__xport *xp, unsigned i)
{
	int fd = vmm__blk_fd(tx->blk[i]);
	uint64_t size = vmm__blk_bytes(tx->blk[i]), off = 0;
	int r = 0;

	while (off < size && !r) {
		off_t data = lseek(fd, (off_t)off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO) /* no data past off */
			return send_hole(xp, i, off, size - off);
		if (data < 0)
			return send_range(tx, xp, i, off, size - off);
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > size)
			hole = (off_t)size;
		if ((uint64_t)data > size)
			data = (off_t)size;
		r = send_hole(xp, i, off, (uint64_t)data - off);
		if (!r)
			r = send_range(tx, xp, i, (uint64_t)data, (uint64_t)(hole - data));
		off = (uint64_t)hole;
	}
	return r;
}

int vmm__disk_tx_round(struct vmm__disk_tx *tx, struct vmm__xport *xp, int first)
{
	int r = 0;

	for (unsigned i = 0; i < tx->n && !r; i++) {
		uint64_t nb = vmm__blk_dirty_blocks(tx->blk[i]), size = vmm__blk_bytes(tx->blk[i]);

		if (first) {
			r = send_all(tx, xp, i);
			continue;
		}
		vmm__blk_take_dirty(tx->blk[i], tx->map);
		for (uint64_t k = 0; k < nb && !r;) {
			uint64_t e;

			if (!(tx->map[k / 64] & (1ull << (k % 64)))) {
				k++;
				continue;
			}
			for (e = k; e < nb && (tx->map[e / 64] & (1ull << (e % 64))); e++)
				;
			{
				uint64_t off = k * VMM_BLK_DIRTY_BLOCK, end = e * VMM_BLK_DIRTY_BLOCK;

				r = send_range(tx, xp, i, off, (end > size ? size : end) - off);
			}
			k = e;
		}
	}
	return r;
}

/* ---- destination */

int vmm__disk_rx_new(struct vmm_vm *vm, int restore, struct vmm__disk_rx **out)
{
	struct vmm__disk_rx *rx = calloc(1, sizeof(*rx));

	*out = rx;
	if (!rx)
		return vmm__err(VMM_ENOMEM, "disk stream");
	rx->restore = restore;
	rx->n = vmm__move_disks(vm, rx->blk, MAX_DISKS);
	return 0;
}

void vmm__disk_rx_free(struct vmm__disk_rx *rx)
{
	free(rx);
}

static int check_layout(struct vmm__disk_rx *rx, const struct disk_rec *h, const struct layout *l)
{
	uint8_t id[40];

	if (h->disk != rx->n)
		return vmm__err(VMM_ESHAPE, "the source copies %u disk(s), this VM has %u", h->disk,
				rx->n);
	boot_id(id);
	for (unsigned i = 0; i < rx->n; i++) {
		struct stat st;
		uint64_t bytes = vmm__blk_bytes(rx->blk[i]);

		if (l->d[i].bytes != bytes)
			return vmm__err(VMM_ESHAPE, "disk %u: the source's image has %llu bytes, %s "
					"has %llu (give the VM an image of the same size)", i,
					(unsigned long long)l->d[i].bytes, vmm__blk_path(rx->blk[i]),
					(unsigned long long)bytes);
		if (vmm__blk_read_only(rx->blk[i]))
			return vmm__err(VMM_EINVAL, "disk %u: %s is read-only, the copy cannot be "
					"written into it", i, vmm__blk_path(rx->blk[i]));
		/* The copy would read and write one file: each round's blocks land where the
		 * source reads them, and a failure leaves the source a torn image. Shared
		 * storage is the other mode (no copy, the lock moves). */
		if (!rx->restore && id[0] && !memcmp(id, l->boot_id, sizeof(id)) &&
		    !fstat(vmm__blk_fd(rx->blk[i]), &st) && st.st_dev == l->d[i].dev &&
		    st.st_ino == l->d[i].ino)
			return vmm__err(VMM_EINVAL, "disk %u: %s is the source's own image on this "
					"host: copying disks needs an image of its own (or migrate "
					"without copying, as shared storage)", i,
					vmm__blk_path(rx->blk[i]));
	}
	rx->have_layout = 1;
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w, n -= (size_t)w, off += (uint64_t)w;
	}
	return 0;
}

/* A hole is punched (the image stays sparse); where the file system cannot, zeros. */
static int punch(struct vmm__disk_rx *rx, int fd, uint64_t off, uint64_t len)
{
	if (!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return 0;
	memset(rx->buf, 0, CHUNK);
	while (len) {
		size_t n = len < CHUNK ? (size_t)len : CHUNK;

		if (write_all(fd, rx->buf, n, off))
			return -1;
		off += n, len -= n;
	}
	return 0;
}

int vmm__disk_rx_apply(struct vmm__disk_rx *rx, struct vmm__xport *xp, uint32_t len)
{
	struct disk_rec h;
	uint64_t size;
	int fd, r;

	if (len < sizeof(h) || len > CHUNK)
		return vmm__err(VMM_EPROTO, "disk record of %u bytes", len);
	r = vmm__xport_read(xp, rx->buf, len);
	if (r)
		return r;
	memcpy(&h, rx->buf, sizeof(h));
	if (h.kind == K_LAYOUT) {
		struct layout l;

		if (rx->have_layout || len != sizeof(h) + sizeof(l) || h.disk > MAX_DISKS)
			return vmm__err(VMM_EPROTO, "bad disk layout record");
		memcpy(&l, rx->buf + sizeof(h), sizeof(l));
		return check_layout(rx, &h, &l);
	}
	if (!rx->have_layout || h.disk >= rx->n)
		return vmm__err(VMM_EPROTO, "disk record before the layout or for no disk (%u)",
				h.disk);
	size = vmm__blk_bytes(rx->blk[h.disk]);
	if ((h.kind != K_DATA && h.kind != K_HOLE) ||
	    (h.kind == K_DATA && h.len != len - sizeof(h)) || h.off > size || h.len > size - h.off)
		return vmm__err(VMM_EPROTO, "bad disk record (kind %u, %llu bytes at %llu)", h.kind,
				(unsigned long long)h.len, (unsigned long long)h.off);
	fd = vmm__blk_fd(rx->blk[h.disk]);
	if (h.kind == K_DATA ? write_all(fd, rx->buf + sizeof(h), (size_t)h.len, h.off) :
			       punch(rx, fd, h.off, h.len))
		return vmm__err(errno == ENOSPC ? VMM_ENOSPC : VMM_EIO, "write disk %s at %llu: %s",
				vmm__blk_path(rx->blk[h.disk]), (unsigned long long)h.off,
				strerror(errno));
	return 0;
}

int vmm__disk_rx_finish(struct vmm__disk_rx *rx)
{
	if (!rx->have_layout)
		return vmm__err(VMM_EPROTO, "the source announced its disks but sent none");
	for (unsigned i = 0; i < rx->n; i++)
		if (fdatasync(vmm__blk_fd(rx->blk[i])))
			return vmm__err(VMM_EIO, "flush disk %s: %s", vmm__blk_path(rx->blk[i]),
					strerror(errno));
	return 0;
}

/* ---- a snapshot file's disk section */

static int hash_range(int fd, uint64_t off, uint64_t len, uint64_t *hash)
{
	XXH3_state_t *st = XXH3_createState();
	uint8_t *buf = malloc(CHUNK);
	int r = st && buf ? 0 : vmm__err(VMM_ENOMEM, "disk section hash");

	if (!r)
		XXH3_64bits_reset(st);
	while (!r && len) {
		size_t n = len < CHUNK ? (size_t)len : CHUNK;
		ssize_t got = pread(fd, buf, n, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			r = vmm__err(got < 0 ? VMM_EIO : VMM_ETRUNCATED, "disk section at %llu: %s",
				     (unsigned long long)off, got < 0 ? strerror(errno) : "ends early");
			break;
		}
		XXH3_64bits_update(st, buf, (size_t)got);
		off += (uint64_t)got, len -= (uint64_t)got;
	}
	if (!r)
		*hash = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	free(buf);
	return r;
}

int vmm__disk_section_write(struct vmm_vm *vm, struct vmm__xport *xp, int fd, uint64_t off,
			    uint64_t *len, uint64_t *hash)
{
	struct vmm__disk_tx *tx;
	int r = vmm__disk_tx_new(vm, &tx);

	vmm__xport_seek(xp, off);
	if (!r)
		r = vmm__disk_tx_layout(tx, xp);
	if (!r)
		r = vmm__disk_tx_round(tx, xp, 1);
	if (!r)
		r = vmm__stream_write_rec(xp, VMM_REC_END, NULL, 0);
	vmm__disk_tx_free(tx);
	if (!r) {
		*len = vmm__xport_offset(xp) - off;
		r = hash_range(fd, off, *len, hash);
	}
	return r;
}

int vmm__disk_section_restore(struct vmm_vm *vm, int fd, uint64_t off, uint64_t len,
			      uint64_t hash)
{
	struct vmm__xport_opts o = { .is_file = 1 };
	struct vmm__xport *xp = NULL;
	struct vmm__disk_rx *rx = NULL;
	struct vmm__rec_hdr h;
	uint64_t got;
	int r = hash_range(fd, off, len, &got);

	/* Checked whole before a byte goes into an image. */
	if (r == VMM_ETRUNCATED || (!r && got != hash))
		return vmm__err(VMM_ECORRUPT, "the snapshot's disk section is damaged (%s): no "
				"image was written", r ? "it ends early" : "checksum mismatch");
	if (!r)
		r = vmm__disk_rx_new(vm, 1, &rx);
	if (!r)
		r = vmm__xport_new(fd, &o, &xp);
	if (!r)
		vmm__xport_seek(xp, off);
	while (!r) {
		r = vmm__stream_read_hdr(xp, &h);
		if (r || h.type == VMM_REC_END)
			break;
		r = h.type == VMM_REC_DISK ? vmm__disk_rx_apply(rx, xp, h.len) :
			vmm__err(VMM_ECORRUPT, "unexpected %s record in the disk section",
				 vmm__rec_name(h.type));
	}
	if (!r && vmm__xport_offset(xp) != off + len)
		r = vmm__err(VMM_ECORRUPT, "the disk section ends at %llu, not %llu",
			     (unsigned long long)vmm__xport_offset(xp),
			     (unsigned long long)(off + len));
	if (!r)
		r = vmm__disk_rx_finish(rx);
	if (r == VMM_EPROTO || r == VMM_ETRUNCATED)
		r = vmm__err(VMM_ECORRUPT, "disk section: %s", vmm_last_error());
	vmm__xport_free(xp);
	vmm__disk_rx_free(rx);
	return r;
}
