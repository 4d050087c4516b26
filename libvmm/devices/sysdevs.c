/* Exit port, reset through the keyboard controller, and ports that must answer quietly
 * (POST code 0x80, PCI config space when there is no PCI) so boot logs stay readable. */
#include <string.h>

#include "devices/serial.h"
#include "devices/sysdevs.h"
#include "vm_internal.h"

/* isa-debug-exit: a write of any width ends the VM with the value written as status. */
static void exit_port_io(void *opaque, uint64_t addr, uint8_t *data, uint32_t size, int is_write)
{
	struct vmm_vm *vm = opaque;
	uint32_t v = 0;

	if (!is_write) {
		memset(data, 0xff, size);
		return;
	}
	memcpy(&v, data, size > 4 ? 4 : size);
	vmm__vm_request_stop(vm, VMM_EXIT_GUEST, (int)v, "guest wrote %u to the exit port", v);
}

/* 8042 keyboard controller: command 0xfe pulses the CPU reset line, which Linux's reboot
 * and many small kernels use; we treat it as shutdown. Reads say "no data, ready". */
static void i8042_io(void *opaque, uint64_t addr, uint8_t *data, uint32_t size, int is_write)
{
	struct vmm_vm *vm = opaque;

	if (!is_write) {
		memset(data, 0, size);
		return;
	}
	if (addr == 0x64 && data[0] == 0xfe)
		vmm__vm_request_stop(vm, VMM_EXIT_SHUTDOWN, -1, "guest reset through the 8042");
}

static void quiet_io(void *opaque, uint64_t addr, uint8_t *data, uint32_t size, int is_write)
{
	if (!is_write)
		memset(data, 0xff, size);
}

int vmm__sysdevs_create(struct vmm_vm *vm)
{
	int r = vmm__serial_create(vm, VMM_COM1_PORT, VMM_COM1_IRQ);

	if (!r)
		r = vmm__bus_add(&vm->pio, VMM_EXIT_PORT, 4, exit_port_io, vm);
	if (!r)
		r = vmm__bus_add(&vm->pio, 0x60, 1, i8042_io, vm);
	if (!r)
		r = vmm__bus_add(&vm->pio, 0x64, 1, i8042_io, vm);
	if (!r)
		r = vmm__bus_add(&vm->pio, 0x80, 1, quiet_io, vm);
	if (!r)
		r = vmm__bus_add(&vm->pio, 0xcf8, 8, quiet_io, vm);
	return r;
}
