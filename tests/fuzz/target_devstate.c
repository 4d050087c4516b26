/* Fuzz target: machine state loaded into a new VM, as vmm_vm_state_load, a restore and a
 * receive do: decoding, the shape and CPU checks, then every loader: vCPUs (registers,
 * MSRs, LAPIC, events), the in-kernel devices (PIC, IOAPIC, PIT, kvmclock), libvmm's own
 * devices (the serial port) and an embedder's device through its load hook. On the fake
 * kernel: a 2 MiB, 1-vCPU VM per input (a failed load must leave it CREATED, so it is not
 * reused: a half-applied load would make runs depend on each other). The state target
 * (target_state.c) only decodes; this one applies. Seeds: seeds/devstate_seeds.c. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fake_vm.h"

/* The embedder's device: reads every byte it is given, as a real one would parse them. */
static int dev_load(void *opaque, const uint8_t *buf, size_t len)
{
	volatile uint8_t sum = 0;

	if (len > VMM_DEVICE_STATE_MAX)
		abort(); /* libvmm promised at most this */
	for (size_t i = 0; i < len; i++)
		sum += buf[i];
	(void)sum;
	return len && buf[0] == 0xff ? VMM_ESTATEDATA : 0; /* the device may refuse, too */
}

static int dev_save(void *opaque, uint8_t *buf, size_t cap, size_t *len)
{
	*len = 0;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int installed;
	struct vmm_vm *vm;

	if (!installed) {
		fake_kvm_install();
		installed = 1;
	}
	vm = fake_vm_new(2, 1, 0, NULL, NULL);
	if (!vm)
		return 0;
	if (vmm_vm_register_device_state(vm, "fuzz.dev", dev_save, dev_load, NULL))
		abort();
	vmm_vm_state_load(vm, data, size);
	vmm_vm_destroy(vm);
	return 0;
}
