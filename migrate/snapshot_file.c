/* Opening and checking snapshot files; reading and verifying their RAM section. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "libvmm/bitmap.h"
#include "libvmm/error_internal.h"
#include "vmm/version.h"
#include "libvmm/memory.h"
#include "migrate/ram.h"
#include "migrate/snapshot_crypt.h"
#include "migrate/snapshot_file.h"
#include "migrate/stream.h"
#include "migrate/vm_shape.h"
#include "migrate/xport.h"

#define READ_CHUNK (8u << 20)

void vmm__snap_seal(struct vmm__snap_preamble *p, struct vmm__snap_trailer *t)
{
	memcpy(p->magic, VMM_SNAP_MAGIC, 8);
	p->major = VMM_STREAM_MAJOR;
	p->minor = VMM_STREAM_MINOR;
	p->preamble_len = sizeof(*p);
	p->preamble_hash = XXH3_64bits(p, offsetof(struct vmm__snap_preamble, preamble_hash));
	memcpy(t->magic, VMM_SNAP_TRAILER_MAGIC, 8);
	t->file_len = p->file_len;
	t->preamble_hash = p->preamble_hash;
	t->trailer_hash = XXH3_64bits(t, offsetof(struct vmm__snap_trailer, trailer_hash));
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off, const char *what)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vmm__err_sys(VMM_EIO, what);
		if (n == 0)
			return vmm__err(VMM_ETRUNCATED, "%s: file ends at %llu", what,
					(unsigned long long)(off + done));
		done += (size_t)n;
	}
	return 0;
}

/* Guest RAM's memfd is ours and in memory: a short write means no memory left. */
static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off, const char *what)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 && errno != ENOSPC ? vmm__err_sys(VMM_ESYS, what)
						      : vmm__err(VMM_ENOMEM, "%s: no memory left", what);
		done += (size_t)n;
	}
	return 0;
}

/* A file that is not a plain snapshot: an encrypted one needs its key first. */
static int bad_magic(const char *magic)
{
	if (!memcmp(magic, VMM_SNAP_ENC_MAGIC, 8))
		return vmm__err(VMM_EKEY, "encrypted snapshot: give its key to read it");
	return vmm__err(VMM_EMAGIC, "not a libvmm snapshot (magic)");
}

static int check_preamble(struct vmm__snap *s)
{
	const struct vmm__snap_preamble *p = &s->pre;
	uint64_t unknown = p->required_features & ~VMM_FEAT_KNOWN;
	uint64_t end;

	if (memcmp(p->magic, VMM_SNAP_MAGIC, 8))
		return bad_magic(p->magic);
	if (p->major > VMM_STREAM_MAJOR || p->major < VMM_STREAM_MAJOR_MIN)
		return vmm__err(VMM_EVERSION, "snapshot format %u.%u, this library reads %u.x-%u.x",
				p->major, p->minor, VMM_STREAM_MAJOR_MIN, VMM_STREAM_MAJOR);
	if (p->preamble_hash != XXH3_64bits(p, offsetof(struct vmm__snap_preamble, preamble_hash)))
		return vmm__err(VMM_ECORRUPT, "preamble checksum mismatch");
	if (unknown)
		return vmm__err(VMM_EFEATURE, "snapshot requires feature bits 0x%llx unknown to libvmm %s",
				(unsigned long long)unknown, vmm_version_string());
	if (!(p->required_features & (VMM_FEAT_RAM_IMAGE | VMM_FEAT_RAM_BATCHES)))
		return vmm__err(VMM_ECORRUPT, "preamble names no RAM layout");
	if (s->file_size < p->file_len)
		return vmm__err(VMM_ETRUNCATED, "file has %llu of its %llu bytes",
				(unsigned long long)s->file_size, (unsigned long long)p->file_len);
	if (s->file_size > p->file_len)
		return vmm__err(VMM_ECORRUPT, "%llu bytes after the end of the snapshot",
				(unsigned long long)(s->file_size - p->file_len));
	/* Sections in order, inside the file, not overflowing. */
	end = p->ram_off + p->ram_len;
	if (p->ram_off != VMM_SNAP_RAM_OFFSET || end < p->ram_off ||
	    (p->hashes_len && (p->hashes_off < end || p->hashes_off + p->hashes_len < p->hashes_off)) ||
	    p->meta_off < (p->hashes_len ? p->hashes_off + p->hashes_len : end) ||
	    p->meta_len > VMM_SNAP_META_MAX || p->meta_off + p->meta_len < p->meta_off ||
	    p->meta_off + p->meta_len + sizeof(struct vmm__snap_trailer) != p->file_len)
		return vmm__err(VMM_ECORRUPT, "section offsets inconsistent");
	return 0;
}

