/* Fuzz target: a snapshot file as vmm_snapshot_info(verify) reads it: preamble, trailer,
 * metadata, page hashes and the RAM section in either layout. */
#include "fuzz.h"
#include "fuzz_util.h"
#include "vmm/vmm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmm_snapshot_info info = { .size = sizeof(info) };
	const char *path = fuzz_write_file(data, size);

	if (path)
		vmm_snapshot_info(path, 1, &info);
	return 0;
}
