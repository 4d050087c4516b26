/* Guest RAM layout and allocation. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "libvmm/error_internal.h"
#include "libvmm/kvm.h"
#include "libvmm/memory.h"
#include "libvmm/memory_pager.h"

static void layout(struct vmm__memory *m, uint64_t size)
{
	uint64_t low = size < VMM_MEM_HOLE_START ? size : VMM_MEM_HOLE_START;

	memset(m, 0, sizeof(*m));
	m->memfd = -1;
	m->file_fd = -1;
	m->size = size;
	m->regions[0] = (struct vmm__mem_region){ 0, low, 0, 0 };
	m->nregions = 1;
	if (size > low) {
		m->regions[1] =
			(struct vmm__mem_region){ VMM_MEM_HOLE_END, size - low, low, 1 };
		m->nregions = 2;
	}
}

/* A read lease: the kernel then makes any open for writing (or truncate) of the file
 * wait, up to /proc/sys/fs/lease-break-time, and tells the holder by a signal: SIGIO by
 * default, which would kill an embedder that does not expect it. So the signal is SIGURG
 * (ignored by default) for the instant between taking the lease and dropping the owner,
 * then there is no owner and no signal at all: the break shows in F_GETLEASE, which
 * vmm__memory_check reads. Fails quietly where leases are not allowed (not our file
 * without CAP_LEASE, someone has it open for writing, a file system without leases). */
static int take_lease(int fd)
{
	if (fcntl(fd, F_SETSIG, SIGURG) < 0)
		return 0;
	if (fcntl(fd, F_SETLEASE, F_RDLCK) < 0)
		return 0;
	if (fcntl(fd, F_SETOWN, 0) < 0) {
		fcntl(fd, F_SETLEASE, F_UNLCK);
		return 0;
	}
	return 1;
}

int vmm__memory_init_file(struct vmm__memory *m, uint64_t size, int fd, uint64_t offset)
{
	struct stat st;

	layout(m, size);
	if (fstat(fd, &st) < 0)
		return vmm__err_sys(VMM_EIO, "fstat snapshot");
	if ((uint64_t)st.st_size < offset || (uint64_t)st.st_size - offset < size)
		return vmm__err(VMM_ETRUNCATED,
				"snapshot is %llu bytes, its RAM image needs %llu from offset %llu",
				(unsigned long long)st.st_size, (unsigned long long)size,
				(unsigned long long)offset);
	m->file_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (m->file_fd < 0)
		return vmm__err_sys(VMM_ESYS, "dup snapshot fd");
	m->file_leased = take_lease(m->file_fd);
	/* Recorded after the lease: a write that got in before it is seen as a change. */
	if (fstat(m->file_fd, &st) < 0)
		return vmm__err_sys(VMM_EIO, "fstat snapshot");
	m->file_need = offset + size;
	m->file_size = (uint64_t)st.st_size;
	m->file_mtime = st.st_mtim;
	m->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd,
		       (off_t)offset);
	if (m->host == MAP_FAILED) {
		m->host = NULL;
		return vmm__err_sys(VMM_ENOMEM, "mmap snapshot RAM");
	}
	/* A child the embedder forks must not share guest RAM: copy-on-write over all of it
	 * would make every guest write fault, and the child would hold the memory. */
	madvise(m->host, size, MADV_DONTFORK);
	return 0;
}

int vmm__memory_check(const struct vmm__memory *m)
{
	struct stat st;

	if (m->pager)
		return vmm__pager_error(m->pager);
	if (m->file_fd < 0)
		return 0;
	if (fstat(m->file_fd, &st) < 0)
		return vmm__err_sys(VMM_EIO, "fstat the snapshot behind lazily restored RAM");
	if ((uint64_t)st.st_size < m->file_need)
		return vmm__err(VMM_ETRUNCATED,
				"the snapshot behind this lazily restored VM was truncated (%llu bytes, "
				"its RAM needs %llu): its pages cannot be read",
				(unsigned long long)st.st_size, (unsigned long long)m->file_need);
	if ((uint64_t)st.st_size != m->file_size || st.st_mtim.tv_sec != m->file_mtime.tv_sec ||
	    st.st_mtim.tv_nsec != m->file_mtime.tv_nsec)
		return vmm__err(VMM_ECORRUPT,
				"the snapshot behind this lazily restored VM was modified: pages not "
				"yet loaded from it are no longer the guest's");
	if (m->file_leased && fcntl(m->file_fd, F_GETLEASE) != F_RDLCK)
		return vmm__err(VMM_ECORRUPT,
				"the snapshot behind this lazily restored VM is being opened for "
				"writing (its lease broke): its pages may change");
	return 0;
}

