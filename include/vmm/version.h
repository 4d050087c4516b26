/* libvmm version: compile-time macros and the runtime call that tells which library was
 * actually loaded (they differ when a program runs against a newer libvmm.so). */
#ifndef VMM_VERSION_H
#define VMM_VERSION_H

#include "vmm/export.h"

/* The one place the version is written: CMakeLists.txt reads these three lines. */
#define VMM_VERSION_MAJOR 0
#define VMM_VERSION_MINOR 1
#define VMM_VERSION_PATCH 0
#define VMM_VERSION_HEX \
	((VMM_VERSION_MAJOR << 16) | (VMM_VERSION_MINOR << 8) | VMM_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* The loaded library's version as VMM_VERSION_HEX would spell it. Any thread. */
VMM_EXPORT unsigned vmm_version(void);
/* The loaded library's version as "major.minor.patch". Any thread; static storage. */
VMM_EXPORT const char *vmm_version_string(void);

#ifdef __cplusplus
}
#endif
#endif
