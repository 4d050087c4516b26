/* vmm_snapshot_restore: build a VM from a snapshot file, following an incremental chain
 * down to its full base. Eager: RAM is read (and every page verified) into fresh memory.
 * Lazy: the base's RAM image is mapped copy-on-write, so restore time does not grow with
 * RAM; pages load from the file when the guest first touches them. Uffd: fresh RAM that a
 * pager fills on first touch, checking each page's hash (libvmm/memory_pager.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libvmm/error_internal.h"
#include "libvmm/memory_pager.h"
#include "libvmm/opts.h"
#include "migrate/snapshot_crypt.h"
#include "migrate/disk_stream.h"
#include "migrate/snapshot_file.h"
#include "migrate/snapshot_path.h"
#include "migrate/stream.h"
#include "libvmm/vm_move.h"
#include "migrate/vm_shape.h"
#include "vmm/snapshot.h"

#define CHAIN_MAX 64

void vmm_restore_opts_init(struct vmm_restore_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->mode = VMM_RESTORE_EAGER;
}

static int same_shape(const Vmm__Stream__VmShape *a, const Vmm__Stream__VmShape *b)
{
	return a->mem_size == b->mem_size && a->vcpus == b->vcpus;
}

/* Opens path and its ancestors: chain[0] is path, chain[n-1] the full base. */
static int open_chain(const char *path, struct vmm__snap *chain, int *n)
{
	char cur[PATH_MAX], next[PATH_MAX];
	int r;

	snprintf(cur, sizeof(cur), "%s", path);
	for (*n = 0; *n < CHAIN_MAX;) {
		struct vmm__snap *s = &chain[*n];
		const Vmm__Stream__SnapshotMeta *m;

		r = vmm__snap_open(cur, s);
		if (r)
			return r;
		(*n)++;
		m = s->meta;
		if (*n > 1) {
			const Vmm__Stream__SnapshotMeta *child = chain[*n - 2].meta;

			if (!m->has_id || m->id.len != child->parent_id.len ||
			    memcmp(m->id.data, child->parent_id.data, m->id.len))
				return vmm__err(VMM_ECORRUPT, "%s is not the parent its child names", cur);
			if (!same_shape(m->hello->shape, child->hello->shape))
				return vmm__err(VMM_ESHAPE, "%s: shape differs from its child", cur);
		}
		if (!(s->pre.required_features & VMM_FEAT_INCREMENTAL))
			return 0;
		if (!m->parent_path || !m->has_parent_id)
			return vmm__err(VMM_ECORRUPT, "%s: incremental without a parent", cur);
		r = vmm__snap_parent_resolve(cur, m->parent_path, next, sizeof(next));
		if (r)
			return r;
		snprintf(cur, sizeof(cur), "%s", next);
	}
	return vmm__err(VMM_ECORRUPT, "snapshot chain longer than %d", CHAIN_MAX);
}

/* The working set beside the snapshot (include/vmm/snapshot.h): prefetched if asked and
 * valid, else recorded if asked. tag names the file pair it belongs to. */
static int working_set(const char *path, const struct vmm_restore_opts *o, uint64_t tag,
		       struct vmm_vm *vm)
{
	struct vmm__memory *mem = vmm__move_ram(vm);
	char wpath[PATH_MAX + 8];
	int r, valid = 0;

	if ((size_t)snprintf(wpath, sizeof(wpath), "%s.wset", path) >= sizeof(wpath))
		return 0;
	if (o->wset_prefetch) {
		r = vmm__pager_prefetch(mem->pager, wpath, tag, NULL);
		if (!r) {
			valid = 1;
		} else if (r != VMM_ENOENT) {
			char msg[400];

			snprintf(msg, sizeof(msg), "working set ignored: %s", vmm_last_error());
			vmm__move_warn(vm, msg);
		}
	}
	if (!valid && o->wset_record_ms)
		return vmm__pager_record(mem->pager, wpath, tag, o->wset_record_ms);
	return 0;
}

/* Fresh RAM handed to a pager on the base's image. Without userfaultfd: eager, said. */
static int start_pager(struct vmm__snap *base, struct vmm_vm *vm, int *eager)
{
	uint64_t *hashes;
	int r = vmm__snap_read_hashes(base, &hashes);

	if (r)
		return r;
	r = vmm__move_ram_pager(vm, base->fd, base->pre.ram_off, hashes);
	if (r == VMM_EUNSUPPORTED) {
		char msg[320];

		snprintf(msg, sizeof(msg), "uffd restore unavailable, restoring eagerly: %s",
			 vmm_last_error());
		vmm__move_warn(vm, msg);
		*eager = 1;
		return 0;
	}
	return r;
}

