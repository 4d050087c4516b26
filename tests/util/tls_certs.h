/* Test credentials made at test time with the OpenSSL API, in a fresh temporary
 * directory: two CAs, certificates for a destination and a source, an expired one, one
 * with the wrong name, one from the other CA, and a PSK file. Nothing is checked in. */
#ifndef VMM_TLS_CERTS_H
#define VMM_TLS_CERTS_H

#include <stddef.h>
#include <stdint.h>

/* Names the certificates carry (subjectAltName DNS). */
#define TC_DEST_NAME "dest.test"
#define TC_SRC_NAME "source.test"
#define TC_OTHER_NAME "other.test"

/* Writes into a new directory (its path in dir, up to len bytes):
 *   ca.pem, ca2.pem                       the two CAs
 *   dest.pem/dest.key                     TC_DEST_NAME and IP 127.0.0.1, from ca
 *   src.pem/src.key                       TC_SRC_NAME, from ca
 *   expired.pem/expired.key               TC_SRC_NAME, from ca, expired yesterday
 *   wrongname.pem/wrongname.key           TC_OTHER_NAME, from ca
 *   src-ca2.pem/src-ca2.key               TC_SRC_NAME, from ca2
 *   dest/, src/                           tls-dir layouts: ca.pem, cert.pem, key.pem
 *   psk.txt                               "vmm-test:<32 hex bytes>" (psktool's format)
 * Every certificate has the serverAuth and clientAuth usages. Returns 0 or -1. */
int tc_make(char *dir, size_t len);
/* The path of a file in dir (static buffer, one at a time per call site: copy it). */
const char *tc_path(const char *dir, const char *name);
/* key_pem (a private key as PEM text) encrypted under passphrase (AES-256-CBC), as new
 * PEM text the caller frees; NULL on failure. */
char *tc_locked_key(const char *key_pem, const char *passphrase);
/* Removes the directory and everything tc_make wrote. */
void tc_remove(const char *dir);

#endif
