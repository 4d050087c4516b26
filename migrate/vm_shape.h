/* A VM's shape (memory size, vCPUs, CPUID digest, command line) as the Hello message that
 * opens every stream and snapshot, and the checks a receiver makes before building a VM
 * of that shape. Shared by snapshots and live migration. */
#ifndef VMM_VM_SHAPE_H
#define VMM_VM_SHAPE_H

#include <stdint.h>

#include "stream.pb-c.h"
#include "vmm/vm.h"

struct vmm__hello_buf {
	Vmm__Stream__Hello hello;
	Vmm__Stream__VmShape shape;
};

/* Fills a Hello (pointing into vm, valid while vm lives) for the current format. */
void vmm__hello_from_vm(struct vmm_vm *vm, uint64_t required_features,
			struct vmm__hello_buf *hb);
/* Checks versions, required features and the shape's bounds: VMM_EVERSION, VMM_EFEATURE,
 * VMM_ESHAPE with a detail naming what. Does not need a VM. */
int vmm__hello_check(const Vmm__Stream__Hello *h);
/* A config for a VM of h's shape (h must have passed vmm__hello_check). */
void vmm__hello_to_config(const Vmm__Stream__Hello *h, struct vmm_vm_config *cfg);

#endif