static int build_vm(struct vmm__snap *base, const struct vmm_restore_opts *o, struct vmm_vm **vm)
{
	struct vmm_vm_config cfg;
	struct vmm__move_shape sh;
	int lazy = o->mode == VMM_RESTORE_LAZY;
	int uffd = o->mode == VMM_RESTORE_UFFD, eager = !lazy && !uffd;
	int r;

	if (lazy && !(base->pre.required_features & VMM_FEAT_RAM_IMAGE))
		return vmm__err(VMM_EINVAL, "a compressed snapshot cannot be mapped; restore it eagerly");
	vmm_vm_config_init(&cfg);
	vmm__hello_to_config(base->meta->hello, &cfg);
	cfg.serial_out = o->serial_out;
	cfg.serial_opaque = o->serial_opaque;
	cfg.log = o->log;
	cfg.log_opaque = o->log_opaque;
	r = vmm__move_create(&cfg, lazy ? base->fd : -1, base->pre.ram_off, vm);
	if (r)
		return r;
	vmm__move_allow_cpu_mismatch(*vm, o->allow_cpu_mismatch);
	vmm__move_shape(*vm, &sh);
	if (base->meta->hello->shape->has_cpuid_digest &&
	    base->meta->hello->shape->cpuid_digest != sh.cpuid_digest)
		vmm__move_warn(*vm, "snapshot was taken on a host with other CPU features");
	if (uffd && !(base->pre.required_features & VMM_FEAT_RAM_IMAGE)) {
		vmm__move_warn(*vm, "a compressed snapshot has no page image: restoring eagerly");
		eager = 1;
	} else if (uffd && (r = start_pager(base, *vm, &eager)) != 0) {
		return r;
	}
	return eager ? vmm__snap_read_ram(base, vmm__move_ram(*vm), 1) : 0;
}

/* An encrypted file: decrypted and authenticated whole into a memfd first (nothing is
 * built from a file that fails), then restored from there eagerly. */
static int restore_encrypted(const char *path, struct vmm_restore_opts *o, struct vmm_vm **out)
{
	char plain[64];
	int fd = open(path, O_RDONLY | O_CLOEXEC), pfd, r;

	if (fd < 0)
		return vmm__err_sys(errno == ENOENT ? VMM_ENOENT : VMM_EIO, path);
	r = vmm__snap_is_encrypted(fd);
	if (r != 1) {
		close(fd);
		return r < 0 ? vmm__err(VMM_ETRUNCATED, "%s: file ends inside the magic", path)
			     : vmm__err(VMM_EKEY, "%s is not encrypted, but a key was given", path);
	}
	r = vmm__snap_decrypt(fd, o->key, &pfd);
	close(fd);
	if (r)
		return r;
	snprintf(plain, sizeof(plain), "/proc/self/fd/%d", pfd);
	o->key = NULL;
	o->key_len = 0;
	o->mode = VMM_RESTORE_EAGER;
	r = vmm_snapshot_restore(plain, o, out);
	close(pfd);
	return r;
}

int vmm_snapshot_restore(const char *path, const struct vmm_restore_opts *opts,
			 struct vmm_vm **out)
{
	struct vmm__snap chain[CHAIN_MAX];
	struct vmm_restore_opts o;
	struct vmm_vm *vm = NULL;
	int n = 0, r;

	if (!path || !out)
		return vmm__err(VMM_EINVAL, "NULL argument");
	*out = NULL;
	vmm_restore_opts_init(&o);
	r = VMM__OPTS_COPY(&o, opts, "vmm_restore_opts_init");
	if (r)
		return r;
	r = vmm__snap_key_check_arg(o.key, o.key_len);
	if (r)
		return r;
	if (o.key)
		return restore_encrypted(path, &o, out);
	memset(chain, 0, sizeof(chain));
	r = open_chain(path, chain, &n);
	if (!r)
		r = build_vm(&chain[n - 1], &o, &vm);
	if (!r && vmm__move_ram(vm)->pager && (o.wset_prefetch || o.wset_record_ms))
		r = working_set(path, &o, chain[0].pre.preamble_hash ^ chain[n - 1].pre.hashes_hash,
				vm);
	/* The embedder registers its devices (and their state hooks) before the state loads. */
	if (!r && o.prepare && (r = o.prepare(o.prepare_opaque, vm)))
		r = vmm__err(r < 0 ? r : VMM_EINVAL, "the prepare callback refused the VM (%d)", r);
	/* A disk section goes into the disks the prepare callback gave the VM (checked whole
	 * before anything is written: disk_stream.h). */
	if (!r && chain[0].meta->has_disks_len)
		r = vmm__disk_section_restore(vm, chain[0].fd, chain[0].meta->disks_off,
					      chain[0].meta->disks_len, chain[0].meta->disks_hash);
	/* Increments apply oldest first; the newest one holds the machine state. */
	for (int i = n - 2; !r && i >= 0; i--)
		r = vmm__snap_read_ram(&chain[i], vmm__move_ram(vm), 0);
	if (!r)
		/* The file's checksums vouched for these bytes: if they do not decode, the file
		 * is corrupt rather than the state merely unusable. */
		r = vmm__move_state_install(vm, chain[0].meta->machine_state.data,
					    chain[0].meta->machine_state.len, VMM_ECORRUPT);
	/* A pager's page that failed while the increments went in (VMM_ECORRUPT). */
	if (!r)
		r = vmm__memory_check(vmm__move_ram(vm));
	for (int i = 0; i < n; i++)
		vmm__snap_close(&chain[i]);
	if (r) {
		vmm_vm_destroy(vm);
		return r;
	}
	*out = vm;
	return 0;
}
