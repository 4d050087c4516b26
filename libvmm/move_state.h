/* The fields of a VM that only snapshots and migration use. Apart from vm_move.h, so that
 * vm_internal.h can embed them without including the interface that needs the VM. */
#ifndef VMM_MOVE_STATE_H
#define VMM_MOVE_STATE_H

#include <stdint.h>

/* What only moving a VM needs, one member of struct vmm_vm (vm->move). Embedded rather
 * than pointed to: a VM then needs no extra allocation that could fail or leak, and the
 * fields still have one owner (vm_move.c). */
struct vmm__move_state {
	int migrated; /* sent away by a live migration: stays PAUSED for good (vm->lock) */
	int cancel;   /* set by vmm_migrate_cancel() from any thread, read by the sender (atomic;
		       * raised under vm->lock, so that it and let_go exclude each other) */
	/* The source has written or is writing GO (protocol.h): it never resumes by itself
	 * again and a cancel is refused (vm->lock). */
	int let_go;
	/* The hand-over's outcome is unknown: VMM__SIDE_SOURCE (PAUSED, also migrated, so
	 * resume is refused) or VMM__SIDE_DEST (loaded, start refused); 0: not in doubt.
	 * Cleared by vmm_migrate_resolve() (vm->lock). */
	int in_doubt;
	/* Dirty tracking kept on after a snapshot (VMM_SNAPSHOT_TRACK) counts from the
	 * snapshot with this id; an incremental snapshot needs that snapshot as its parent.
	 * Controller thread only. */
	uint8_t track_base_id[16];
	int track_base_valid;
	/* A state installed into this VM may have CPU features, a TSC rate or nested state
	 * this host cannot give (warned, not refused). Controller thread only. */
	int allow_cpu_mismatch;
	/* Built by a migration's receive: a device added now may find what it holds for the
	 * guest (a disk's lock) still held by the source, and takes it at start (vm->lock). */
	int receiving;
};

#endif