/* One process_vm_readv/writev on ourselves: the kernel faults the pages in and reports
 * EFAULT instead of a signal when it cannot. */
static int guarded_copy(const struct vmm__memory *m, void *local, void *remote, size_t len,
			int write)
{
	while (len) {
		struct iovec l = { local, len }, rm = { remote, len };
		ssize_t n = write ? process_vm_writev(getpid(), &l, 1, &rm, 1, 0)
				  : process_vm_readv(getpid(), &l, 1, &rm, 1, 0);

		if (n <= 0) {
			int e = n < 0 ? errno : EFAULT, r;

			if (e == EINTR)
				continue;
			r = vmm__memory_check(m);
			/* A seccomp policy may forbid the calls: then a checked plain copy. */
			if (!r && (e == EPERM || e == ENOSYS)) {
				memcpy(write ? remote : local, write ? local : remote, len);
				return 0;
			}
			errno = e;
			return r ? r : vmm__err_sys(VMM_EIO, write ? "write lazily restored RAM"
								   : "read lazily restored RAM");
		}
		local = (uint8_t *)local + n;
		remote = (uint8_t *)remote + n;
		len -= (size_t)n;
	}
	return 0;
}

/* After a copy through a pager's RAM: a range holding a page that failed its check got
 * zeros, never the file's bytes, and is an error (the copy itself faulted the pages in). */
static int pager_range_ok(const struct vmm__memory *m, const void *p, size_t len)
{
	uint64_t off = (uint64_t)((const uint8_t *)p - m->host);

	return vmm__pager_range_ok(m->pager, off / VMM_PAGE_SIZE,
				   (off + len + VMM_PAGE_SIZE - 1) / VMM_PAGE_SIZE - off / VMM_PAGE_SIZE);
}

int vmm__memory_read(const struct vmm__memory *m, const void *p, void *buf, size_t len)
{
	if (m->pager && len) {
		memcpy(buf, p, len);
		return pager_range_ok(m, p, len);
	}
	if (m->file_fd < 0 || !len) {
		memcpy(buf, p, len);
		return 0;
	}
	return guarded_copy(m, buf, (void *)(uintptr_t)p, len, 0);
}

int vmm__memory_write(const struct vmm__memory *m, void *p, const void *buf, size_t len)
{
	if (m->pager && len) {
		memcpy(p, buf, len);
		return pager_range_ok(m, p, len);
	}
	if (m->file_fd < 0 || !len) {
		memcpy(p, buf, len);
		return 0;
	}
	return guarded_copy(m, (void *)(uintptr_t)buf, p, len, 1);
}

int vmm__memory_init(struct vmm__memory *m, uint64_t size)
{
	layout(m, size);
	m->memfd = memfd_create("vmm-guest-ram", MFD_CLOEXEC);
	if (m->memfd < 0)
		return vmm__err_sys(VMM_ESYS, "memfd_create");
	if (ftruncate(m->memfd, (off_t)size) < 0)
		return vmm__err_sys(VMM_ENOMEM, "ftruncate guest RAM");
	m->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, m->memfd, 0);
	if (m->host == MAP_FAILED) {
		m->host = NULL;
		return vmm__err_sys(VMM_ENOMEM, "mmap guest RAM");
	}
	/* Huge pages where the kernel's shmem policy allows them: fewer faults on first touch,
	 * which is the slowest thing on these hosts. */
	madvise(m->host, size, MADV_HUGEPAGE);
	/* Not into a child the embedder forks (QEMU does the same): guest writes would
	 * otherwise share the mapping with it, and a multi-GiB RAM would be in two processes. */
	madvise(m->host, size, MADV_DONTFORK);
	return 0;
}

