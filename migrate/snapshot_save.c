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
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "libvmm/bitmap.h"
#include "libvmm/dirty.h"
#include "libvmm/clock.h"
#include "libvmm/error_internal.h"
#include "libvmm/opts.h"
#include "libvmm/memory.h"
#include "migrate/disk_stream.h"
#include "migrate/ram.h"
#include "migrate/snapshot_crypt.h"
#include "migrate/snapshot_file.h"
#include "migrate/snapshot_path.h"
#include "migrate/snapshot_ram_writer.h"
#include "migrate/stream.h"
#include "libvmm/vm_move.h"
#include "migrate/vm_shape.h"
#include "vmm/snapshot.h"
#include "migrate/xport.h"

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
	struct vmm__snap_ram_writer w;
	uint8_t id[16];
	Vmm__Stream__SnapshotMeta *parent;
	char parent_rec[PATH_MAX]; /* the parent's path as the file records it */
	int paused_by_us;
	int started_tracker; /* this call started the VM's dirty tracker */
	uint64_t t_pause;
	uint64_t disks_off, disks_len, disks_hash; /* the disk section (opts.disks) */
};

void vmm_snapshot_opts_init(struct vmm_snapshot_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->compress_level = 1;
	o->live_max_rounds = 8;
	o->live_target_pause_ns = 20000000ull;
}

/* The temporary name next to path, created with the file's mode. */
static int create_tmp(struct save *s, const char *path, int *fd)
{
	unsigned rnd = 0;

	if (getrandom(&rnd, sizeof(rnd), 0) < 0)
		rnd = (unsigned)vmm__now_ns();
	if (snprintf(s->tmp, sizeof(s->tmp), "%s.tmp-%d-%08x", path, getpid(), rnd) >=
	    (int)sizeof(s->tmp)) {
		s->tmp[0] = '\0';
		return vmm__err(VMM_EINVAL, "path too long");
	}
	*fd = open(s->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
		   s->o.file_mode ? (mode_t)s->o.file_mode : 0600);
	if (*fd < 0) {
		int e = errno;

		s->tmp[0] = '\0';
		errno = e;
		return vmm__err_sys(e == ENOENT ? VMM_ENOENT : e == ENOSPC ? VMM_ENOSPC : VMM_EIO,
				    path);
	}
	return 0;
}

