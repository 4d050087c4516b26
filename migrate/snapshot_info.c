/* vmm_snapshot_info: what a snapshot file holds, and whether every checksum matches. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "libvmm/error_internal.h"
#include "migrate/snapshot_file.h"
#include "vmm/snapshot.h"

/* Fills the whole struct as this library knows it; the caller gets the part its size says. */
static int read_info(const char *path, int verify, struct vmm_snapshot_info *info)
{
	struct vmm__snap s;
	struct stat st;
	const Vmm__Stream__SnapshotMeta *m;
	int r;

	r = vmm__snap_open(path, &s);
	if (r)
		return r;
	m = s.meta;
	info->format_major = s.pre.major;
	info->format_minor = s.pre.minor;
	info->required_features = s.pre.required_features;
	info->optional_features = s.pre.optional_features;
	info->mem_size = m->hello->shape->mem_size;
	info->vcpus = m->hello->shape->vcpus;
	info->flags = m->flags;
	info->file_bytes = s.pre.file_len;
	if (fstat(s.fd, &st) == 0)
		info->disk_bytes = (uint64_t)st.st_blocks * 512;
	info->created_unix_ms = m->created_unix_ms;
	snprintf(info->parent, sizeof(info->parent), "%s", m->parent_path ? m->parent_path : "");
	snprintf(info->library_version, sizeof(info->library_version), "%s",
		 m->hello->library_version ? m->hello->library_version : "");
	if (verify) {
		r = vmm__snap_read_ram(&s, NULL, 0);
		info->verified = !r;
	}
	vmm__snap_close(&s);
	return r;
}

int vmm_snapshot_info(const char *path, int verify, struct vmm_snapshot_info *info)
{
	struct vmm_snapshot_info full;
	uint32_t size;
	int r;

	if (!path || !info)
		return vmm__err(VMM_EINVAL, "NULL argument");
	size = info->size;
	if (size < offsetof(struct vmm_snapshot_info, reserved))
		return vmm__err(VMM_EINVAL, "info->size %u: set it to sizeof(struct vmm_snapshot_info)",
				size);
	memset(&full, 0, sizeof(full));
	full.size = size < sizeof(full) ? size : sizeof(full);
	r = read_info(path, verify, &full);
	memset(info, 0, size);
	memcpy(info, &full, full.size);
	return r;
}
