/* vmm_snapshot_save: RAM, machine state and lineage into a new file, written under a
 * temporary name and renamed only when complete and synced. Without VMM_SNAPSHOT_LIVE the
 * guest is paused throughout; with it, RAM is written in rounds while the guest runs
 * (each round rewriting what the last one saw dirtied) and the guest is paused only for
 * the last dirty pages and the machine state. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "bitmap.h"
#include "dirty.h"
#include "clock.h"
#include "error_internal.h"
#include "opts.h"
#include "memory.h"
#include "ram.h"
#include "snapshot_file.h"
#include "state_codec.h"
#include "stream.h"
#include "vm_internal.h"
#include "vm_shape.h"
#include "vmm/snapshot.h"
#include "xport.h"

#define RUN_PAGES 256     /* largest single write: 1 MiB */
#define CHUNK_PAGES 4096  /* dirty pages are re-protected this many at a time */

struct save {
	struct vmm_vm *vm;
	struct vmm_snapshot_opts o;
	struct vmm_snapshot_stats st;
	char tmp[PATH_MAX];
	int fd;  /* buffered: batches, tail, preamble */
	int dfd; /* O_DIRECT for the RAM image where the file system allows, else fd */
	struct vmm__xport *qx; /* queued image writes on dfd */
	struct vmm__xport *sx; /* sequential batch writes on fd */
	struct vmm__ram_tx *tx;
	int image;
	uint64_t npages;
	uint64_t *hashes;  /* image: XXH3 of each page as last written */
	uint64_t *written; /* image: pages holding data in the file */
	uint64_t *pages;   /* the set to write this round */
	uint64_t zero_hash;
	uint8_t id[16];
	Vmm__Stream__SnapshotMeta *parent;
	int paused_by_us;
	uint64_t t_pause;
};

void vmm_snapshot_opts_init(struct vmm_snapshot_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->compress_level = 1;
	o->live_max_rounds = 8;
	o->live_target_pause_ns = 20000000ull;
}

static int open_tmp(struct save *s, const char *path)
{
	unsigned rnd = 0;

	if (getrandom(&rnd, sizeof(rnd), 0) < 0)
		rnd = (unsigned)vmm__now_ns();
	if (snprintf(s->tmp, sizeof(s->tmp), "%s.tmp-%d-%08x", path, getpid(), rnd) >=
	    (int)sizeof(s->tmp))
		return vmm__err(VMM_EINVAL, "path too long");
	s->fd = open(s->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (s->fd < 0)
		return vmm__err_sys(errno == ENOENT ? VMM_ENOENT : errno == ENOSPC ? VMM_ENOSPC : VMM_EIO,
				    s->tmp);
	/* The RAM image goes around the page cache, which costs more than the disk here
	 * (HOST-NOTES: buffered writes ~0.3 GB/s, O_DIRECT ~2 GB/s). tmpfs refuses O_DIRECT. */
	s->dfd = s->image ? open(s->tmp, O_WRONLY | O_DIRECT | O_CLOEXEC) : -1;
	if (s->dfd < 0)
		s->dfd = s->fd;
	return 0;
}

static void close_files(struct save *s)
{
	vmm__xport_free(s->qx);
	vmm__xport_free(s->sx);
	s->qx = s->sx = NULL;
	if (s->dfd >= 0 && s->dfd != s->fd)
		close(s->dfd);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = s->dfd = -1;
}

/* ---- RAM image: pages at fixed offsets */

static int queue_run(struct save *s, uint64_t first, uint64_t n)
{
	struct iovec iov = { s->vm->mem.host + first * VMM_PAGE_SIZE, n * VMM_PAGE_SIZE };

	s->st.ram_bytes += iov.iov_len;
	return vmm__xport_pwritev_queued(s->qx, VMM_SNAP_RAM_OFFSET + first * VMM_PAGE_SIZE, &iov, 1);
}

/* A zero page that leaves the file: punched out if an earlier round wrote it. */
static int drop_zero_page(struct save *s, uint64_t p)
{
	if (!vmm__bitmap_test(s->written, p))
		return 0;
	s->written[p / 64] &= ~(1ull << (p % 64));
	if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(VMM_SNAP_RAM_OFFSET + p * VMM_PAGE_SIZE), VMM_PAGE_SIZE) < 0)
		return vmm__err_sys(VMM_EIO, "punch a zero page");
	return 0;
}

/* The write run being built: [start, start + len) holds data; the `zeros` zero pages
 * after it join the run (written as zeros) if more data follows within ZERO_GAP_PAGES,
 * because one 4 KiB O_DIRECT write per isolated data page costs far more than writing a
 * few zero pages (measured: half-zero memory saved at 0.3x dd before this). */
