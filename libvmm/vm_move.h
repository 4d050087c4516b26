/* The core's one interface for a VM being moved: saved to or restored from a snapshot,
 * sent or received by a live migration. migrate/ reaches the VM only through this header
 * (plus memory.h, dirty.h and bitmap.h for RAM and its dirty sets), never through
 * vm_internal.h, so the VM's layout and run control can change without touching the
 * migration engine. */
#ifndef VMM_VM_MOVE_H
#define VMM_VM_MOVE_H

#include <stddef.h>
#include <stdint.h>

#include "libvmm/memory.h"
#include "vmm/vm.h"

struct vmm__dirty_ctx;


/* ---- what the VM is */

/* Guest RAM: the memfd, its mapping and its slots. */
struct vmm__memory *vmm__move_ram(struct vmm_vm *vm);
/* The VM's dirty-page tracking, for dirty.h's calls. */
struct vmm__dirty_ctx *vmm__move_dirty(struct vmm_vm *vm);

/* What a stream or snapshot says about the VM so that the other end can build its twin.
 * cmdline points into vm. */
struct vmm__move_shape {
	uint64_t mem_size;
	uint32_t vcpus;
	const char *cmdline;
	uint32_t dirty_ring_entries;
	uint64_t cpuid_digest; /* XXH3 of the CPUID table this host gives vCPUs */
};
void vmm__move_shape(struct vmm_vm *vm, struct vmm__move_shape *sh);

/* A CREATED VM to receive a moved one; ram_fd >= 0 maps RAM copy-on-write from that file
 * at ram_offset (lazy restore), else RAM is a fresh memfd. */
int vmm__move_create(const struct vmm_vm_config *cfg, int ram_fd, uint64_t ram_offset,
		     struct vmm_vm **out);
/* Hands a new VM's (fresh, untouched) RAM to a pager that loads it on demand from fd at
 * offset, checking each page against hashes (taken over, freed by the pager). A page that
 * fails stops the VM (VMM_EXIT_ERROR, status the VMM_E* code). VMM_EUNSUPPORTED where
 * userfaultfd is not available. */
int vmm__move_ram_pager(struct vmm_vm *vm, int fd, uint64_t offset, uint64_t *hashes);
/* Post-copy RAM (vmm__memory_postcopy_start) with the same failure handling: a page that
 * cannot come (a broken link) stops the VM before its fault is released. */
struct vmm__pager_source;
int vmm__move_ram_postcopy(struct vmm_vm *vm, const struct vmm__pager_source *src,
			   const uint64_t *have);
/* A warning through the VM's log callback. */
void vmm__move_warn(struct vmm_vm *vm, const char *msg);

/* ---- machine state (vm_state.c): every vCPU, the in-kernel devices and every device */

/* Captures a PAUSED or STOPPED VM's state and encodes it into *buf (malloc'd, the caller
 * frees it). VMM_ECPU if a vCPU is running a nested guest: that state is not saved. */
int vmm__move_state_encode(struct vmm_vm *vm, uint8_t **buf, size_t *len);
/* Decodes buf and installs it into a CREATED VM of the same shape, under the VM's lock,
 * then marks the VM loaded (it may start). Bytes that do not decode are reported as
 * `undecodable` (VMM_ESTATEDATA, or VMM_ECORRUPT where a checksum vouched for them). */
int vmm__move_state_install(struct vmm_vm *vm, const void *buf, size_t len, int undecodable);
/* By default vmm__move_state_install refuses (VMM_ECPU) a state whose guest saw CPU
 * features this host lacks, ran at a TSC rate this host cannot give, or used nested
 * virtualization; allow 1 turns each refusal into a warning through the VM's log. */
void vmm__move_allow_cpu_mismatch(struct vmm_vm *vm, int allow);
/* Times one capture, encode, decode and load of a new VM's own state: what the real state
 * will cost in a migration's pause. 0 if a step fails. */
uint64_t vmm__move_state_rehearse(struct vmm_vm *vm);

/* ---- the job lock: what moves a VM owns it meanwhile */

