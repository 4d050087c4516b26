/* What an emulated device may ask of the VMM, and where it plugs in: the VM fills one of
 * these and devices see nothing else of it (no struct vmm_vm), so a device file depends
 * on this header, the bus and the device list only. */
#ifndef VMM_DEVICE_HOST_H
#define VMM_DEVICE_HOST_H

#include <stddef.h>
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
	/* Guest RAM for devices that do DMA (virtio): 0 when all of [gpa, gpa + len) is RAM,
	 * else VMM_ERANGE (error set). The copies never touch anything but RAM, and a write is
	 * marked dirty for snapshots and migration (the guest's own writes are logged by KVM,
	 * a device's are not). 0, or an error code already set. Any thread. */
	int (*mem_check)(void *ctx, uint64_t gpa, uint64_t len);
	int (*mem_read)(void *ctx, uint64_t gpa, void *buf, size_t len);
	int (*mem_write)(void *ctx, uint64_t gpa, const void *buf, size_t len);
	/* For a backend in the host kernel (vhost) that reads and writes guest RAM itself:
	 * RAM region i (gpa, size, host address; -1 past the last one), and a range that
	 * backend wrote, marked dirty for snapshots and migration as mem_write does. */
	int (*mem_region)(void *ctx, uint32_t i, uint64_t *gpa, uint64_t *size, void **hva);
	void (*mark_dirty)(void *ctx, uint64_t gpa, uint64_t len);
	/* KVM_IOEVENTFD (a write of len bytes equal to datamatch at MMIO addr signals fd,
	 * inside KVM) and KVM_IRQFD (a signal of fd pulses interrupt line gsi), or with assign
	 * 0 their removal. 0, or an error code already set. */
	int (*ioeventfd)(void *ctx, uint64_t addr, uint32_t len, uint64_t datamatch, int fd,
			 int assign);
	int (*irqfd)(void *ctx, uint32_t gsi, int fd, int assign);

	/* Where a device registers at creation, before the VM starts. */
	struct vmm__devices *devices; /* its saved state */
	struct vmm__bus *pio;         /* its port ranges */
	struct vmm__bus *mmio;        /* its MMIO ranges */
};

#endif
