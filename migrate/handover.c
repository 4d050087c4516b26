/* The end of an unclear hand-over (protocol.h): whoever drives both sides says which one
 * keeps the guest. The library never guesses: a side in doubt cannot know whether the
 * other already runs the guest or is about to. */
#include "libvmm/error_internal.h"
#include "libvmm/vm_move.h"
#include "vmm/migrate.h"

int vmm_vm_in_doubt(const struct vmm_vm *vm)
{
	return vm && vmm__move_in_doubt(vm) ? 1 : 0;
}

/* RUN: the source resumes its paused guest, the destination starts its loaded one (or,
 * received with no_start, leaves it to the caller to start). */
static int take(struct vmm_vm *vm, int side)
{
	int r = 0;

	vmm__move_set_in_doubt(vm, 0);
	if (side == VMM__SIDE_SOURCE) {
		vmm__move_clear_migrated(vm);
		vmm__move_let_go(vm, 0);
		r = vmm_vm_resume(vm);
	} else if (vmm_vm_run_state(vm) == VMM_VM_CREATED) {
		r = vmm_vm_start(vm);
	}
	if (r) {
		/* Still nobody's: the caller may retry, or discard here and run it elsewhere.
		 * vmm__err formats through a copy, so wrapping the last detail is safe. */
		vmm__move_set_in_doubt(vm, side);
		return vmm__err(r, "resolve: %s", vmm_last_error());
	}
	return 0;
}

int vmm_migrate_resolve(struct vmm_vm *vm, enum vmm_resolve how)
{
	int side;

	if (!vm)
		return vmm__err(VMM_EINVAL, "vm is NULL");
	if (how != VMM_RESOLVE_RUN && how != VMM_RESOLVE_DISCARD)
		return vmm__err(VMM_EINVAL, "resolve: unknown action %d", (int)how);
	side = vmm__move_in_doubt(vm);
	if (!side)
		return vmm__err(VMM_ESTATE, "resolve: the VM's migration is not in doubt");
	if (how == VMM_RESOLVE_RUN)
		return take(vm, side);
	/* DISCARD: this copy is not the guest any more. A source stays PAUSED and migrated; a
	 * destination stays CREATED, migrated, and refuses to start. */
	vmm__move_set_migrated(vm);
	vmm__move_set_in_doubt(vm, 0);
	return 0;
}
