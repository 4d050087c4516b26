/* Run control: one lock and one condition variable carry the whole protocol between the
 * controller and the vCPU threads (see run_control.h).
 *
 * Pause: the controller sets pause_req and kicks every vCPU. A kicked vCPU returns from
 * its run call and reaches the checkpoint, the only place it parks; the owner's kicker
 * makes sure that happens only once the run call has nothing half done (for KVM: after
 * KVM_RUN returned -EINTR, so no port or MMIO read is outstanding). The controller waits
 * until parked + exited covers every vCPU. A stop beats a pause at every step.
 *
 * Throttle (auto-converge): a thread kicks every vCPU once per slice and marks it; each
 * marked vCPU then sleeps pct% of the slice in its checkpoint, so a guest that dirties
 * memory faster than the link carries it is slowed until pre-copy converges. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libvmm/sandbox.h"
#include "libvmm/error_internal.h"
#include "libvmm/run_control.h"

struct vmm__run_control {
	const struct vmm__run_kicker *kicker;
	void *ctx;
	uint32_t n;
	uint32_t nspawned;

	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t cond;  /* any change below: parked, exited, stopped, resumed */
	enum vmm_vm_run_state state;
	int pause_req;
	int stop_req;
	uint32_t nparked;
	uint32_t nexited;
	struct vmm_exit exit; /* the first stop's reason */
	const char *job; /* what owns the VM (vmm__run_control_job_begin), or NULL */
	uint32_t throttle_pct;
	uint8_t *throttle_req; /* per vCPU: sleep once at the next checkpoint */
	/* Per vCPU: its thread has ended, or was never spawned. Such a vCPU is never kicked
	 * again: its thread may have been joined, and a joined thread's id may already name
	 * another thread (glibc reuses them), so a signal to it would hit a stranger. */
	uint8_t *gone;

	/* The throttle thread; touched by the controller only. */
	pthread_t throttle_thread;
	int throttle_running;
};

int vmm__run_control_new(uint32_t n, const struct vmm__run_kicker *kicker, void *ctx,
			 struct vmm__run_control **out)
{
	struct vmm__run_control *rc = calloc(1, sizeof(*rc));
	pthread_condattr_t ca;

	*out = NULL;
	if (!rc || !(rc->throttle_req = calloc(n ? n : 1, 1)) || !(rc->gone = malloc(n ? n : 1))) {
		if (rc)
			free(rc->throttle_req);
		free(rc);
		return vmm__err(VMM_ENOMEM, "run control");
	}
	rc->kicker = kicker;
	rc->ctx = ctx;
	rc->n = n;
	rc->state = VMM_VM_CREATED;
	memset(rc->gone, 1, n ? n : 1);
	pthread_mutex_init(&rc->lock, NULL);
	/* Throttle sleeps use absolute monotonic deadlines. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rc->cond, &ca);
	pthread_condattr_destroy(&ca);
	*out = rc;
	return 0;
}

void vmm__run_control_free(struct vmm__run_control *rc)
{
	if (!rc)
		return;
	vmm__run_control_set_throttle(rc, 0);
	pthread_cond_destroy(&rc->cond);
	pthread_mutex_destroy(&rc->lock);
	free(rc->throttle_req);
	free(rc->gone);
	free(rc);
}

/* Kicks every vCPU whose thread still runs; lock held. */
static void kick_all(struct vmm__run_control *rc)
{
	for (uint32_t i = 0; i < rc->n; i++)
		if (!rc->gone[i])
			rc->kicker->kick(rc->ctx, i);
}

enum vmm_vm_run_state vmm__run_control_state(struct vmm__run_control *rc)
{
	enum vmm_vm_run_state st;

