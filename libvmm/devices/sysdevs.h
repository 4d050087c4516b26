/* The fixed devices every VM gets: COM1, the exit port at 0xf4 (QEMU's isa-debug-exit
 * protocol), and quiet sinks for legacy ports that guests poke during boot. */
#ifndef VMM_SYSDEVS_H
#define VMM_SYSDEVS_H

struct vmm_vm;

#define VMM_EXIT_PORT 0xf4

int vmm__sysdevs_create(struct vmm_vm *vm);

#endif
