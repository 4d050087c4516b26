/* Internal error helpers: record the per-thread detail and return the code, so a failure
 * site reads `return vmm__err(VMM_EKVM, "KVM_CREATE_VM");`. */
#ifndef VMM_ERROR_INTERNAL_H
#define VMM_ERROR_INTERNAL_H

#include "vmm/error.h"

/* Sets the detail from a printf format; returns code. */
int vmm__err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sets the detail to "what: strerror(errno)"; returns code; errno is preserved. */
int vmm__err_sys(int code, const char *what);
void vmm__err_clear(void);

#endif