int vmm__memory_map(struct vmm__memory *m, int vm_fd)
{
	for (uint32_t i = 0; i < m->nregions; i++) {
		const struct vmm__mem_region *r = &m->regions[i];
		struct kvm_userspace_memory_region kr = {
			.slot = r->slot,
			.flags = m->slot_flags,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)(m->host + r->offset),
		};

		if (vmm__ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0)
			return vmm__err_sys(VMM_EKVM, "KVM_SET_USER_MEMORY_REGION");
	}
	return 0;
}

int vmm__memory_pager_start(struct vmm__memory *m, int fd, uint64_t offset, uint64_t *hashes,
			    void (*fail)(void *ctx, int err, const char *detail), void *ctx)
{
	char path[64];
	int own;
	off_t data;

	if (m->memfd < 0 || !m->host || m->pager) {
		free(hashes);
		return vmm__err(VMM_ESYS, "a pager needs fresh memfd RAM");
	}
	/* A page already present would never be loaded from the file: RAM must be untouched
	 * (a hole from end to end) when the pager takes it. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", m->memfd);
	own = open(path, O_RDONLY | O_CLOEXEC);
	data = lseek(own >= 0 ? own : m->memfd, 0, SEEK_DATA);
	if (own >= 0)
		close(own);
	if (data >= 0 || errno != ENXIO) {
		free(hashes);
		return vmm__err(VMM_ESYS, "guest RAM was written before the pager took it");
	}
	return vmm__pager_start(m->host, m->size / VMM_PAGE_SIZE, fd, offset, hashes, fail, ctx,
				&m->pager);
}

int vmm__memory_postcopy_start(struct vmm__memory *m, const struct vmm__pager_source *src,
				const uint64_t *have,
				void (*fail)(void *ctx, int err, const char *detail), void *ctx)
{
	uint64_t npages = m->size / VMM_PAGE_SIZE, i = 0;
	int r;

	if (m->memfd < 0 || !m->host || m->pager)
		return vmm__err(VMM_ESYS, "post-copy needs memfd RAM without a pager");
	/* Every page without a valid copy becomes a hole, missing to the pager: a stale byte
	 * left in would never fault and never be replaced (memory_pager.h). One punch per run
	 * of such pages. */
	while (i < npages) {
		uint64_t j;

		if (have && ((have[i / 64] >> (i % 64)) & 1)) {
			i++;
			continue;
		}
		for (j = i; j < npages && !(have && ((have[j / 64] >> (j % 64)) & 1)); j++)
			;
		if (fallocate(m->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(i * VMM_PAGE_SIZE), (off_t)((j - i) * VMM_PAGE_SIZE)))
			return vmm__err_sys(VMM_ESYS, "dropping stale guest RAM pages (punch hole)");
		i = j;
	}
	r = vmm__pager_start_source(m->host, npages, src, NULL, fail, ctx, &m->pager);
	if (!r)
		vmm__pager_have(m->pager, have);
	return r;
}

int vmm__memory_fill(struct vmm__memory *m)
{
	return m->pager ? vmm__pager_load_all(m->pager) : 0;
}

void vmm__memory_free(struct vmm__memory *m)
{
	/* Before the unmap: the thread installs pages into it. */
	vmm__pager_stop(m->pager);
	m->pager = NULL;
	if (m->host)
		munmap(m->host, m->size);
	if (m->memfd >= 0)
		close(m->memfd);
	if (m->file_fd >= 0)
		close(m->file_fd); /* releases the lease with the last fd of its open file */
	m->host = NULL;
	m->memfd = -1;
	m->file_fd = -1;
}

void *vmm__memory_gpa(const struct vmm__memory *m, uint64_t gpa, uint64_t len)
{
	for (uint32_t i = 0; i < m->nregions; i++) {
		const struct vmm__mem_region *r = &m->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return m->host + r->offset + (gpa - r->gpa);
	}
	return NULL;
}

uint64_t vmm__memory_low_end(const struct vmm__memory *m)
{
	return m->regions[0].size;
}