#define ZERO_GAP_PAGES 16

struct run {
	uint64_t start, len, zeros;
};

static int run_close(struct save *s, struct run *rn)
{
	int r = rn->len ? queue_run(s, rn->start, rn->len) : 0;

	for (uint64_t i = 0; i < rn->zeros && !r; i++)
		r = drop_zero_page(s, rn->start + rn->len + i);
	*rn = (struct run){ 0 };
	return r;
}

/* Writes the pages of [first, first + n) set in s->pages, hashing each; all-zero pages
 * stay holes unless they fill a short gap inside a run of data. */
static int image_write_chunk(struct save *s, uint64_t first, uint64_t n)
{
	struct run rn = { 0 };
	int r = 0;

	for (uint64_t p = first; p < first + n && !r; p++) {
		const uint8_t *pg = s->vm->mem.host + p * VMM_PAGE_SIZE;
		int adjacent = rn.len && p == rn.start + rn.len + rn.zeros;

		if (!vmm__bitmap_test(s->pages, p)) {
			if (rn.len)
				r = run_close(s, &rn);
			continue;
		}
		if (vmm__page_is_zero(pg)) {
			s->st.zero_pages++;
			s->hashes[p] = s->zero_hash;
			if (adjacent && rn.zeros < ZERO_GAP_PAGES)
				rn.zeros++;
			else if (rn.len)
				r = run_close(s, &rn) ?: drop_zero_page(s, p);
			else
				r = drop_zero_page(s, p);
			continue;
		}
		s->hashes[p] = XXH3_64bits(pg, VMM_PAGE_SIZE);
		s->st.pages_written++;
		if (adjacent && rn.len + rn.zeros < RUN_PAGES) {
			/* the gap's zero pages are written too: they are data in the file now */
			for (uint64_t z = rn.start + rn.len; z < p; z++)
				vmm__bitmap_set(s->written, z);
			rn.len += rn.zeros + 1;
			rn.zeros = 0;
		} else {
			r = run_close(s, &rn);
			rn = (struct run){ p, 1, 0 };
		}
		vmm__bitmap_set(s->written, p);
	}
	if (!r)
		r = run_close(s, &rn);
	return r;
}

static int batch_write_chunk(struct save *s, uint64_t first, uint64_t n)
{
	int r = 0;

	for (uint64_t p = first; p < first + n && !r; p++)
		if (vmm__bitmap_test(s->pages, p))
			r = vmm__ram_tx_add(s->tx, s->sx, p);
	return r;
}

/* One pass over s->pages. With a tracker, each chunk is re-protected right before it is
 * read, so a write that lands after the read shows up in the next sync. */
static int write_round(struct save *s, int tracking)
{
	int r = 0;

	for (uint64_t first = 0; first < s->npages && !r; first += CHUNK_PAGES) {
		uint64_t n = s->npages - first < CHUNK_PAGES ? s->npages - first : CHUNK_PAGES;
		uint64_t words = (n + 63) / 64;

		if (!vmm__bitmap_any(s->pages + first / 64, words))
			continue;
		if (tracking)
			r = vmm__dirty_clear(&s->vm->dirty, s->pages, first, (n + 63) & ~63ull);
		if (!r)
			r = s->image ? image_write_chunk(s, first, n) : batch_write_chunk(s, first, n);
	}
	if (!r)
		r = s->image ? vmm__xport_drain(s->qx) : vmm__ram_tx_flush(s->tx, s->sx);
	if (!s->image) { /* batches count their own pages */
		const struct vmm__ram_tx_stats *t = vmm__ram_tx_stats(s->tx);

		s->st.pages_written = t->pages - t->zero_pages;
		s->st.zero_pages = t->zero_pages;
		s->st.ram_bytes = t->wire_bytes;
	}
	s->st.rounds++;
	return r;
}

/* ---- rounds */

static int pause_vm(struct save *s)
{
	int r = 0;

	switch (vmm_vm_run_state(s->vm)) {
	case VMM_VM_RUNNING:
		r = vmm_vm_pause(s->vm);
		if (!r)
			s->paused_by_us = 1;
		break;
	case VMM_VM_PAUSED:
		break;
	default: /* the guest ended during a live snapshot: its state is not worth keeping */
		r = vmm__err(VMM_ESTATE, "the guest stopped during the snapshot");
	}
	s->t_pause = vmm__now_ns();
	return r;
}

