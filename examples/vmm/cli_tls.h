/* TLS credentials for `vmm receive` and `vmm migrate` (and the control API's vm.migrate):
 * a directory holding ca.pem, cert.pem and key.pem, or a PSK file in psktool's format
 * ("IDENTITY:HEXKEY" on one line). The struct holds the credentials themselves, read when
 * the option is taken (so a jailed vmm, which can no longer see the files, still has
 * them); cli_tls_opts() points a struct vmm_tls_opts at them (call it on the copy that is
 * used, after any copy). */
#ifndef VMM_CLI_TLS_H
#define VMM_CLI_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/vmm.h"

struct cli_tls {
	int set;         /* 0: plain TCP */
	int psk_mode;
	char ca[16384], cert[16384], key[16384]; /* PEM text */
	char peer[256];  /* "" : the library's default (the host dialled) */
	char identity[256];
	uint8_t psk[64];
	size_t psk_len;
	struct vmm_tls_opts o;
};

/* Reads DIR/ca.pem, DIR/cert.pem, DIR/key.pem (16 KiB each at most). -1 with why on error. */
int cli_tls_dir(struct cli_tls *t, const char *dir, char *why, size_t len);
/* Reads "IDENTITY:HEXKEY" (16..64 bytes of key). -1 with why on error. */
int cli_tls_psk_file(struct cli_tls *t, const char *path, char *why, size_t len);
/* The peer's expected certificate name. -1 if too long. */
int cli_tls_peer(struct cli_tls *t, const char *name, char *why, size_t len);
/* The options for the library, or NULL when t is not set. */
const struct vmm_tls_opts *cli_tls_opts(struct cli_tls *t);

#endif
