/* libvmm: create, run, pause, snapshot, restore and live-migrate KVM virtual machines.
 * The umbrella header; include only this one. */
#ifndef VMM_VMM_H
#define VMM_VMM_H

#include "vmm/version.h"
#include "vmm/error.h"
#include "vmm/vm.h"
#include "vmm/devices.h"
#include "vmm/snapshot.h"
#include "vmm/migrate.h"
#include "vmm/sandbox.h"

#endif