/* The set of pages the first pass writes. */
static int initial_pages(struct save *s)
{
	uint64_t words = vmm__bitmap_words(s->npages);

	memset(s->pages, 0, words * 8);
	if (s->o.flags & VMM_SNAPSHOT_INCREMENTAL)
		return vmm__dirty_sync(&s->vm->dirty, s->pages);
	if (s->vm->mem.memfd < 0) { /* RAM mapped from a file: no holes to find */
		vmm__bitmap_set_range(s->pages, 0, s->npages);
		return 0;
	}
	return vmm__memory_populated(&s->vm->mem, s->pages);
}

static int live_rounds(struct save *s)
{
	uint64_t words = vmm__bitmap_words(s->npages);
	int r = initial_pages(s);

	if (r)
		return r;
	for (uint32_t round = 0;; round++) {
		uint64_t t0 = vmm__now_ns(), bytes0 = s->st.ram_bytes, dirty;
		double bw;

		r = write_round(s, 1);
		if (r)
			return r;
		bw = (double)(s->st.ram_bytes - bytes0) /
		     ((double)(vmm__now_ns() - t0) / 1e9 + 1e-9);
		memset(s->pages, 0, words * 8);
		r = vmm__dirty_sync(&s->vm->dirty, s->pages);
		if (r)
			return r;
		dirty = vmm__bitmap_weight(s->pages, s->npages) * VMM_PAGE_SIZE;
		/* Stop when what is left would fit the pause target at this round's speed. */
		if (round + 1 >= s->o.live_max_rounds || bw <= 0 ||
		    (double)dirty / bw * 1e9 <= (double)s->o.live_target_pause_ns)
			break;
	}
	r = pause_vm(s);
	if (r)
		return r;
	/* The last sync happened while the guest ran: sync again now that it cannot write. */
	r = vmm__dirty_sync(&s->vm->dirty, s->pages);
	if (r)
		return r;
	if (s->tx)
		vmm__ram_tx_set_stable(s->tx, 1);
	return write_round(s, 1);
}

static int paused_pass(struct save *s, int tracking)
{
	int r = pause_vm(s);

	if (!r)
		r = initial_pages(s);
	if (s->tx)
		vmm__ram_tx_set_stable(s->tx, 1);
	if (!r)
		r = write_round(s, tracking);
	return r;
}

/* ---- tail: hashes, metadata, trailer, preamble */

static int write_meta(struct save *s, struct vmm__snap_preamble *pre, uint64_t off)
{
	struct vmm__machine_state ms;
	struct vmm__hello_buf hb;
	Vmm__Stream__SnapshotMeta m = VMM__STREAM__SNAPSHOT_META__INIT;
	uint8_t *state = NULL, *buf = NULL;
	size_t state_len = 0, len;
	int r = vmm__vm_state_capture(s->vm, &ms);

	if (!r)
		r = vmm__machine_state_encode(&ms, &state, &state_len);
	vmm__machine_state_free(&ms);
	if (r)
		return r;
	vmm__hello_from_vm(s->vm, pre->required_features, &hb);
	m.hello = &hb.hello;
	m.has_machine_state = 1;
	m.machine_state = (ProtobufCBinaryData){ state_len, state };
	m.has_id = 1;
	m.id = (ProtobufCBinaryData){ sizeof(s->id), s->id };
	if (s->parent) {
		m.has_parent_id = 1;
		m.parent_id = s->parent->id;
		m.parent_path = (char *)s->o.parent;
	}
	m.has_flags = 1, m.flags = s->o.flags;
	m.has_created_unix_ms = 1, m.created_unix_ms = (uint64_t)time(NULL) * 1000;
	m.has_ram_pages = 1, m.ram_pages = s->st.pages_written + s->st.zero_pages;
	len = vmm__stream__snapshot_meta__get_packed_size(&m);
	buf = malloc(len ? len : 1);
	if (!buf) {
		free(state);
		return vmm__err(VMM_ENOMEM, "snapshot metadata");
	}
	vmm__stream__snapshot_meta__pack(&m, buf);
	pre->meta_off = off;
	pre->meta_len = len;
	pre->meta_hash = XXH3_64bits(buf, len);
	vmm__xport_seek(s->sx, off);
	r = vmm__xport_write(s->sx, buf, len);
	free(buf);
	free(state);
	return r;
}

