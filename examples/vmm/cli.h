/* Shared pieces of the vmm command: verbs, size parsing, error reporting. */
#ifndef VMM_CLI_H
#define VMM_CLI_H

#include <stdint.h>

#include "vmm/vmm.h"

int cmd_run(int argc, char **argv);

/* "512M", "2G", "4096K", or bytes. Returns 0 and *out, -1 on garbage. */
int cli_parse_size(const char *s, uint64_t *out);
/* Prints "vmm: what: message (detail)" to stderr and returns 1. */
int cli_fail(const char *what, int err);
/* The process exit status for a finished VM. */
int cli_exit_status(const struct vmm_exit *ex);
/* vmm_serial_fn writing guest output unbuffered to stdout. */
void cli_serial_stdout(void *opaque, const uint8_t *buf, size_t len);
/* vmm_log_fn printing warnings and errors to stderr (debug too with VMM_DEBUG=1). */
void cli_log_stderr(void *opaque, int level, const char *msg);

#endif
