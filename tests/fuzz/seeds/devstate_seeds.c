/* Writes seeds for the devstate target: the machine state (vmm_vm_state_save) of a paused
 * 2 MiB, 1-vCPU VM on the fake kernel, with an embedder device "fuzz.dev" saving a few
 * bytes, and one without that device's state.
 *   devstate_seeds DIR      (writes DIR/seed-machine-dev and DIR/seed-machine) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_vm.h"

static int dev_save(void *opaque, uint8_t *buf, size_t cap, size_t *len)
{
	static const char st[] = "device registers: 0x10 0x20 0x30";

	*len = sizeof(st);
	if (cap >= sizeof(st))
		memcpy(buf, st, sizeof(st));
	return 0;
}

static int dev_load(void *opaque, const uint8_t *buf, size_t len)
{
	return 0;
}

static int seed(const char *dir, const char *name, int with_dev)
{
	char path[4096];
	struct vmm_vm *vm = fake_vm_new_loaded(2, 1, NULL, NULL);
	void *buf;
	size_t len;
	FILE *f;

	if (!vm || (with_dev && vmm_vm_register_device_state(vm, "fuzz.dev", dev_save, dev_load,
							     NULL)) ||
	    vmm_vm_start(vm) || vmm_vm_pause(vm) || vmm_vm_state_save(vm, &buf, &len))
		return -1;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f))
		return -1;
	free(buf);
	vmm_vm_destroy(vm);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	fake_kvm_install();
	if (seed(argv[1], "seed-machine-dev", 1) || seed(argv[1], "seed-machine", 0)) {
		fprintf(stderr, "devstate_seeds: %s\n", vmm_last_error());
		return 1;
	}
	return 0;
}