static int open_tmp(struct save *s, const char *path)
{
	int r;

	if (s->o.key) {
		/* Encrypted: the plain file is built in memory and sealed into a file under
		 * the temporary name only at the end (commit_file); guest memory never reaches
		 * the disk in clear. */
		s->fd = memfd_create("vmm-snapshot-plain", MFD_CLOEXEC);
		if (s->fd < 0)
			return vmm__err_sys(VMM_ESYS, "memfd_create");
		s->dfd = s->fd;
		return 0;
	}
	r = create_tmp(s, path, &s->fd);
	if (r)
		return r;
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

/* ---- RAM: the rounds engine into the RAM writer */

static int write_ram(struct save *s, uint64_t t0)
{
	struct vmm__rounds_sink sink;
	struct vmm__rounds_result res;
	const struct vmm__rounds_opts ro = {
		.live = (s->o.flags & VMM_SNAPSHOT_LIVE) && vmm_vm_run_state(s->vm) == VMM_VM_RUNNING,
		.first_from_tracker = !!(s->o.flags & VMM_SNAPSHOT_INCREMENTAL),
		/* the next incremental counts from this snapshot's copy of each page */
		.clear_final = !!(s->o.flags & VMM_SNAPSHOT_TRACK),
		.downtime_limit_ns = s->o.live_target_pause_ns,
		.max_rounds = s->o.live_max_rounds,
		.t0 = t0,
		.stopped_why = "the guest stopped during the snapshot",
	};
	int r;

	s->w.fd = s->fd;
	s->w.qx = s->qx;
	s->w.sx = s->sx;
	s->w.tx = s->tx;
	vmm__snap_ram_writer_sink(&s->w, &sink);
	r = vmm__rounds_run(s->vm, &ro, &sink, &res);
	s->paused_by_us = res.paused_by_us;
	/* A snapshot's pause counts from when the guest stood still. */
	s->t_pause = res.t_pause + res.pause_ns;
	return r;
}

/* ---- tail: hashes, metadata, trailer, preamble */

static int write_meta(struct save *s, struct vmm__snap_preamble *pre, uint64_t off)
{
	struct vmm__hello_buf hb;
	Vmm__Stream__SnapshotMeta m = VMM__STREAM__SNAPSHOT_META__INIT;
	uint8_t *state = NULL, *buf = NULL;
	size_t state_len = 0, len;
	int r = vmm__move_state_encode(s->vm, &state, &state_len);

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
		m.parent_path = s->parent_rec;
	}
	m.has_flags = 1, m.flags = s->o.flags;
	m.has_created_unix_ms = 1, m.created_unix_ms = (uint64_t)time(NULL) * 1000;
	m.has_ram_pages = 1, m.ram_pages = s->st.pages_written + s->st.zero_pages;
	if (s->o.disks) {
		m.has_disks_off = 1, m.disks_off = s->disks_off;
		m.has_disks_len = 1, m.disks_len = s->disks_len;
		m.has_disks_hash = 1, m.disks_hash = s->disks_hash;
	}
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
		pre.ram_len = s->w.npages * VMM_PAGE_SIZE;
		pre.hashes_off = VMM_SNAP_RAM_OFFSET + pre.ram_len;
		pre.hashes_len = s->w.npages * 8;
		pre.hashes_hash = XXH3_64bits(s->w.hashes, pre.hashes_len);
		vmm__xport_seek(s->sx, pre.hashes_off);
		r = vmm__xport_write(s->sx, s->w.hashes, pre.hashes_len);
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
	/* The disks after RAM, with the guest still paused (disk_stream.h). */
	if (!r && s->o.disks) {
		pre.required_features |= VMM_FEAT_DISKS;
		s->disks_off = off;
		r = vmm__disk_section_write(s->vm, s->sx, s->fd, off, &s->disks_len,
					    &s->disks_hash);
		off += s->disks_len;
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

/* Encrypted: seals the plain file (in memory) into the temporary file, which then stands
 * in for it. */
static int seal_file(struct save *s, const char *path)
{
	uint64_t len;
	int efd, r = create_tmp(s, path, &efd);

	if (r)
		return r;
	r = vmm__snap_encrypt(s->fd, s->st.file_bytes, efd, s->o.key, &len);
	close(s->fd);
	s->fd = s->dfd = efd;
	if (!r)
		s->st.file_bytes = len;
	return r;
}

static int commit_file(struct save *s, const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	int dfd, r;

	if (s->o.key && (r = seal_file(s, path)))
		return r;
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

static int check_parent(struct save *s, const char *path)
{
	struct vmm__snap ps;
	uint8_t base[16];
	int r;

	if (!s->o.parent)
		return vmm__err(VMM_EINVAL, "incremental snapshot without a parent");
	if (!vmm__dirty_backend(vmm__move_dirty(s->vm)) || !vmm__move_track_base(s->vm, base))
		return vmm__err(VMM_EINVAL, "incremental snapshot: the VM has not been tracking "
					    "dirty pages since a snapshot (save the parent with "
					    "VMM_SNAPSHOT_TRACK)");
	r = vmm__snap_open(s->o.parent, &ps);
	if (r)
		return r;
	if (!ps.meta->has_id || ps.meta->id.len != 16 ||
	    memcmp(ps.meta->id.data, base, 16)) {
		vmm__snap_close(&ps);
		return vmm__err(VMM_EINVAL, "%s is not the snapshot the VM has tracked since",
				s->o.parent);
	}
	s->parent = ps.meta;
	ps.meta = NULL;
	vmm__snap_close(&ps);
	return vmm__snap_parent_record(path, s->o.parent, s->parent_rec, sizeof(s->parent_rec));
}

static int setup(struct save *s, struct vmm_vm *vm, const char *path)
{
	struct vmm__memory *mem = vmm__move_ram(vm);
	int live = (s->o.flags & VMM_SNAPSHOT_LIVE) && vmm_vm_run_state(vm) == VMM_VM_RUNNING;
	int r;

	s->vm = vm;
	s->image = !(s->o.flags & (VMM_SNAPSHOT_COMPRESS | VMM_SNAPSHOT_INCREMENTAL));
	r = vmm__snap_ram_writer_init(&s->w, mem->host, mem->size / VMM_PAGE_SIZE, s->image,
				      &s->st);
	if (r)
		return r;
	if (getrandom(s->id, sizeof(s->id), 0) != sizeof(s->id))
		return vmm__err_sys(VMM_ESYS, "getrandom");
	if (s->o.flags & VMM_SNAPSHOT_INCREMENTAL) {
		r = check_parent(s, path);
		if (r)
			return r;
	}
	/* A tracker is needed for live rounds, and kept for a later incremental. */
	if ((live || (s->o.flags & VMM_SNAPSHOT_TRACK)) && !vmm__dirty_backend(vmm__move_dirty(vm))) {
		r = vmm__dirty_start(vmm__move_dirty(vm));
		if (r)
			return r;
		s->started_tracker = 1;
	}
	r = open_tmp(s, path);
	if (r)
		return r;
	if (s->image && ftruncate(s->fd, (off_t)(VMM_SNAP_RAM_OFFSET + mem->size)) < 0)
		return vmm__err_sys(errno == EFBIG || errno == ENOSPC ? VMM_ENOSPC : VMM_EIO,
				    "size the snapshot file");
	struct vmm__xport_opts fo = { .is_file = 1 };

	r = vmm__xport_new(s->dfd, &fo, &s->qx);
	if (!r)
		r = vmm__xport_new(s->fd, &fo, &s->sx);
	if (!r && !s->image)
		r = vmm__ram_tx_new(mem->host, mem->size / VMM_PAGE_SIZE,
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

	/* Resume before the fsync so the pause does not pay for the disk; with STOP, the file
	 * must be safe before the VM is given up. */
	if (!stop && s->paused_by_us) {
		s->st.pause_ns = vmm__now_ns() - s->t_pause;
		vmm__move_resume(s->vm);
		s->paused_by_us = 0;
	}
	r = commit_file(s, path);
	if (r)
		return r;
	/* Only now does the chain count from this file. What the guest wrote since the
	 * resume is still in the tracker (KVM's log, or harvested but not yet synced): no
	 * sync has run since the final pass, so the rebase drops only what the file holds. */
	if (s->o.flags & VMM_SNAPSHOT_TRACK) {
		vmm__dirty_rebase(vmm__move_dirty(s->vm));
		vmm__move_set_track_base(s->vm, s->id);
	} else {
		vmm__dirty_stop(vmm__move_dirty(s->vm));
		vmm__move_set_track_base(s->vm, NULL);
	}
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
	if (s.o.file_mode & ~0777u)
		return vmm__err(VMM_EINVAL, "snapshot file_mode 0%o: permission bits only (0777)",
				s.o.file_mode);
	r = vmm__snap_key_check_arg(s.o.key, s.o.key_len);
	if (r)
		return r;
	/* A chain is followed by path at restore; an encrypted link could not be read there. */
	if (s.o.key && (s.o.flags & VMM_SNAPSHOT_INCREMENTAL))
		return vmm__err(VMM_EINVAL, "an incremental snapshot cannot be encrypted");
	/* A chain's disk would be whole in every link: not offered. */
	if (s.o.disks > 1 || (s.o.disks && (s.o.flags & VMM_SNAPSHOT_INCREMENTAL)))
		return vmm__err(VMM_EINVAL, "snapshot disks %u: 0 or 1, and not incremental",
				s.o.disks);
	/* The VM is this save's until it returns (vm_move.h). */
	r = vmm__job_begin(vm, VMM__JOB_SNAPSHOT);
	if (r)
		return r;
	st = vmm_vm_run_state(vm);
	if (st != VMM_VM_RUNNING && st != VMM_VM_PAUSED) {
		r = vmm__err(VMM_ESTATE, "snapshot: the VM is %s", vmm_vm_run_state_name(st));
		vmm__job_end(vm);
		return r;
	}
	r = setup(&s, vm, path);
	if (!r)
		r = write_ram(&s, t0);
	if (!r)
		r = write_tail(&s);
	if (!r)
		r = s.qx ? vmm__xport_drain(s.qx) : 0;
	if (!r)
		r = finish(&s, path);
	if (r) {
		/* Nothing under the final name; the VM runs on as it was: a tracker it had keeps
		 * its since-base set whole (what this attempt synced is in it), one this call
		 * started goes. */
		if (s.tmp[0])
			unlink(s.tmp);
		if (s.started_tracker)
			vmm__dirty_stop(vmm__move_dirty(vm));
		if (s.paused_by_us)
			vmm__move_resume(vm);
	}
	close_files(&s);
	vmm__ram_tx_free(s.tx);
	vmm__stream__snapshot_meta__free_unpacked(s.parent, NULL);
	vmm__snap_ram_writer_free(&s.w);
	s.st.total_ns = vmm__now_ns() - t0;
	if (stats)
		*stats = s.st;
	vmm__job_end(vm);
	return r;
}