static int check_trailer(struct vmm__snap *s)
{
	struct vmm__snap_trailer t;
	int r = pread_all(s->fd, &t, sizeof(t), s->pre.file_len - sizeof(t), "trailer");

	if (r)
		return r;
	if (memcmp(t.magic, VMM_SNAP_TRAILER_MAGIC, 8) ||
	    t.trailer_hash != XXH3_64bits(&t, offsetof(struct vmm__snap_trailer, trailer_hash)) ||
	    t.file_len != s->pre.file_len || t.preamble_hash != s->pre.preamble_hash)
		return vmm__err(VMM_ECORRUPT, "trailer damaged or from another file");
	return 0;
}

static int read_meta(struct vmm__snap *s)
{
	uint8_t *buf = malloc(s->pre.meta_len ? s->pre.meta_len : 1);
	int r;

	if (!buf)
		return vmm__err(VMM_ENOMEM, "snapshot metadata");
	r = pread_all(s->fd, buf, s->pre.meta_len, s->pre.meta_off, "metadata");
	if (!r && XXH3_64bits(buf, s->pre.meta_len) != s->pre.meta_hash)
		r = vmm__err(VMM_ECORRUPT, "metadata checksum mismatch");
	if (!r) {
		s->meta = vmm__stream__snapshot_meta__unpack(NULL, s->pre.meta_len, buf);
		if (!s->meta)
			r = vmm__err(VMM_ECORRUPT, "metadata does not parse");
	}
	free(buf);
	if (r)
		return r;
	if (!s->meta->hello || !s->meta->has_machine_state)
		return vmm__err(VMM_ECORRUPT, "metadata lacks the shape or the machine state");
	r = vmm__hello_check(s->meta->hello);
	if (r)
		return r;
	if (s->meta->hello->required_features != s->pre.required_features)
		return vmm__err(VMM_ECORRUPT, "preamble and metadata disagree on features");
	if ((s->pre.required_features & VMM_FEAT_RAM_IMAGE) &&
	    (s->pre.ram_len != s->meta->hello->shape->mem_size ||
	     s->pre.hashes_len != s->pre.ram_len / VMM_PAGE_SIZE * 8))
		return vmm__err(VMM_ECORRUPT, "RAM image size does not match the VM");
	return 0;
}

int vmm__snap_open(const char *path, struct vmm__snap *s)
{
	struct stat st;
	int r;

	memset(s, 0, sizeof(*s));
	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0)
		return vmm__err_sys(errno == ENOENT ? VMM_ENOENT : VMM_EIO, path);
	if (fstat(s->fd, &st) < 0) {
		r = vmm__err_sys(VMM_EIO, path);
		goto fail;
	}
	s->file_size = (uint64_t)st.st_size;
	if (s->file_size < sizeof(s->pre)) {
		r = s->file_size >= 8 ? 0 : vmm__err(VMM_ETRUNCATED, "%s: %llu bytes", path,
						     (unsigned long long)s->file_size);
		if (!r) {
			char magic[8];

			r = pread_all(s->fd, magic, 8, 0, "preamble");
			if (!r)
				r = memcmp(magic, VMM_SNAP_MAGIC, 8)
					    ? bad_magic(magic)
					    : vmm__err(VMM_ETRUNCATED, "file ends inside the preamble");
		}
		goto fail;
	}
	r = pread_all(s->fd, &s->pre, sizeof(s->pre), 0, "preamble");
	if (!r)
		r = check_preamble(s);
	if (!r)
		r = check_trailer(s);
	if (!r)
		r = read_meta(s);
	if (!r)
		return 0;
fail:
	vmm__snap_close(s);
	return r;
}

void vmm__snap_close(struct vmm__snap *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	vmm__stream__snapshot_meta__free_unpacked(s->meta, NULL);
	s->meta = NULL;
}