	pthread_mutex_lock(&rc->lock);
	st = rc->state;
	pthread_mutex_unlock(&rc->lock);
	return st;
}

int vmm__run_control_start(struct vmm__run_control *rc)
{
	int r = 0;

	pthread_mutex_lock(&rc->lock);
	if (rc->state != VMM_VM_CREATED) {
		r = vmm__err(VMM_ESTATE, "start: VM is %s", vmm_vm_run_state_name(rc->state));
		goto out;
	}
	rc->state = VMM_VM_RUNNING;
	/* Spawned under the lock, so a vCPU that stops at once kicks only started threads. */
	for (; rc->nspawned < rc->n; rc->nspawned++) {
		r = rc->kicker->spawn(rc->ctx, rc->nspawned);
		if (!r)
			rc->gone[rc->nspawned] = 0;
		if (r) {
			rc->stop_req = 1;
			rc->state = VMM_VM_STOPPED;
			rc->exit = (struct vmm_exit){ .reason = VMM_EXIT_ERROR, .status = -1 };
			snprintf(rc->exit.detail, sizeof(rc->exit.detail),
				 "could not start vCPU threads");
			kick_all(rc);
			pthread_cond_broadcast(&rc->cond);
			break;
		}
	}
out:
	pthread_mutex_unlock(&rc->lock);
	return r;
}

int vmm__run_control_job_begin(struct vmm__run_control *rc, const char *what)
{
	int r = 0;

	pthread_mutex_lock(&rc->lock);
	if (rc->job)
		r = vmm__err(VMM_EJOB, "%s owns the VM until it ends", rc->job);
	else
		rc->job = what;
	pthread_mutex_unlock(&rc->lock);
	return r;
}

void vmm__run_control_job_end(struct vmm__run_control *rc)
{
	pthread_mutex_lock(&rc->lock);
	rc->job = NULL;
	pthread_mutex_unlock(&rc->lock);
}

/* lock held */
static int refused(struct vmm__run_control *rc, enum vmm__rc_caller who, const char *call)
{
	if (who == VMM__RC_JOB || !rc->job)
		return 0;
	return vmm__err(VMM_EJOB, "%s: %s owns the VM until it ends", call, rc->job);
}

int vmm__run_control_job_check(struct vmm__run_control *rc, const char *call)
{
	int r;

	pthread_mutex_lock(&rc->lock);
	r = refused(rc, VMM__RC_EMBEDDER, call);
	pthread_mutex_unlock(&rc->lock);
	return r;
}

int vmm__run_control_pause(struct vmm__run_control *rc, enum vmm__rc_caller who)
{
	int r;

	pthread_mutex_lock(&rc->lock);
	r = refused(rc, who, "pause");
	if (r || rc->state == VMM_VM_PAUSED)
		goto out;
	if (rc->state != VMM_VM_RUNNING) {
		r = vmm__err(VMM_ESTATE, "pause: VM is %s", vmm_vm_run_state_name(rc->state));
		goto out;
	}
	rc->pause_req = 1;
	kick_all(rc);
	while (rc->nparked + rc->nexited < rc->n && !rc->stop_req)
		pthread_cond_wait(&rc->cond, &rc->lock);
	if (rc->stop_req) {
		rc->pause_req = 0;
		r = vmm__err(VMM_ESTATE, "pause: the VM stopped meanwhile");
		goto out;
	}
	rc->state = VMM_VM_PAUSED;
out:
	pthread_mutex_unlock(&rc->lock);
	return r;
}

int vmm__run_control_resume(struct vmm__run_control *rc, enum vmm__rc_caller who)
{
	int r;

	pthread_mutex_lock(&rc->lock);
	r = refused(rc, who, "resume");
	if (r || rc->state == VMM_VM_RUNNING)
		goto out;
	if (rc->state != VMM_VM_PAUSED) {
		r = vmm__err(VMM_ESTATE, "resume: VM is %s", vmm_vm_run_state_name(rc->state));
		goto out;
	}
	/* Each parked vCPU clears its own kick as it leaves the checkpoint. */
	rc->pause_req = 0;
	rc->state = VMM_VM_RUNNING;
	pthread_cond_broadcast(&rc->cond);
out:
	pthread_mutex_unlock(&rc->lock);
	return r;
}

void vmm__run_control_stop(struct vmm__run_control *rc, enum vmm_exit_reason reason,
			   int status, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&rc->lock);
	if (rc->exit.reason == VMM_EXIT_NONE) {
		rc->exit.reason = reason;
		rc->exit.status = status;
		va_start(ap, fmt);
		vsnprintf(rc->exit.detail, sizeof(rc->exit.detail), fmt, ap);
		va_end(ap);
	}
	rc->stop_req = 1;
	rc->state = VMM_VM_STOPPED;
	kick_all(rc);
	pthread_cond_broadcast(&rc->cond);
	pthread_mutex_unlock(&rc->lock);
}

static struct timespec deadline_after_ns(uint64_t ns)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += (time_t)(ns / 1000000000ull);
	t.tv_nsec += (long)(ns % 1000000000ull);
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

int vmm__run_control_wait_stopped(struct vmm__run_control *rc, int timeout_ms,
				  struct vmm_exit *ex, enum vmm_vm_run_state *state)
{
	struct timespec deadline = deadline_after_ns(timeout_ms < 0 ? 0 : (uint64_t)timeout_ms *
								  1000000ull);
	int r = 0;

