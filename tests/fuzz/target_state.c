/* Fuzz target: the machine-state protobuf (vCPUs, in-kernel devices, device blobs) and the
 * hello message, decoded and checked as a destination or a restore does. */
#include "fuzz.h"
#include "libvmm/state_codec.h"
#include "stream.pb-c.h"
#include "migrate/vm_shape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmm__machine_state ms = { 0 };
	Vmm__Stream__Hello *h;

	if (!vmm__machine_state_decode(data, size, &ms))
		vmm__machine_state_free(&ms);
	h = vmm__stream__hello__unpack(NULL, size, data);
	if (h) {
		vmm__hello_check(h);
		vmm__stream__hello__free_unpacked(h, NULL);
	}
	return 0;
}