/* Reads one data extent of the image, hashing every page against the table. */
static int read_extent(struct vmm__snap *s, struct vmm__xport *xp, uint8_t *ram, uint8_t *scratch,
		       const uint64_t *hashes, uint64_t from, uint64_t to)
{
	while (from < to) {
		uint64_t n = to - from < READ_CHUNK ? to - from : READ_CHUNK;
		uint8_t *dst = ram ? ram + from : scratch;
		int r;

		vmm__xport_seek(xp, s->pre.ram_off + from);
		r = vmm__xport_read(xp, dst, n);
		if (r)
			return r;
		for (uint64_t off = 0; off < n; off += VMM_PAGE_SIZE) {
			uint64_t page = (from + off) / VMM_PAGE_SIZE;

			if (XXH3_64bits(dst + off, VMM_PAGE_SIZE) != hashes[page])
				return vmm__err(VMM_ECORRUPT, "RAM page %llu checksum mismatch",
						(unsigned long long)page);
		}
		from += n;
	}
	return 0;
}

/* The next data extent of the RAM image at or after pos, page-aligned, relative to the
 * RAM section; from == to == ram_len when there is none. */
static void next_extent(const struct vmm__snap *s, uint64_t pos, uint64_t *from, uint64_t *to)
{
	off_t d = lseek(s->fd, (off_t)(s->pre.ram_off + pos), SEEK_DATA), h;

	if (d < 0 || (uint64_t)d >= s->pre.ram_off + s->pre.ram_len) {
		*from = *to = s->pre.ram_len;
		return;
	}
	h = lseek(s->fd, d, SEEK_HOLE);
	*from = ((uint64_t)d - s->pre.ram_off) & ~(VMM_PAGE_SIZE - 1);
	*to = h < 0 ? s->pre.ram_len : (uint64_t)h - s->pre.ram_off;
	*to = (*to + VMM_PAGE_SIZE - 1) & ~(VMM_PAGE_SIZE - 1);
	if (*to > s->pre.ram_len)
		*to = s->pre.ram_len;
}

static int hole_is_zero(const uint64_t *hashes, uint64_t zero_hash, uint64_t p)
{
	if (hashes[p] == zero_hash)
		return 0;
	return vmm__err(VMM_ECORRUPT, "RAM page %llu missing (a hole)", (unsigned long long)p);
}

/* Verify only: every extent through one scratch buffer. */
static int verify_image(struct vmm__snap *s, const uint64_t *hashes, uint64_t zero_hash)
{
	struct vmm__xport_opts o = { .is_file = 1 };
	struct vmm__xport *xp = NULL;
	uint8_t *scratch = malloc(READ_CHUNK);
	uint64_t covered = 0, from, to;
	int r = scratch ? vmm__xport_new(s->fd, &o, &xp) : vmm__err(VMM_ENOMEM, "read buffer");

	for (uint64_t pos = 0; !r && pos < s->pre.ram_len; pos = to) {
		next_extent(s, pos, &from, &to);
		for (uint64_t p = covered; p < from / VMM_PAGE_SIZE && !r; p++)
			r = hole_is_zero(hashes, zero_hash, p);
		if (!r && from < to)
			r = read_extent(s, xp, NULL, scratch, hashes, from, to);
		covered = to / VMM_PAGE_SIZE;
	}
	vmm__xport_free(xp);
	free(scratch);
	return r;
}

/* Eager restore. Each data extent is read (O_DIRECT where the file system allows: the
 * page cache copy cost more than the disk) into a small bounce buffer, every page checked
 * against its hash there, while it is hot in the cache, and written into guest RAM with
 * pwrite() on the memfd. Reading straight into guest RAM instead made the kernel zero each
 * fresh page before the read overwrote it, and the hash pass then touched every page of
 * RAM a second time: measured on a KVM-PVM host, that pass alone cost twice the disk read
 * (first CPU access to each fresh page; tests/bench/snapshot_restore_bench). A write into
 * a memfd fills a fresh page without zeroing it. Two bounce batches alternate, so the
 * reads of one are in flight while the other is checked and copied. */
#define BOUNCE_IO (1u << 20)                 /* one read */
#define BOUNCE_BATCH (8u << 20)              /* reads in flight per batch */
#define BOUNCE_PIECES (BOUNCE_BATCH / BOUNCE_IO)