/* What owns a VM while it relies on the VM's run state staying as it left it. */
enum vmm__job {
	VMM__JOB_MIGRATE = 1, /* vmm_migrate_send(_to) */
	VMM__JOB_SNAPSHOT,    /* vmm_snapshot_save */
	VMM__JOB_STATE_SAVE,  /* vmm_vm_state_save */
};
/* Makes the job the VM's owner until vmm__job_end(): meanwhile vmm_vm_pause, _resume,
 * _state_save, _state_load, vmm_snapshot_save and vmm_migrate_send from anywhere (the
 * job's own callbacks included: the owner is the VM, not a thread) return VMM_EJOB, and
 * the job pauses and resumes through vmm__move_pause/_resume below. VMM_EJOB if another
 * job owns it. vmm_vm_stop is never refused: a job must expect the VM to stop. */
int vmm__job_begin(struct vmm_vm *vm, enum vmm__job kind);
/* Called once for every successful begin, at every exit of the job. */
void vmm__job_end(struct vmm_vm *vm);

/* ---- running while being moved */

/* Pauses a RUNNING VM for the job that owns it (*paused_by_us = 1 then); a PAUSED one
 * stays so. Any other state (the guest ended meanwhile) is VMM_ESTATE with `why` as the
 * detail. */
int vmm__move_pause(struct vmm_vm *vm, int *paused_by_us, const char *why);
/* Resumes what vmm__move_pause paused (not a VM marked migrated). */
int vmm__move_resume(struct vmm_vm *vm);
/* Auto-converge: the vCPU throttle (0..99 %) now, and setting it. Controller thread. */
uint32_t vmm__move_throttle(struct vmm_vm *vm);
int vmm__move_set_throttle(struct vmm_vm *vm, uint32_t pct);

/* ---- migration and snapshot bookkeeping */

/* Marks the VM sent away: it stays PAUSED and refuses to resume. */
void vmm__move_set_migrated(struct vmm_vm *vm);
int vmm__move_migrated(const struct vmm_vm *vm);
/* The cancel flag: raised from any thread (ignored once the source let go), cleared by
 * the sender as it starts. */
void vmm__move_cancel(struct vmm_vm *vm, int on);
int vmm__move_cancelled(const struct vmm_vm *vm);
/* The flag itself, for transports that poll it while they wait. */
const int *vmm__move_cancel_flag(const struct vmm_vm *vm);
/* The migration hand-over (migrate/protocol.h). let_go 1: the source is about to write GO;
 * refused with VMM_ECANCELED if a cancel came first, and from then on cancels are ignored.
 * let_go 0: the source has the guest back (resolved, or the destination failed its start). */
int vmm__move_let_go(struct vmm_vm *vm, int on);
enum { VMM__SIDE_SOURCE = 1, VMM__SIDE_DEST = 2 };
/* Marks the VM in doubt as side (0: no longer). A source in doubt is also migrated (it stays
 * PAUSED); a destination in doubt refuses to start. */
void vmm__move_set_in_doubt(struct vmm_vm *vm, int side);
/* Which side the VM is in doubt as, 0 if it is not. */
int vmm__move_in_doubt(const struct vmm_vm *vm);
/* Marks a new VM as a migration's destination, before its prepare callback adds devices
 * (move_state.h: receiving). */
void vmm__move_set_receiving(struct vmm_vm *vm);
/* What the devices hold for the guest outside the VM (a disk image's lock, device.h):
 * released by the source just before GO; taken back by a source that keeps the guest.
 * vmm_vm_start and resume acquire it too, so a guest never runs without it. */
int vmm__move_devices_release(struct vmm_vm *vm);
/* The VM's virtio-blk models (virtio_blk.h), in slot order: how many (at most max). */
unsigned vmm__move_disks(struct vmm_vm *vm, void **disks, unsigned max);
int vmm__move_devices_acquire(struct vmm_vm *vm);
/* Clears `migrated` (a source taking its guest back). */
void vmm__move_clear_migrated(struct vmm_vm *vm);
/* The snapshot the running dirty tracker counts from: 1 and its id, or 0 if none. */
int vmm__move_track_base(const struct vmm_vm *vm, uint8_t id[16]);
/* Sets it (id NULL: none). */
void vmm__move_set_track_base(struct vmm_vm *vm, const uint8_t *id);

#endif
