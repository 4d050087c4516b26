/* Helpers the fuzz targets share. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "libvmm/vm_move.h"

uint8_t *fuzz_guarded_map(size_t bytes)
{
	uint8_t *p = mmap(NULL, bytes + 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	if (mprotect(p + 4096, bytes, PROT_READ | PROT_WRITE)) {
		munmap(p, bytes + 2 * 4096);
		return NULL;
	}
	return p + 4096;
}

static char path[64];

static void remove_file(void)
{
	unlink(path);
}

static const char *file_path(void)
{
	if (!path[0]) {
		snprintf(path, sizeof(path), "/tmp/vmm-fuzz.%d", getpid());
		atexit(remove_file);
	}
	return path;
}

const char *fuzz_write_sparse(const uint8_t *data, size_t size)
{
	static const uint8_t zero[4096];
	int fd = open(file_path(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int bad = fd < 0 || ftruncate(fd, (off_t)size);

	for (size_t off = 0; !bad && off < size; off += 4096) {
		size_t n = size - off < 4096 ? size - off : 4096;

		if (memcmp(data + off, zero, n))
			bad = pwrite(fd, data + off, n, (off_t)off) != (ssize_t)n;
	}
	if (fd >= 0 && close(fd))
		bad = 1;
	return bad ? NULL : path;
}

const char *fuzz_write_file(const uint8_t *data, size_t size)
{
	FILE *f = fopen(file_path(), "wb");

	if (!f)
		return NULL;
	if (size && fwrite(data, 1, size, f) != size) {
		fclose(f);
		return NULL;
	}
	return fclose(f) ? NULL : path;
}

int fuzz_guard_vm_ram(struct vmm_vm *vm)
{
	struct vmm__memory *m = vmm__move_ram(vm);
	uint8_t *area = mmap(NULL, m->size + 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
			     -1, 0);
	void *moved;

	if (area == MAP_FAILED)
		return -1;
	/* mremap keeps the memfd's pages and sharing; the fake kernel's slots do not hold
	 * the address (a real one would: this is for fake-kernel VMs only). */
	moved = mremap(m->host, m->size, m->size, MREMAP_MAYMOVE | MREMAP_FIXED, area + 4096);
	if (moved == MAP_FAILED) {
		munmap(area, m->size + 2 * 4096);
		return -1;
	}
	m->host = moved;
	return 0;
}

void fuzz_vm_destroy(struct vmm_vm *vm)
{
	struct vmm__memory *m = vmm__move_ram(vm);
	uint8_t *host = m->host;
	uint64_t size = m->size;

	vmm_vm_destroy(vm); /* unmaps the RAM between the guards */
	munmap(host - 4096, 4096);
	munmap(host + size, 4096);
}
