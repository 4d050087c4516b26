/* Address ranges (I/O ports or guest-physical MMIO) mapped to handlers, looked up on every
 * exit. A VM has few devices, so a sorted array beats anything cleverer. */
#ifndef VMM_BUS_H
#define VMM_BUS_H

#include <stdint.h>

#include "vmm/vm.h"

struct vmm__bus_range {
	uint64_t base;
	uint64_t len;
	vmm_io_fn fn;
	void *opaque;
};

struct vmm__bus {
	struct vmm__bus_range *ranges; /* sorted by base, never overlapping */
	uint32_t n;
	uint32_t cap;
};

/* VMM_EBUSY on overlap, VMM_EINVAL on an empty or wrapping range. */
int vmm__bus_add(struct vmm__bus *bus, uint64_t base, uint64_t len, vmm_io_fn fn, void *opaque);
/* The range containing addr, or NULL. */
const struct vmm__bus_range *vmm__bus_find(const struct vmm__bus *bus, uint64_t addr);
void vmm__bus_free(struct vmm__bus *bus);

#endif
