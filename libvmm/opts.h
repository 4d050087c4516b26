/* The one way a public entry point takes a caller's options struct. Every such struct
 * starts with `uint32_t size` (what the caller's header said sizeof was) and ends with
 * reserved room, so a program built against an older or newer header still works. */
#ifndef VMM_OPTS_H
#define VMM_OPTS_H

#include <stddef.h>

/* Copies the caller's src over dst, which the caller filled with defaults (its _init()):
 * fields the caller's header did not know keep their defaults. src NULL keeps them all.
 * Rejects with VMM_EINVAL a size below min_size (the struct was not initialised) and a
 * larger struct whose bytes past dst_size are not zero (options this library does not
 * know would be ignored silently). dst->size becomes dst_size. `what` names the struct's
 * _init() in the message. */
int vmm__opts_copy(void *dst, size_t dst_size, const void *src, size_t min_size,
		   const char *what);

/* dst is a struct vmm_X: copies opts into it, requiring every field before `reserved`. */
#define VMM__OPTS_COPY(dst, src, init_name)                                              \
	vmm__opts_copy((dst), sizeof(*(dst)), (src), offsetof(__typeof__(*(dst)), reserved), \
		       (init_name))

#endif
