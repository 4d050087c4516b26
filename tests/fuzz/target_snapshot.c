/* Fuzz target: a snapshot file as vmm_snapshot_info(verify) reads it: preamble, trailer,
 * metadata, page hashes and the RAM section in either layout. */
#include <stdio.h>
#include <unistd.h>

#include "fuzz.h"
#include "vmm/vmm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	struct vmm_snapshot_info info = { .size = sizeof(info) };
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/vmm-fuzz-snap.%d", getpid());
	f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	vmm_snapshot_info(path, 1, &info);
	unlink(path);
	return 0;
}