static int write_tail(struct save *s)
{
	struct vmm__snap_preamble pre;
	struct vmm__snap_trailer tr;
	uint64_t off;
	int r = 0;

	memset(&pre, 0, sizeof(pre));
	pre.ram_off = VMM_SNAP_RAM_OFFSET;
	if (s->image) {
		pre.required_features = VMM_FEAT_RAM_IMAGE;
		pre.ram_len = s->vm->mem.size;
		pre.hashes_off = VMM_SNAP_RAM_OFFSET + s->vm->mem.size;
		pre.hashes_len = s->npages * 8;
		pre.hashes_hash = XXH3_64bits(s->hashes, pre.hashes_len);
		vmm__xport_seek(s->sx, pre.hashes_off);
		r = vmm__xport_write(s->sx, s->hashes, pre.hashes_len);
		off = pre.hashes_off + pre.hashes_len;
	} else {
		pre.required_features = VMM_FEAT_RAM_BATCHES;
		if (s->o.flags & VMM_SNAPSHOT_COMPRESS)
			pre.required_features |= VMM_FEAT_ZSTD;
		if (s->o.flags & VMM_SNAPSHOT_INCREMENTAL)
			pre.required_features |= VMM_FEAT_INCREMENTAL;
		/* sx stands right after the last batch */
		r = vmm__stream_write_rec(s->sx, VMM_REC_END, NULL, 0);
		pre.ram_len = vmm__xport_offset(s->sx) - VMM_SNAP_RAM_OFFSET;
		off = vmm__xport_offset(s->sx);
	}
	if (!r)
		r = write_meta(s, &pre, off);
	if (r)
		return r;
	pre.file_len = pre.meta_off + pre.meta_len + sizeof(tr);
	vmm__snap_seal(&pre, &tr);
	r = vmm__xport_write(s->sx, &tr, sizeof(tr));
	/* The preamble last: until it is there, the file is not a snapshot. */
	if (!r) {
		vmm__xport_seek(s->sx, 0);
		r = vmm__xport_write(s->sx, &pre, sizeof(pre));
	}
	s->st.file_bytes = pre.file_len;
	return r;
}