	pthread_mutex_lock(&rc->lock);
	while (rc->state != VMM_VM_STOPPED) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&rc->cond, &rc->lock);
		} else if (pthread_cond_timedwait(&rc->cond, &rc->lock, &deadline) == ETIMEDOUT &&
			   rc->state != VMM_VM_STOPPED) {
			r = VMM_ETIMEDOUT;
			if (state)
				*state = rc->state;
			break;
		}
	}
	if (!r && ex)
		*ex = rc->exit;
	pthread_mutex_unlock(&rc->lock);
	return r;
}

void vmm__run_control_wait_exited(struct vmm__run_control *rc)
{
	pthread_mutex_lock(&rc->lock);
	while (rc->nexited < rc->nspawned)
		pthread_cond_wait(&rc->cond, &rc->lock);
	pthread_mutex_unlock(&rc->lock);
}

static void *throttle_main(void *arg)
{
	struct vmm__run_control *rc = arg;
	struct timespec slice = { 0, (long)VMM_THROTTLE_SLICE_NS };

	/* Unconfined it could not stay; unthrottled the migration goes on (it converges
	 * later, or hits its caps). */
	if (vmm__sandbox_thread(VMM_THREAD_DEVICE, "vmm-throttle"))
		return NULL;

	for (;;) {
		nanosleep(&slice, NULL);
		pthread_mutex_lock(&rc->lock);
		if (!rc->throttle_pct || rc->stop_req) {
			pthread_mutex_unlock(&rc->lock);
			return NULL;
		}
		if (!rc->pause_req) {
			for (uint32_t i = 0; i < rc->n; i++)
				rc->throttle_req[i] = 1;
			kick_all(rc);
		}
		pthread_mutex_unlock(&rc->lock);
	}
}

int vmm__run_control_set_throttle(struct vmm__run_control *rc, uint32_t pct)
{
	int e;

	if (pct > 99)
		pct = 99;
	pthread_mutex_lock(&rc->lock);
	rc->throttle_pct = pct;
	pthread_cond_broadcast(&rc->cond);
	pthread_mutex_unlock(&rc->lock);
	if (pct && !rc->throttle_running) {
		e = pthread_create(&rc->throttle_thread, NULL, throttle_main, rc);
		if (e) {
			errno = e;
			return vmm__err_sys(VMM_ESYS, "throttle thread");
		}
		rc->throttle_running = 1;
	} else if (!pct && rc->throttle_running) {
		pthread_join(rc->throttle_thread, NULL);
		rc->throttle_running = 0;
	}
	return 0;
}

uint32_t vmm__run_control_throttle(struct vmm__run_control *rc)
{
	uint32_t pct;

	pthread_mutex_lock(&rc->lock);
	pct = rc->throttle_pct;
	pthread_mutex_unlock(&rc->lock);
	return pct;
}

/* Sleeps the throttled share of a slice, unless a pause or stop comes; lock held. */
static void throttle_sleep(struct vmm__run_control *rc, uint32_t i)
{
	uint32_t pct = rc->throttle_pct;
	struct timespec t;

	rc->throttle_req[i] = 0;
	if (!pct || pct > 99)
		return;
	t = deadline_after_ns(VMM_THROTTLE_SLICE_NS * pct / (100 - pct));
	while (!rc->pause_req && !rc->stop_req &&
	       pthread_cond_timedwait(&rc->cond, &rc->lock, &t) == 0)
		;
}

int vmm__run_control_checkpoint(struct vmm__run_control *rc, uint32_t i)
{
	int stop;

	pthread_mutex_lock(&rc->lock);
	if (rc->throttle_req[i])
		throttle_sleep(rc, i);
	if (rc->pause_req && !rc->stop_req) {
		rc->nparked++;
		pthread_cond_broadcast(&rc->cond);
		while (rc->pause_req && !rc->stop_req)
			pthread_cond_wait(&rc->cond, &rc->lock);
		rc->nparked--;
	}
	stop = rc->stop_req;
	/* Cleared under the lock: a kick for a new request comes after this point. */
	if (!stop && !rc->pause_req)
		rc->kicker->clear(rc->ctx, i);
	pthread_mutex_unlock(&rc->lock);
	return stop;
}

void vmm__run_control_exited(struct vmm__run_control *rc, uint32_t i)
{
	pthread_mutex_lock(&rc->lock);
	rc->gone[i] = 1;
	rc->nexited++;
	pthread_cond_broadcast(&rc->cond);
	pthread_mutex_unlock(&rc->lock);
}
