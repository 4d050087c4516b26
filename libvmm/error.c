/* Error codes to messages, and the per-thread detail string that says what exactly failed. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vmm/error.h"
#include "vmm/version.h"
#include "libvmm/error_internal.h"

static _Thread_local char last_error[512];

const char *vmm_strerror(int err)
{
	switch (err) {
	case VMM_OK:
		return "success";
#define VMM__ERRNO_MSG(name, value, msg) \
	case VMM_##name:                  \
		return msg;
		VMM_ERRNO_MAP(VMM__ERRNO_MSG)
#undef VMM__ERRNO_MSG
	}
	return "unknown error";
}

const char *vmm_err_name(int err)
{
	switch (err) {
	case VMM_OK:
		return "VMM_OK";
#define VMM__ERRNO_NAME(name, value, msg) \
	case VMM_##name:                   \
		return "VMM_" #name;
		VMM_ERRNO_MAP(VMM__ERRNO_NAME)
#undef VMM__ERRNO_NAME
	}
	return "VMM_UNKNOWN";
}

const char *vmm_last_error(void)
{
	return last_error;
}

int vmm__err(int code, const char *fmt, ...)
{
	char msg[sizeof(last_error)];
	va_list ap;

	/* Through a copy: callers wrap the previous detail ("machine state: %s",
	 * vmm_last_error()), and vsnprintf into its own argument is undefined. */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(last_error, msg, sizeof(msg));
	return code;
}

int vmm__err_sys(int code, const char *what)
{
	int saved = errno;

	snprintf(last_error, sizeof(last_error), "%s: %s", what, strerror(saved));
	errno = saved;
	return code;
}


void vmm__err_clear(void)
{
	last_error[0] = '\0';
}

unsigned vmm_version(void)
{
	return VMM_VERSION_HEX;
}

const char *vmm_version_string(void)
{
#define VMM__STR2(x) #x
#define VMM__STR(x) VMM__STR2(x)
	return VMM__STR(VMM_VERSION_MAJOR) "." VMM__STR(VMM_VERSION_MINOR) "." VMM__STR(
		VMM_VERSION_PATCH);
}