static int commit_file(struct save *s, const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	int dfd;

	if (fdatasync(s->fd) < 0)
		return vmm__err_sys(errno == ENOSPC ? VMM_ENOSPC : VMM_EIO, "fdatasync snapshot");
	if (rename(s->tmp, path) < 0)
		return vmm__err_sys(VMM_EIO, path);
	s->tmp[0] = '\0';
	/* Make the rename itself durable. */
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		strcpy(dir, ".");
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

/* ---- setup and the call */

static int check_parent(struct save *s)
{
	struct vmm__snap ps;
	int r;

	if (!s->o.parent)
		return vmm__err(VMM_EINVAL, "incremental snapshot without a parent");
	if (!vmm__dirty_backend(&s->vm->dirty) || !s->vm->track_base_valid)
		return vmm__err(VMM_EINVAL, "incremental snapshot: the VM has not been tracking "
					    "dirty pages since a snapshot (save the parent with "
					    "VMM_SNAPSHOT_TRACK)");
	r = vmm__snap_open(s->o.parent, &ps);
	if (r)
		return r;
	if (!ps.meta->has_id || ps.meta->id.len != 16 ||
	    memcmp(ps.meta->id.data, s->vm->track_base_id, 16)) {
		vmm__snap_close(&ps);
		return vmm__err(VMM_EINVAL, "%s is not the snapshot the VM has tracked since",
				s->o.parent);
	}
	s->parent = ps.meta;
	ps.meta = NULL;
	vmm__snap_close(&ps);
	return 0;
}

static int setup(struct save *s, struct vmm_vm *vm, const char *path)
{
	uint8_t zero[VMM_PAGE_SIZE] = { 0 };
	uint64_t words;
	int live = (s->o.flags & VMM_SNAPSHOT_LIVE) && vmm_vm_run_state(vm) == VMM_VM_RUNNING;
	int r;

	s->vm = vm;
	s->npages = vm->mem.size / VMM_PAGE_SIZE;
	s->image = !(s->o.flags & (VMM_SNAPSHOT_COMPRESS | VMM_SNAPSHOT_INCREMENTAL));
	s->zero_hash = XXH3_64bits(zero, sizeof(zero));
	words = vmm__bitmap_words(s->npages);
	s->pages = calloc(words, 8);
	if (s->image) {
		s->hashes = malloc(s->npages * 8);
		s->written = calloc(words, 8);
	}
	if (!s->pages || (s->image && (!s->hashes || !s->written)))
		return vmm__err(VMM_ENOMEM, "snapshot bitmaps");
	for (uint64_t i = 0; s->image && i < s->npages; i++)
		s->hashes[i] = s->zero_hash;
	if (getrandom(s->id, sizeof(s->id), 0) != sizeof(s->id))
		return vmm__err_sys(VMM_ESYS, "getrandom");
	if (s->o.flags & VMM_SNAPSHOT_INCREMENTAL) {
		r = check_parent(s);
		if (r)
			return r;
	}
	/* A tracker is needed for live rounds, and kept for a later incremental. */
	if ((live || (s->o.flags & VMM_SNAPSHOT_TRACK)) && !vmm__dirty_backend(&vm->dirty)) {
		r = vmm__dirty_start(&vm->dirty);
		if (r)
			return r;
	}
	r = open_tmp(s, path);
	if (r)
		return r;
	if (s->image && ftruncate(s->fd, (off_t)(VMM_SNAP_RAM_OFFSET + vm->mem.size)) < 0)
		return vmm__err_sys(errno == EFBIG || errno == ENOSPC ? VMM_ENOSPC : VMM_EIO,
				    "size the snapshot file");
	struct vmm__xport_opts fo = { .is_file = 1 };

	r = vmm__xport_new(s->dfd, &fo, &s->qx);
	if (!r)
		r = vmm__xport_new(s->fd, &fo, &s->sx);
	if (!r && !s->image)
		r = vmm__ram_tx_new(vm->mem.host, s->npages,
				    (s->o.flags & VMM_SNAPSHOT_COMPRESS) ? VMM_COMPRESS_ZSTD
									 : VMM_COMPRESS_COPY,
				    s->o.compress_level, &s->tx);
	if (!r && !s->image) /* batches are appended from the start of the RAM section */
		vmm__xport_seek(s->sx, VMM_SNAP_RAM_OFFSET);
	return r;
}

/* The VM as it should be left after a successful save. */
static int finish(struct save *s, const char *path)
{
	int stop = s->o.flags & VMM_SNAPSHOT_STOP;
	int r;

	if (s->o.flags & VMM_SNAPSHOT_TRACK) {
		memcpy(s->vm->track_base_id, s->id, 16);
		s->vm->track_base_valid = 1;
	} else {
		vmm__dirty_stop(&s->vm->dirty);
		s->vm->track_base_valid = 0;
	}
	/* Resume before the fsync so the pause does not pay for the disk; with STOP, the file
	 * must be safe before the VM is given up. */
	if (!stop && s->paused_by_us) {
		s->st.pause_ns = vmm__now_ns() - s->t_pause;
		vmm_vm_resume(s->vm);
		s->paused_by_us = 0;
	}
	r = commit_file(s, path);
	if (r)
		return r;
	if (stop) {
		s->st.pause_ns = vmm__now_ns() - s->t_pause;
		vmm_vm_stop(s->vm);
		s->paused_by_us = 0;
	}
	return 0;
}

int vmm_snapshot_save(struct vmm_vm *vm, const char *path, const struct vmm_snapshot_opts *opts,
		      struct vmm_snapshot_stats *stats)
{
	struct save s;
	uint64_t t0 = vmm__now_ns();
	enum vmm_vm_run_state st;
	int r;

	if (!vm || !path)
		return vmm__err(VMM_EINVAL, "NULL argument");
	memset(&s, 0, sizeof(s));
	s.fd = s.dfd = -1;
	vmm_snapshot_opts_init(&s.o);
	r = VMM__OPTS_COPY(&s.o, opts, "vmm_snapshot_opts_init");
	if (r)
		return r;
	st = vmm_vm_run_state(vm);
	if (st != VMM_VM_RUNNING && st != VMM_VM_PAUSED)
		return vmm__err(VMM_ESTATE, "snapshot: the VM is %s", vmm_vm_run_state_name(st));
	r = setup(&s, vm, path);
	if (!r)
		r = (s.o.flags & VMM_SNAPSHOT_LIVE) && st == VMM_VM_RUNNING
			    ? live_rounds(&s)
			    : paused_pass(&s, vmm__dirty_backend(&vm->dirty) != 0);
	if (!r)
		r = write_tail(&s);
	if (!r)
		r = s.qx ? vmm__xport_drain(s.qx) : 0;
	if (!r)
		r = finish(&s, path);
	if (r) {
		/* Nothing under the final name; the VM runs on as it was. */
		if (s.tmp[0])
			unlink(s.tmp);
		if (!(s.o.flags & VMM_SNAPSHOT_TRACK) || !vm->track_base_valid)
			vmm__dirty_stop(&vm->dirty);
		if (s.paused_by_us)
			vmm_vm_resume(vm);
	}
	close_files(&s);
	vmm__ram_tx_free(s.tx);
	vmm__stream__snapshot_meta__free_unpacked(s.parent, NULL);
	free(s.pages);
	free(s.hashes);
	free(s.written);
	s.st.total_ns = vmm__now_ns() - t0;
	if (stats)
		*stats = s.st;
	return r;
}
