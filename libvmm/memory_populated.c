/* Which pages of guest RAM exist at all: the memfd is sparse, and a page nobody ever touched
 * is a hole that reads as zeros. SEEK_DATA/SEEK_HOLE walk the extents without reading (and so
 * without allocating) anything, which lets a snapshot or migration round 0 skip them. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "libvmm/bitmap.h"
#include "libvmm/dirty.h"
#include "libvmm/error_internal.h"
#include "libvmm/memory.h"

/* A description of its own for the memfd, so the seeks move no offset that someone else's
 * read() on m->memfd might use, and two scans may run at once. */
static int private_fd(const struct vmm__memory *m)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", m->memfd);
	return open(path, O_RDONLY | O_CLOEXEC);
}

int vmm__memory_populated(const struct vmm__memory *m, uint64_t *bitmap)
{
	off_t pos = 0, end;
	int fd, own, r = 0;

	if (!m || !bitmap || m->memfd < 0)
		return vmm__err(VMM_EINVAL,
				"guest RAM has no memfd to scan (not allocated, or mapped from a file)");
	end = (off_t)m->size;
	fd = private_fd(m);
	own = fd >= 0;
	if (!own)
		fd = m->memfd; /* no /proc: fall back to the shared offset */
	while (pos < end) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;

		if (data < 0) {
			if (errno != ENXIO) /* ENXIO: no data after pos */
				r = vmm__err_sys(VMM_ESYS, "lseek SEEK_DATA on guest RAM");
			break;
		}
		if (data >= end)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0) {
			r = vmm__err_sys(VMM_ESYS, "lseek SEEK_HOLE on guest RAM");
			break;
		}
		if (hole > end || hole <= data) /* the end of the file counts as a hole */
			hole = end;
		/* Extents are page-granular for shmem; round outwards all the same, a partial
		 * page is a page to read. */
		vmm__bitmap_set_range(bitmap, (uint64_t)data / VMM_PAGE_SIZE,
				      ((uint64_t)hole + VMM_PAGE_SIZE - 1) / VMM_PAGE_SIZE -
					      (uint64_t)data / VMM_PAGE_SIZE);
		pos = hole;
	}
	if (own)
		close(fd);
	return r;
}
