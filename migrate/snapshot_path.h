/* The one rule for an incremental snapshot's parent path: the file records it relative to
 * the child's own directory (or absolute), so a chain keeps working when its directory
 * tree is moved and whatever the cwd of the process that restores it. The caller's
 * opts.parent is an ordinary path argument (relative to the cwd, like the child's path);
 * the save turns it into the recorded form, the restore turns it back. */
#ifndef VMM_SNAPSHOT_PATH_H
#define VMM_SNAPSHOT_PATH_H

#include <stddef.h>

/* What the child at `child` (a path to a file that may not exist yet, in a directory that
 * does) records for its parent at `parent` (an existing file): absolute stays absolute;
 * relative becomes the path from the child's directory to the parent, both resolved
 * through realpath(). VMM_ENOENT, VMM_EINVAL (too long) with detail. */
int vmm__snap_parent_record(const char *child, const char *parent, char *out, size_t len);

/* The path to open for a parent recorded as `recorded` by the child opened as `child`. */
int vmm__snap_parent_resolve(const char *child, const char *recorded, char *out, size_t len);

#endif
