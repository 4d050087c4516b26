/* Symbol visibility: the library is built with hidden visibility, and only functions
 * marked VMM_EXPORT (and listed in libvmm/libvmm.map) form the ABI. */
#ifndef VMM_EXPORT_H
#define VMM_EXPORT_H

#if defined(VMM_BUILDING_LIBRARY) && defined(__GNUC__)
#define VMM_EXPORT __attribute__((visibility("default")))
#else
#define VMM_EXPORT
#endif

#endif