struct bounce {
	struct vmm__xport *xp;
	uint8_t *buf;
	uint64_t off[BOUNCE_PIECES], len[BOUNCE_PIECES]; /* RAM offset and length of each read */
	unsigned n;
};

struct extent_cursor {
	struct vmm__snap *s;
	uint64_t pos, to; /* the unread part of the current extent: [pos, to) */
	uint64_t *present;
};

/* Queues the next reads (up to one batch) into b; b->n = 0 when the image is read. */
static int bounce_fill(struct bounce *b, struct extent_cursor *c)
{
	uint64_t used = 0;
	int r = 0;

	b->n = 0;
	while (!r && b->n < BOUNCE_PIECES && used < BOUNCE_BATCH) {
		uint64_t n;
		struct iovec iov;

		if (c->pos == c->to) {
			next_extent(c->s, c->to, &c->pos, &c->to);
			if (c->pos == c->to)
				break;
			vmm__bitmap_set_range(c->present, c->pos / VMM_PAGE_SIZE,
					      (c->to - c->pos) / VMM_PAGE_SIZE);
		}
		n = c->to - c->pos;
		if (n > BOUNCE_IO)
			n = BOUNCE_IO;
		if (n > BOUNCE_BATCH - used)
			n = BOUNCE_BATCH - used;
		iov = (struct iovec){ b->buf + used, n };
		r = vmm__xport_preadv_queued(b->xp, c->s->pre.ram_off + c->pos, &iov, 1);
		b->off[b->n] = c->pos;
		b->len[b->n++] = n;
		c->pos += n;
		used += n;
	}
	return r;
}

/* Waits for b's reads, checks every page, and writes them into RAM. */
static int bounce_apply(struct bounce *b, const struct vmm__memory *mem, const uint64_t *hashes)
{
	uint8_t *src = b->buf;
	int r = vmm__xport_drain(b->xp);

	for (unsigned i = 0; !r && i < b->n; src += b->len[i++]) {
		for (uint64_t o = 0; o < b->len[i]; o += VMM_PAGE_SIZE) {
			uint64_t page = (b->off[i] + o) / VMM_PAGE_SIZE;

			if (XXH3_64bits(src + o, VMM_PAGE_SIZE) != hashes[page])
				return vmm__err(VMM_ECORRUPT, "RAM page %llu checksum mismatch",
						(unsigned long long)page);
		}
		if (mem->memfd < 0)
			memcpy(mem->host + b->off[i], src, b->len[i]);
		else
			r = pwrite_all(mem->memfd, src, b->len[i], b->off[i], "guest RAM");
	}
	return r;
}

static int load_image(struct vmm__snap *s, const struct vmm__memory *mem, const uint64_t *hashes,
		      uint64_t zero_hash)
{
	uint64_t npages = s->pre.ram_len / VMM_PAGE_SIZE;
	struct extent_cursor c = { .s = s, .present = calloc(vmm__bitmap_words(npages), 8) };
	struct vmm__xport_opts o = { .is_file = 1 };
	struct bounce b[2] = { 0 };
	char self[64];
	int dfd, r = c.present ? 0 : vmm__err(VMM_ENOMEM, "page bitmap");

	/* Opening the file checked ram_len against the VM's shape; a pwrite past the end
	 * would grow the memfd, so say it again where it matters. */
	if (s->pre.ram_len > mem->size) {
		free(c.present);
		return vmm__err(VMM_EINVAL, "RAM image of %llu bytes for %llu bytes of RAM",
				(unsigned long long)s->pre.ram_len, (unsigned long long)mem->size);
	}

	snprintf(self, sizeof(self), "/proc/self/fd/%d", s->fd);
	dfd = open(self, O_RDONLY | O_DIRECT | O_CLOEXEC);
	for (int i = 0; i < 2 && !r; i++) {
		r = vmm__xport_new(dfd >= 0 ? dfd : s->fd, &o, &b[i].xp);
		if (!r && posix_memalign((void **)&b[i].buf, VMM_PAGE_SIZE, BOUNCE_BATCH))
			r = vmm__err(VMM_ENOMEM, "read buffer");
	}
	for (int i = 0; i < 2 && !r; i++)
		r = bounce_fill(&b[i], &c);
	for (int i = 0; !r && b[i].n; i ^= 1) {
		r = bounce_apply(&b[i], mem, hashes);
		if (!r)
			r = bounce_fill(&b[i], &c);
	}
	for (uint64_t p = 0; !r && p < npages; p++)
		if (!vmm__bitmap_test(c.present, p))
			r = hole_is_zero(hashes, zero_hash, p);
	for (int i = 0; i < 2; i++) {
		vmm__xport_free(b[i].xp); /* waits for its reads before the buffer goes */
		free(b[i].buf);
	}
	if (dfd >= 0)
		close(dfd);
	free(c.present);
	return r;
}

