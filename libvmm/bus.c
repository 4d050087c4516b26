/* Sorted, non-overlapping ranges with binary-search lookup. */
#include <stdlib.h>
#include <string.h>

#include "libvmm/bus.h"
#include "libvmm/error_internal.h"

int vmm__bus_add(struct vmm__bus *bus, uint64_t base, uint64_t len, vmm_io_fn fn, void *opaque)
{
	uint32_t i;

	if (!len || !fn || base + len < base)
		return vmm__err(VMM_EINVAL, "bus range 0x%llx+0x%llx", (unsigned long long)base,
				(unsigned long long)len);
	for (i = 0; i < bus->n; i++) {
		const struct vmm__bus_range *r = &bus->ranges[i];

		if (base < r->base + r->len && r->base < base + len)
			return vmm__err(VMM_EBUSY, "range 0x%llx+0x%llx overlaps 0x%llx+0x%llx",
					(unsigned long long)base, (unsigned long long)len,
					(unsigned long long)r->base, (unsigned long long)r->len);
		if (r->base > base)
			break;
	}
	if (bus->n == bus->cap) {
		uint32_t cap = bus->cap ? bus->cap * 2 : 8;
		struct vmm__bus_range *nr = realloc(bus->ranges, cap * sizeof(*nr));

		if (!nr)
			return vmm__err(VMM_ENOMEM, "bus ranges");
		bus->ranges = nr;
		bus->cap = cap;
	}
	memmove(&bus->ranges[i + 1], &bus->ranges[i], (bus->n - i) * sizeof(*bus->ranges));
	bus->ranges[i] = (struct vmm__bus_range){ base, len, fn, opaque };
	bus->n++;
	return 0;
}

const struct vmm__bus_range *vmm__bus_find(const struct vmm__bus *bus, uint64_t addr)
{
	uint32_t lo = 0, hi = bus->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct vmm__bus_range *r = &bus->ranges[mid];

		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

void vmm__bus_free(struct vmm__bus *bus)
{
	free(bus->ranges);
	memset(bus, 0, sizeof(*bus));
}
