/* Parent paths of incremental snapshots (snapshot_path.h). */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libvmm/error_internal.h"
#include "migrate/snapshot_path.h"

static int too_long(const char *what)
{
	return vmm__err(VMM_EINVAL, "%s: path too long", what);
}

/* realpath() of the directory holding path. */
static int real_dir(const char *path, char *out)
{
	char tmp[PATH_MAX];

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return too_long(path);
	if (!realpath(dirname(tmp), out))
		return vmm__err_sys(errno == ENOENT ? VMM_ENOENT : VMM_EIO, path);
	return 0;
}

int vmm__snap_parent_record(const char *child, const char *parent, char *out, size_t len)
{
	char from[PATH_MAX], to[PATH_MAX];
	size_t common = 0, n = 0;
	const char *p;
	int r;

	if (parent[0] == '/') {
		if (snprintf(out, len, "%s", parent) >= (int)len)
			return too_long(parent);
		return 0;
	}
	r = real_dir(child, from);
	if (r)
		return r;
	if (!realpath(parent, to))
		return vmm__err_sys(errno == ENOENT ? VMM_ENOENT : VMM_EIO, parent);
	/* The longest common prefix of whole components ("/a/b" is not under "/a/bc"). */
	if (!strcmp(from, "/"))
		from[0] = '\0';
	for (size_t i = 0;; i++) {
		if (from[i] == '\0' && (to[i] == '/' || to[i] == '\0')) {
			common = i;
			break;
		}
		if (from[i] != to[i])
			break;
		if (from[i] == '/')
			common = i;
	}
	if (to[common] == '\0')
		return vmm__err(VMM_EINVAL, "%s: a parent must be a file", parent);
	/* One ".." per component of from past the common prefix, then the rest of to. */
	out[0] = '\0';
	for (p = from + common; *p; p++)
		if (*p == '/') {
			if (n + 3 >= len)
				return too_long(parent);
			memcpy(out + n, "../", 4);
			n += 3;
		}
	if (snprintf(out + n, len - n, "%s", to + common + 1) >= (int)(len - n))
		return too_long(parent);
	return 0;
}

int vmm__snap_parent_resolve(const char *child, const char *recorded, char *out, size_t len)
{
	char tmp[PATH_MAX];

	if (recorded[0] == '/') {
		if (snprintf(out, len, "%s", recorded) >= (int)len)
			return too_long(recorded);
		return 0;
	}
	if (snprintf(tmp, sizeof(tmp), "%s", child) >= (int)sizeof(tmp))
		return too_long(child);
	if (snprintf(out, len, "%s/%s", dirname(tmp), recorded) >= (int)len)
		return too_long(recorded);
	return 0;
}
