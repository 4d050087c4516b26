/* vCPU throttling for auto-converge: a thread owned by the VM kicks every vCPU out of
 * KVM_RUN once per slice; each then sleeps throttle_pct% of the slice (vcpu.c). A guest
 * that dirties memory faster than the link carries it is slowed until pre-copy converges. */
#include <errno.h>
#include <time.h>

#include "error_internal.h"
#include "vm_internal.h"

static void *throttle_main(void *arg)
{
	struct vmm_vm *vm = arg;
	struct timespec slice = { 0, (long)VMM_THROTTLE_SLICE_NS };

	for (;;) {
		nanosleep(&slice, NULL);
		pthread_mutex_lock(&vm->lock);
		if (!vm->throttle_pct || vm->stop_req) {
			pthread_mutex_unlock(&vm->lock);
			return NULL;
		}
		if (!vm->pause_req)
			for (uint32_t i = 0; i < vm->nvcpus; i++) {
				vm->vcpus[i].throttle_req = 1;
				vmm__vcpu_kick(&vm->vcpus[i]);
			}
		pthread_mutex_unlock(&vm->lock);
	}
}

int vmm__vm_set_throttle(struct vmm_vm *vm, uint32_t pct)
{
	int e;

	if (pct > 99)
		pct = 99;
	pthread_mutex_lock(&vm->lock);
	vm->throttle_pct = pct;
	pthread_cond_broadcast(&vm->cond); /* sleepers re-read it */
	pthread_mutex_unlock(&vm->lock);
	if (pct && !vm->throttle_running) {
		e = pthread_create(&vm->throttle_thread, NULL, throttle_main, vm);
		if (e) {
			errno = e;
			return vmm__err_sys(VMM_ESYS, "throttle thread");
		}
		vm->throttle_running = 1;
	} else if (!pct && vm->throttle_running) {
		pthread_join(vm->throttle_thread, NULL);
		vm->throttle_running = 0;
	}
	return 0;
}
