/* The machine state (all vCPUs, in-kernel devices, emulated devices) to and from one
 * protobuf message (libvmm/proto/state.proto). decode treats its input as hostile: every
 * size is checked, nothing is trusted. */
#ifndef VMM_STATE_CODEC_H
#define VMM_STATE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "libvmm/cpu_state.h"

/* An emulated device's own state: its name and its own encoded protobuf message. */
struct vmm__dev_blob {
	char *name;
	uint8_t *data;
	size_t len;
};

struct vmm__machine_state {
	uint64_t mem_size;
	uint32_t ncpus;
	struct vmm__cpu_state *cpus; /* ncpus entries */
	struct vmm__vm_kstate kstate;
	uint32_t ndevs;
	struct vmm__dev_blob *devs;
	/* The CPU model the VM was created with ("" if the state does not say): informational,
	 * each vCPU's own CPUID table is what gets restored. */
	char cpu_model[32];
};

/* Encodes ms into a malloc'd buffer. */
int vmm__machine_state_encode(const struct vmm__machine_state *ms, uint8_t **buf, size_t *len);
/* Decodes buf into ms (all fields allocated; free with vmm__machine_state_free). Returns
 * VMM_ESTATEDATA naming the field on malformed or out-of-range input. */
int vmm__machine_state_decode(const uint8_t *buf, size_t len, struct vmm__machine_state *ms);
void vmm__machine_state_free(struct vmm__machine_state *ms);

#endif
