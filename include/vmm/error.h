/* Every public call returns 0 or a negative code from VMM_ERRNO_MAP. vmm_strerror() says
 * what the code means; vmm_last_error() says what exactly failed on this thread (which
 * ioctl, MSR, record or file offset). A retired code is never reused. */
#ifndef VMM_ERROR_H
#define VMM_ERROR_H

#include "vmm/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* XX(name, value, message) */
#define VMM_ERRNO_MAP(XX)                                                               \
	XX(EINVAL, -1, "invalid argument")                                               \
	XX(ESTATE, -2, "operation not allowed in the VM's current state")                \
	XX(ENOKVM, -3, "KVM is not available (/dev/kvm missing or not accessible)")      \
	XX(EKVM, -4, "a KVM operation failed")                                           \
	XX(ENOMEM, -5, "out of memory")                                                  \
	XX(EIO, -6, "input/output error")                                                \
	XX(ENOENT, -7, "no such file")                                                   \
	XX(EFORMAT, -8, "unrecognised or malformed guest image")                         \
	XX(ETOOBIG, -9, "guest image does not fit in guest RAM")                         \
	XX(ERANGE, -10, "address range outside guest RAM")                               \
	XX(EBUSY, -11, "range already claimed by another handler")                       \
	XX(EUNSUPPORTED, -12, "not supported by this host's KVM")                        \
	XX(ESYS, -13, "a system call failed")                                            \
	XX(ETIMEDOUT, -14, "timed out")                                                  \
	XX(ESTATEDATA, -15, "saved state is malformed or does not fit this VM")          \
	XX(ECORRUPT, -16, "data is corrupt (checksum or structure mismatch)")            \
	XX(ETRUNCATED, -17, "data ends early")                                           \
	XX(EVERSION, -18, "unsupported format version")                                  \
	XX(EFEATURE, -19, "unsupported required feature")                                \
	XX(ESHAPE, -20, "VM shape (memory layout, vCPUs, CPU) does not match")           \
	XX(ENOSPC, -21, "no space left on device")                                       \
	XX(EPEER, -22, "the peer closed the connection or failed")                       \
	XX(ECANCELED, -23, "canceled")                                                   \
	XX(EPROTO, -24, "protocol violation in the stream")                              \
	XX(EREFUSED, -25, "the peer refused")                                            \
	XX(EMAGIC, -26, "not a libvmm file or stream (bad magic)")                       \
	XX(ECPU, -27, "this host cannot give the guest the CPU it was started with")     \
	XX(EINDOUBT, -28, "migration outcome unknown: guest paused on both sides")       \
	XX(EJOB, -29, "a migration or snapshot in progress owns the VM")                 \
	XX(EAUTH, -30, "the peer did not authenticate (certificate, name or key refused)") \
	XX(ETLS, -31, "TLS on one side only, or a TLS failure") \
	XX(EKEY, -32, "wrong or missing key for an encrypted snapshot") \
	XX(ELOCKED, -33, "the disk image is locked by another user (another VMM has it open)")

enum vmm_errno {
	VMM_OK = 0,
#define VMM__ERRNO_ENUM(name, value, msg) VMM_##name = value,
	VMM_ERRNO_MAP(VMM__ERRNO_ENUM)
#undef VMM__ERRNO_ENUM
};

/* A static message for a code ("unknown error" for codes not in the map). Any thread. */
VMM_EXPORT const char *vmm_strerror(int err);
/* The code's name, e.g. "VMM_EINVAL". Any thread. */
VMM_EXPORT const char *vmm_err_name(int err);
/* Detail of the last failure of a libvmm call on the calling thread, e.g.
 * "KVM_SET_MSRS: MSR 0x10a refused". Like errno (and libgit2's git_error_last): every
 * call that returns an error sets it, a call that succeeds leaves it as it was, so it
 * means something only after a call returned an error, and it still says what failed
 * after cleanup calls that succeed (vmm_vm_destroy, ...). Empty on a thread where no call
 * has failed yet. The string is the thread's own; it changes at its next failing call. */
VMM_EXPORT const char *vmm_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
