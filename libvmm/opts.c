/* The caller's options struct, copied under the size rule of opts.h. */
#include <stdint.h>
#include <string.h>

#include "libvmm/error_internal.h"
#include "libvmm/opts.h"

int vmm__opts_copy(void *dst, size_t dst_size, const void *src, size_t min_size,
		   const char *what)
{
	uint32_t size;

	if (!src)
		return 0;
	memcpy(&size, src, sizeof(size));
	if (size < min_size)
		return vmm__err(VMM_EINVAL, "options of %u bytes: not initialised with %s()", size,
				what);
	for (size_t i = dst_size; i < size; i++)
		if (((const unsigned char *)src)[i])
			return vmm__err(VMM_EINVAL,
					"options set past byte %zu, which this libvmm does not know",
					dst_size);
	memcpy(dst, src, size < dst_size ? size : dst_size);
	size = (uint32_t)dst_size;
	memcpy(dst, &size, sizeof(size));
	return 0;
}
