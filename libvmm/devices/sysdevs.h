/* The fixed devices every VM gets: COM1, the exit port at 0xf4 (QEMU's isa-debug-exit
 * protocol), and quiet sinks for legacy ports that guests poke during boot. */
#ifndef VMM_SYSDEVS_H
#define VMM_SYSDEVS_H

#include "vmm/vm.h"

struct vmm__device_host;

#define VMM_EXIT_PORT 0xf4

/* COM1's output goes to serial_out (NULL discards). */
int vmm__sysdevs_create(const struct vmm__device_host *host, vmm_serial_fn serial_out,
			void *serial_opaque);

#endif
