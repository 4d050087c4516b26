/* 8250/16550A UART (COM1 at 0x3f8, IRQ 4): transmit goes straight to the embedder's sink
 * (no buffering, so a pause or a snapshot never loses output), receive from a host FIFO,
 * interrupts through the in-kernel irqchip. */
#ifndef VMM_SERIAL_H
#define VMM_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/vm.h"

struct vmm__device_host;
struct vmm__serial;

#define VMM_COM1_PORT 0x3f8
#define VMM_COM1_IRQ 4
/* Its name in the device list (and in saved state). */
#define VMM_SERIAL_DEVICE "uart-com1"

/* Registers a UART at port (8 ports) raising irq; transmitted bytes go to out (NULL
 * discards). */
int vmm__serial_create(const struct vmm__device_host *host, uint16_t port, uint32_t irq,
		       vmm_serial_fn out, void *out_opaque);
/* Host-to-guest bytes; returns how many fitted. Any thread. */
size_t vmm__serial_input(struct vmm__serial *s, const uint8_t *buf, size_t len);

#endif
