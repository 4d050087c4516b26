/* Run control: the protocol between the thread that drives a VM (start, pause, resume,
 * stop, throttle) and its vCPU threads, apart from KVM. vCPUs are numbered 0..n-1; the
 * owner supplies a kicker that makes vCPU i leave its run call, so the protocol can be
 * tested with plain threads.
 *
 * A vCPU thread loops: run the guest; when the run call returns because of a kick, call
 * vmm__run_control_checkpoint(), which parks it during a pause, sleeps it for the
 * throttle, or tells it to leave; when the thread ends, it calls vmm__run_control_exited().
 * Lock order: the VM's own lock (if the caller holds one) before run control's. */
#ifndef VMM_RUN_CONTROL_H
#define VMM_RUN_CONTROL_H

#include <stdint.h>

#include "vmm/vm.h"

struct vmm__run_control;

/* How run control reaches the vCPUs. All three run with run control's lock held; kick
 * is called only for vCPUs whose thread was spawned and has not called exited(). */
struct vmm__run_kicker {
	/* Makes vCPU i leave its run call promptly, and return at once from the next one
	 * until clear() is called. Must not block. */
	void (*kick)(void *ctx, uint32_t i);
	/* vCPU i may run the guest again; called on vCPU i's own thread. */
	void (*clear)(void *ctx, uint32_t i);
	/* Starts vCPU i's thread; 0, or an error code already set with vmm__err. */
	int (*spawn)(void *ctx, uint32_t i);
};

/* Auto-converge: a throttled vCPU sleeps pct% of every slice of this length. */
#define VMM_THROTTLE_SLICE_NS 10000000ull

/* A run control for n vCPUs in state CREATED. VMM_ENOMEM. */
int vmm__run_control_new(uint32_t n, const struct vmm__run_kicker *kicker, void *ctx,
			 struct vmm__run_control **out);
/* Stops the throttle thread; the vCPU threads must have ended. NULL is a no-op. */
void vmm__run_control_free(struct vmm__run_control *rc);

/* ---- the controller's side (any thread but a vCPU's, unless said otherwise) */

enum vmm_vm_run_state vmm__run_control_state(struct vmm__run_control *rc);
/* CREATED -> RUNNING, spawning every vCPU. If a spawn fails, the vCPUs already started
 * are told to stop, the state is STOPPED and the spawn's error is returned. VMM_ESTATE
 * unless CREATED. */
int vmm__run_control_start(struct vmm__run_control *rc);
/* A job (a migration, a snapshot, a state capture) owns the run state while it relies on
 * it: between job_begin and job_end, pause and resume asked for by the embedder are
 * refused with VMM_EJOB, checked under the same lock as the transition itself, so none
 * slips in between a job's pause and its capture. The owner is the VM, not a thread: the
 * job's own callbacks into the embedder are refused too. A stop is never refused. */
enum vmm__rc_caller {
	VMM__RC_EMBEDDER = 0, /* a public call: refused while a job owns the VM */
	VMM__RC_JOB = 1,      /* the job itself */
};
/* Makes `what` (e.g. "a migration", static) the owner; VMM_EJOB if a job owns it already. */
int vmm__run_control_job_begin(struct vmm__run_control *rc, const char *what);
void vmm__run_control_job_end(struct vmm__run_control *rc);
/* VMM_EJOB (detail naming call and owner) while a job owns the VM, else 0. */
int vmm__run_control_job_check(struct vmm__run_control *rc, const char *call);

/* RUNNING -> PAUSED: returns once every live vCPU is parked. 0 if already PAUSED;
 * VMM_ESTATE if not running, or if a stop came first; VMM_EJOB (see above). */
int vmm__run_control_pause(struct vmm__run_control *rc, enum vmm__rc_caller who);
/* PAUSED -> RUNNING. 0 if already RUNNING; VMM_ESTATE from any other state; VMM_EJOB. */
int vmm__run_control_resume(struct vmm__run_control *rc, enum vmm__rc_caller who);
/* Ends the run (any thread, vCPU threads and devices included): records the first reason
 * given, kicks every vCPU out and makes the state STOPPED. Later reasons are dropped. */
void vmm__run_control_stop(struct vmm__run_control *rc, enum vmm_exit_reason reason,
			   int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Waits until STOPPED (timeout_ms < 0: for ever) and copies the exit record into ex (may
 * be NULL). Returns 0, or VMM_ETIMEDOUT with *state set to the state at that time (no
 * error message: the caller words it). */
int vmm__run_control_wait_stopped(struct vmm__run_control *rc, int timeout_ms,
				  struct vmm_exit *ex, enum vmm_vm_run_state *state);
/* Waits until every spawned vCPU has called vmm__run_control_exited(). */
void vmm__run_control_wait_exited(struct vmm__run_control *rc);
/* Sets the throttle (0..99 %, larger is clamped), starting or stopping the thread that
 * kicks the vCPUs once per slice. VMM_ESYS if that thread cannot start. One controller
 * thread at a time. */
int vmm__run_control_set_throttle(struct vmm__run_control *rc, uint32_t pct);
uint32_t vmm__run_control_throttle(struct vmm__run_control *rc);

/* ---- the vCPU's side (vCPU i's own thread) */

/* Call when the run call returned because of a kick: sleeps the throttled share of a
 * slice if asked, parks while a pause is requested, and re-enables running unless more
 * is pending. Returns 1 when the thread should end. */
int vmm__run_control_checkpoint(struct vmm__run_control *rc, uint32_t i);
/* vCPU i's thread is about to end: it counts as exited, no longer as running, and is
 * never kicked again (so it may be joined at once). */
void vmm__run_control_exited(struct vmm__run_control *rc, uint32_t i);

#endif
