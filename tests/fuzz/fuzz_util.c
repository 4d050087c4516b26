/* Helpers the fuzz targets share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_util.h"

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

const char *fuzz_write_file(const uint8_t *data, size_t size)
{
	FILE *f;

	if (!path[0]) {
		snprintf(path, sizeof(path), "/tmp/vmm-fuzz.%d", getpid());
		atexit(remove_file);
	}
	f = fopen(path, "wb");
	if (!f)
		return NULL;
	if (size && fwrite(data, 1, size, f) != size) {
		fclose(f);
		return NULL;
	}
	return fclose(f) ? NULL : path;
}
