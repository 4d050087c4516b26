/* What an emulated device may ask of the VMM, and where it plugs in: the VM fills one of
 * these and devices see nothing else of it (no struct vmm_vm), so a device file depends
 * on this header, the bus and the device list only. */
#ifndef VMM_DEVICE_HOST_H
#define VMM_DEVICE_HOST_H

#include <stdint.h>

#include "vmm/vm.h"

struct vmm__bus;
struct vmm__devices;

struct vmm__device_host {
	void *ctx;
	/* Drives interrupt line irq to level (0 or 1). 0, or an error code already set. */
	int (*irq_line)(void *ctx, uint32_t irq, int level);
	/* Ends the VM; the first reason given wins. Any thread, vCPU threads included. */
	void (*request_stop)(void *ctx, enum vmm_exit_reason reason, int status,
			     const char *detail);
	/* Diagnostics through the embedder's log callback, if any. */
	void (*log)(void *ctx, int level, const char *msg);

	/* Where a device registers at creation, before the VM starts. */
	struct vmm__devices *devices; /* its saved state */
	struct vmm__bus *pio;         /* its port ranges */
	struct vmm__bus *mmio;        /* its MMIO ranges */
};

#endif
