/* The library's side of the sandbox (vmm/sandbox.h): what its threads call as they start,
 * and the allow-lists (sandbox_lists.c). */
#ifndef VMM_SANDBOX_INTERNAL_H
#define VMM_SANDBOX_INTERNAL_H

#include <stddef.h>

#include "vmm/sandbox.h"

struct vmm__sandbox_list {
	const char *const *names;
	size_t count;
	/* If set, ioctl is allowed with these requests only. */
	const unsigned long *ioctls;
	size_t nioctls;
};
extern const struct vmm__sandbox_list vmm__sandbox_lists[VMM_THREAD_KINDS];

/* Called by each thread the library starts, once its setup is done: names the thread
 * (name may be NULL) and, if vmm_sandbox_enable() asked for this kind, installs its filter.
 * Returns 0, or the error of vmm_sandbox_apply(): the thread must then not do its job. */
int vmm__sandbox_thread(enum vmm_thread_kind kind, const char *name);

#endif
