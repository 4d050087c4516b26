/* TLS 1.3 for migration connections (OpenSSL 3): a context per side and role built from
 * struct vmm_tls_opts, and one session per connection. Handshakes are driven without
 * blocking (the receiver's accept loop steps many at once) or to completion with a
 * deadline (the sender). The transport (xport.h) reads and writes through a session once
 * it is attached; this file knows nothing of the stream or of VMs.
 *
 * Errors: VMM_EAUTH when a side refused the other's credentials (certificate chain,
 * validity, name, PSK: ours refused by the peer's alert or the peer's refused here),
 * VMM_ETLS when one side speaks TLS and the other does not (or any other TLS failure),
 * VMM_EPEER when the connection ends. */
#ifndef VMM_TLS_H
#define VMM_TLS_H

#include <stddef.h>

struct vmm_tls_opts;
struct vmm__tls;
struct vmm__tls_conn;

/* Builds a context: server = 1 for the receiving side. default_peer is the name the peer's
 * certificate must carry when opts->peer_name is NULL (the host dialled), may be NULL.
 * Loads and checks the files now: VMM_EINVAL naming what is wrong. */
int vmm__tls_new(const struct vmm_tls_opts *opts, int server, const char *default_peer,
		 struct vmm__tls **out);
void vmm__tls_free(struct vmm__tls *t);

/* A session on fd (not owned). The fd is made non-blocking until the session is freed. */
int vmm__tls_conn_new(struct vmm__tls *t, int fd, struct vmm__tls_conn **out);
/* Restores the fd's flags; sends nothing (no close_notify: the stream ends itself). */
void vmm__tls_conn_free(struct vmm__tls_conn *c);

/* One non-blocking handshake step: 1 done (the peer authenticated), 0 not yet (poll the
 * fd for vmm__tls_conn_events()), or a negative VMM_E* code. */
int vmm__tls_conn_step(struct vmm__tls_conn *c);
short vmm__tls_conn_events(const struct vmm__tls_conn *c);
/* The whole handshake, each wait at most timeout_ms (<= 0: none), ended by *cancel. */
int vmm__tls_handshake(struct vmm__tls_conn *c, int timeout_ms, const int *cancel);

/* Non-blocking record I/O after the handshake: moves up to len bytes. Returns 0 with
 * *done > 0, 1 when it must wait (poll for vmm__tls_conn_events()), or a negative code. */
int vmm__tls_conn_io(struct vmm__tls_conn *c, void *buf, size_t len, int is_write,
		     size_t *done);
/* Peeks up to len decrypted bytes without consuming them: the count, 0 if none yet, or a
 * negative code. */
int vmm__tls_conn_peek(struct vmm__tls_conn *c, void *buf, size_t len);

int vmm__tls_conn_fd(const struct vmm__tls_conn *c);
/* 1 if the kernel encrypts this session's records on send (kTLS). */
int vmm__tls_conn_ktls_send(const struct vmm__tls_conn *c);
/* The negotiated cipher suite's name ("TLS_AES_128_GCM_SHA256"). */
const char *vmm__tls_conn_cipher(const struct vmm__tls_conn *c);

#endif
