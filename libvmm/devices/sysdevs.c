/* Exit port, reset through the keyboard controller, and ports that must answer quietly
 * (POST code 0x80, PCI config space when there is no PCI) so boot logs stay readable. */
#include <stdio.h>
#include <string.h>

#include "libvmm/bus.h"
#include "libvmm/device_host.h"
#include "libvmm/devices/serial.h"
#include "libvmm/devices/sysdevs.h"

/* isa-debug-exit: a write of any width ends the VM with the value written as status. */
static void exit_port_io(void *opaque, uint64_t addr, uint8_t *data, uint32_t size, int is_write)
{
	const struct vmm__device_host *host = opaque;
	char detail[64];
	uint32_t v = 0;

	if (!is_write) {
		memset(data, 0xff, size);
		return;
	}
	memcpy(&v, data, size > 4 ? 4 : size);
	snprintf(detail, sizeof(detail), "guest wrote %u to the exit port", v);
	host->request_stop(host->ctx, VMM_EXIT_GUEST, (int)v, detail);
}

/* 8042 keyboard controller: command 0xfe pulses the CPU reset line, which Linux's reboot
 * and many small kernels use; we treat it as shutdown. Reads say "no data, ready". */
static void i8042_io(void *opaque, uint64_t addr, uint8_t *data, uint32_t size, int is_write)
{
	const struct vmm__device_host *host = opaque;

	if (!is_write) {
		memset(data, 0, size);
		return;
	}
	if (addr == 0x64 && data[0] == 0xfe)
		host->request_stop(host->ctx, VMM_EXIT_SHUTDOWN, -1, "guest reset through the 8042");
}

static void quiet_io(void *opaque, uint64_t addr, uint8_t *data, uint32_t size, int is_write)
{
	if (!is_write)
		memset(data, 0xff, size);
}

int vmm__sysdevs_create(const struct vmm__device_host *host, vmm_serial_fn serial_out,
			void *serial_opaque)
{
	/* The handlers get the host itself: it outlives them (it lives in the VM). */
	void *h = (void *)host;
	int r = vmm__serial_create(host, VMM_COM1_PORT, VMM_COM1_IRQ, serial_out, serial_opaque);

	if (!r)
		r = vmm__bus_add(host->pio, VMM_EXIT_PORT, 4, exit_port_io, h);
	if (!r)
		r = vmm__bus_add(host->pio, 0x60, 1, i8042_io, h);
	if (!r)
		r = vmm__bus_add(host->pio, 0x64, 1, i8042_io, h);
	if (!r)
		r = vmm__bus_add(host->pio, 0x80, 1, quiet_io, h);
	if (!r)
		r = vmm__bus_add(host->pio, 0xcf8, 8, quiet_io, h);
	return r;
}