int vmm__snap_read_hashes(struct vmm__snap *s, uint64_t **out)
{
	uint64_t *hashes;
	int r;

	*out = NULL;
	if (!(s->pre.required_features & VMM_FEAT_RAM_IMAGE) || !s->pre.hashes_len)
		return vmm__err(VMM_EINVAL, "the snapshot has no page hash table");
	hashes = malloc(s->pre.hashes_len);
	if (!hashes)
		return vmm__err(VMM_ENOMEM, "page hashes");
	r = pread_all(s->fd, hashes, s->pre.hashes_len, s->pre.hashes_off, "page hashes");
	if (!r && XXH3_64bits(hashes, s->pre.hashes_len) != s->pre.hashes_hash)
		r = vmm__err(VMM_ECORRUPT, "page hash table checksum mismatch");
	if (r) {
		free(hashes);
		return r;
	}
	*out = hashes;
	return 0;
}

static int read_image(struct vmm__snap *s, const struct vmm__memory *mem)
{
	uint64_t *hashes = malloc(s->pre.hashes_len ? s->pre.hashes_len : 1);
	uint8_t zero[VMM_PAGE_SIZE] = { 0 };
	uint64_t zero_hash = XXH3_64bits(zero, sizeof(zero));
	int r;

	if (!hashes)
		return vmm__err(VMM_ENOMEM, "page hashes");
	r = pread_all(s->fd, hashes, s->pre.hashes_len, s->pre.hashes_off, "page hashes");
	if (!r && XXH3_64bits(hashes, s->pre.hashes_len) != s->pre.hashes_hash)
		r = vmm__err(VMM_ECORRUPT, "page hash table checksum mismatch");
	if (!r)
		r = mem ? load_image(s, mem, hashes, zero_hash) : verify_image(s, hashes, zero_hash);
	free(hashes);
	return r;
}

static int read_batches(struct vmm__snap *s, uint8_t *ram, int fresh)
{
	uint64_t npages = s->meta->hello->shape->mem_size / VMM_PAGE_SIZE;
	struct vmm__xport_opts o = { .is_file = 1 };
	struct vmm__xport *xp = NULL;
	struct vmm__ram_rx *rx = NULL;
	struct vmm__rec_hdr h;
	int r = vmm__xport_new(s->fd, &o, &xp);

	if (!r)
		r = vmm__ram_rx_new(ram, npages, fresh, &rx);
	if (!r)
		vmm__xport_seek(xp, s->pre.ram_off);
	while (!r) {
		r = vmm__stream_read_hdr(xp, &h);
		if (r)
			break;
		if (h.type == VMM_REC_END)
			break;
		if (h.type != VMM_REC_RAM) {
			r = vmm__err(VMM_ECORRUPT, "unexpected %s record in the RAM section",
				     vmm__rec_name(h.type));
			break;
		}
		r = vmm__ram_rx_apply(rx, xp, h.len);
	}
	if (!r && vmm__xport_offset(xp) != s->pre.ram_off + s->pre.ram_len)
		r = vmm__err(VMM_ECORRUPT, "RAM section ends at %llu, not %llu",
			     (unsigned long long)vmm__xport_offset(xp),
			     (unsigned long long)(s->pre.ram_off + s->pre.ram_len));
	/* Inside a file, a record that does not parse is a damaged file. */
	if (r == VMM_EPROTO || r == VMM_ETRUNCATED)
		r = vmm__err(VMM_ECORRUPT, "RAM section: %s", vmm_last_error());
	vmm__ram_rx_free(rx);
	vmm__xport_free(xp);
	return r;
}

int vmm__snap_read_ram(struct vmm__snap *s, const struct vmm__memory *mem, int fresh)
{
	if (s->pre.required_features & VMM_FEAT_RAM_IMAGE)
		return read_image(s, mem);
	return read_batches(s, mem ? mem->host : NULL, fresh);
}
