/* 8250/16550A UART (COM1 at 0x3f8, IRQ 4): transmit goes straight to the embedder's sink
 * (no buffering, so a pause or a snapshot never loses output), receive from a host FIFO,
 * interrupts through the in-kernel irqchip. */
#ifndef VMM_SERIAL_H
#define VMM_SERIAL_H

#include <stddef.h>
#include <stdint.h>

struct vmm_vm;
struct vmm__serial;

#define VMM_COM1_PORT 0x3f8
#define VMM_COM1_IRQ 4

int vmm__serial_create(struct vmm_vm *vm, uint16_t port, uint32_t irq);
/* Host-to-guest bytes; returns how many fitted. Any thread. */
size_t vmm__serial_input(struct vmm__serial *s, const uint8_t *buf, size_t len);

#endif
