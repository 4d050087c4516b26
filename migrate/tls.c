/* TLS 1.3 sessions for migration connections, on OpenSSL 3: mutual certificate
 * authentication with a name check on both sides, or a TLS 1.3 external PSK; kTLS where
 * the kernel has it (OpenSSL turns it on after the handshake, per connection, and falls
 * back to encrypting itself when the kernel refuses). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "libvmm/error_internal.h"
#include "libvmm/opts.h"
#include "migrate/tls.h"
#include "vmm/migrate.h"

#define PSK_MIN 16
#define PSK_MAX 64
#define NAME_MAX_LEN 255
#define SID_CTX "libvmm-migrate"

/* AES-128-GCM first: the fastest AEAD where the CPU has AES-NI (every x86-64 host KVM
 * migrates between); the others stay for peers that prefer them. */
#define CIPHERSUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

struct vmm__tls {
	SSL_CTX *ctx;
	int server;
	int psk_mode;
	char peer_name[NAME_MAX_LEN + 1];
	uint8_t psk[PSK_MAX];
	size_t psk_len;
	char psk_identity[NAME_MAX_LEN + 1];
};

struct vmm__tls_conn {
	struct vmm__tls *t;
	SSL *ssl;
	int fd;
	int fd_flags;
	short events;
	int seen_first;       /* the peer's first byte was looked at (plain stream or not) */
	int psk_unknown;      /* server: the peer offered a PSK identity we do not hold */
	int established;      /* the handshake completed */
};

void vmm_tls_opts_init(struct vmm_tls_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
}

/* The most recent OpenSSL error as text, for the detail message. */
static const char *ssl_errtext(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (!e) {
		snprintf(buf, len, "no OpenSSL error");
		return buf;
	}
	ERR_error_string_n(e, buf, len);
	return buf;
}

/* TLS 1.3 external PSK: a session made from the key, bound to SHA-256 (the hash of the
 * AES-128-GCM suite; AES-256-GCM needs SHA-384 and is then not negotiated). */
static SSL_SESSION *psk_session(SSL *ssl, const struct vmm__tls *t)
{
	static const unsigned char aes128gcm_sha256[] = { 0x13, 0x01 };
	const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcm_sha256);
	SSL_SESSION *s;

	if (!cipher)
		return NULL;
	s = SSL_SESSION_new();
	if (!s)
		return NULL;
	if (!SSL_SESSION_set1_master_key(s, t->psk, t->psk_len) ||
	    !SSL_SESSION_set1_id_context(s, (const unsigned char *)SID_CTX, strlen(SID_CTX)) ||
	    !SSL_SESSION_set_cipher(s, cipher) ||
	    !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

static int psk_use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
		      SSL_SESSION **sess)
{
	struct vmm__tls_conn *c = SSL_get_app_data(ssl);
	SSL_SESSION *s = psk_session(ssl, c->t);

	if (!s)
		return 0;
	/* After a HelloRetryRequest the suite is fixed: a PSK of another hash cannot be used. */
	if (md && md != SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(s))) {
		SSL_SESSION_free(s);
		*sess = NULL;
		return 1;
	}
	*sess = s;
	*id = (const unsigned char *)c->t->psk_identity;
	*idlen = strlen(c->t->psk_identity);
	return 1;
}

static int psk_find_cb(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess)
{
	struct vmm__tls_conn *c = SSL_get_app_data(ssl);
	const struct vmm__tls *t = c->t;

	*sess = NULL;
	if (idlen != strlen(t->psk_identity) || memcmp(id, t->psk_identity, idlen)) {
		c->psk_unknown = 1; /* the handshake fails: we have no certificate to fall to */
		return 1;
	}
	*sess = psk_session(ssl, t);
	return *sess ? 1 : 0;
}

/* A key with a passphrase fails to load instead of OpenSSL asking on the terminal: a
 * library never reads its embedder's terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *asked)
{
	(void)buf, (void)size, (void)rwflag;
	if (asked)
		*(int *)asked = 1;
	return 0;
}

#define LOCKED_KEY "protected by a passphrase (libvmm takes an unencrypted key: keep it " \
		   "readable by its owner only)"

static int load_cert_files(struct vmm__tls *t, const struct vmm_tls_opts *o)
{
	char e[256];
	int asked = 0, r;

	if (SSL_CTX_load_verify_file(t->ctx, o->ca_file) != 1)
		return vmm__err(VMM_EINVAL, "TLS: CA file %s: %s", o->ca_file,
				ssl_errtext(e, sizeof(e)));
	if (SSL_CTX_use_certificate_chain_file(t->ctx, o->cert_file) != 1)
		return vmm__err(VMM_EINVAL, "TLS: certificate %s: %s", o->cert_file,
				ssl_errtext(e, sizeof(e)));
	SSL_CTX_set_default_passwd_cb_userdata(t->ctx, &asked);
	r = SSL_CTX_use_PrivateKey_file(t->ctx, o->key_file, SSL_FILETYPE_PEM);
	SSL_CTX_set_default_passwd_cb_userdata(t->ctx, NULL);
	if (r != 1)
		return vmm__err(VMM_EINVAL, "TLS: key %s: %s", o->key_file,
				asked ? LOCKED_KEY : ssl_errtext(e, sizeof(e)));
	return 0;
}

/* Every certificate in pem, in order, to add(ctx, x, i); 0 if there were none. */
static int each_pem_cert(const char *pem, int (*add)(SSL_CTX *, X509 *, int), SSL_CTX *ctx)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x;
	int n = 0;

	while (b && (x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL))) {
		int ok = add(ctx, x, n++);

		X509_free(x);
		if (!ok) {
			n = -1;
			break;
		}
	}
	BIO_free(b);
	if (n >= 0)
		ERR_clear_error(); /* the end of the text reads as an error */
	return n;
}

static int add_ca(SSL_CTX *ctx, X509 *x, int i)
{
	(void)i;
	return X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x) == 1;
}

/* The first certificate is this side's, the rest its chain. */
static int add_own(SSL_CTX *ctx, X509 *x, int i)
{
	return (i ? SSL_CTX_add1_chain_cert(ctx, x) : SSL_CTX_use_certificate(ctx, x)) == 1;
}

static int load_cert_pems(struct vmm__tls *t, const struct vmm_tls_opts *o)
{
	BIO *b;
	EVP_PKEY *k;
	char e[256];
	int asked = 0, r;

	r = each_pem_cert(o->ca_pem, add_ca, t->ctx);
	if (r <= 0)
		return vmm__err(VMM_EINVAL, "TLS: ca_pem: %s",
				r ? ssl_errtext(e, sizeof(e)) : "no PEM certificate in it");
	r = each_pem_cert(o->cert_pem, add_own, t->ctx);
	if (r <= 0)
		return vmm__err(VMM_EINVAL, "TLS: cert_pem: %s",
				r ? ssl_errtext(e, sizeof(e)) : "no PEM certificate in it");
	b = BIO_new_mem_buf(o->key_pem, -1);
	k = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, &asked) : NULL;
	BIO_free(b);
	r = k && SSL_CTX_use_PrivateKey(t->ctx, k) == 1;
	EVP_PKEY_free(k);
	if (!r)
		return vmm__err(VMM_EINVAL, "TLS: key_pem: %s",
				asked && !k ? LOCKED_KEY : ssl_errtext(e, sizeof(e)));
	return 0;
}

static int load_certs(struct vmm__tls *t, const struct vmm_tls_opts *o)
{
	int files = !!o->ca_file + !!o->cert_file + !!o->key_file;
	int pems = !!o->ca_pem + !!o->cert_pem + !!o->key_pem;
	int r;

	if (!((files == 3 && !pems) || (pems == 3 && !files)))
		return vmm__err(VMM_EINVAL, "TLS: certificates need ca_file, cert_file and key_file, "
				"or ca_pem, cert_pem and key_pem (or a psk instead)");
	SSL_CTX_set_default_passwd_cb(t->ctx, no_passphrase);
	r = files ? load_cert_files(t, o) : load_cert_pems(t, o);
	if (r)
		return r;
	if (SSL_CTX_check_private_key(t->ctx) != 1)
		return vmm__err(VMM_EINVAL, "TLS: the key does not match the certificate%s%s",
				files ? " " : "", files ? o->cert_file : "");
	return 0;
}

static int configure(struct vmm__tls *t, const struct vmm_tls_opts *o, const char *default_peer)
{
	const char *peer = o->peer_name ? o->peer_name : t->server ? NULL : default_peer;

	t->psk_mode = o->psk != NULL || o->psk_len || o->psk_identity;
	if (t->psk_mode && (o->ca_file || o->cert_file || o->key_file || o->ca_pem ||
			    o->cert_pem || o->key_pem))
		return vmm__err(VMM_EINVAL, "TLS: certificates or a PSK, not both");
	if (t->psk_mode) {
		if (!o->psk || o->psk_len < PSK_MIN || o->psk_len > PSK_MAX)
			return vmm__err(VMM_EINVAL, "TLS: a PSK of %zu bytes (%d to %d)", o->psk_len,
					PSK_MIN, PSK_MAX);
		if (!o->psk_identity || !*o->psk_identity ||
		    strlen(o->psk_identity) > NAME_MAX_LEN)
			return vmm__err(VMM_EINVAL, "TLS: a PSK needs an identity (1 to %d bytes)",
					NAME_MAX_LEN);
		memcpy(t->psk, o->psk, o->psk_len);
		t->psk_len = o->psk_len;
		snprintf(t->psk_identity, sizeof(t->psk_identity), "%s", o->psk_identity);
		if (t->server)
			SSL_CTX_set_psk_find_session_callback(t->ctx, psk_find_cb);
		else
			SSL_CTX_set_psk_use_session_callback(t->ctx, psk_use_cb);
	} else {
		int r = load_certs(t, o);

		if (r)
			return r;
		if (!peer || !*peer || strlen(peer) > NAME_MAX_LEN)
			return vmm__err(VMM_EINVAL, "TLS: the name the peer's certificate must carry "
					"(peer_name) is %s", peer && *peer ? "too long" : "missing");
		snprintf(t->peer_name, sizeof(t->peer_name), "%s", peer);
	}
	/* Both sides verify: the server asks for and requires the client's certificate. In
	 * PSK mode nothing is verified, and a peer that falls back to certificates fails
	 * verification against an empty trust store. */
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	return 0;
}

int vmm__tls_new(const struct vmm_tls_opts *opts, int server, const char *default_peer,
		 struct vmm__tls **out)
{
	struct vmm_tls_opts o;
	struct vmm__tls *t;
	char e[256];
	int r;

	*out = NULL;
	vmm_tls_opts_init(&o);
	r = VMM__OPTS_COPY(&o, opts, "vmm_tls_opts_init");
	if (r)
		return r;
	t = calloc(1, sizeof(*t));
	if (!t)
		return vmm__err(VMM_ENOMEM, "TLS context");
	t->server = server;
	ERR_clear_error();
	t->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!t->ctx) {
		free(t);
		return vmm__err(VMM_ENOMEM, "TLS: SSL_CTX_new: %s", ssl_errtext(e, sizeof(e)));
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION);
	SSL_CTX_set_ciphersuites(t->ctx, CIPHERSUITES);
	/* No resumption (every connection authenticates afresh), so no tickets: nothing
	 * arrives after the handshake but the stream. */
	SSL_CTX_set_num_tickets(t->ctx, 0);
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
	/* A server that verifies its clients must name its session context, or OpenSSL
	 * refuses any session, an external PSK's included. */
	SSL_CTX_set_session_id_context(t->ctx, (const unsigned char *)SID_CTX, strlen(SID_CTX));
	SSL_CTX_set_options(t->ctx, SSL_OP_ENABLE_KTLS | SSL_OP_NO_TICKET |
				    (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
	r = configure(t, &o, default_peer);
	if (r) {
		vmm__tls_free(t);
		return r;
	}
	*out = t;
	return 0;
}

void vmm__tls_free(struct vmm__tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	OPENSSL_cleanse(t->psk, sizeof(t->psk));
	free(t);
}

int vmm__tls_conn_new(struct vmm__tls *t, int fd, struct vmm__tls_conn **out)
{
	struct vmm__tls_conn *c = calloc(1, sizeof(*c));
	char e[256];

	*out = NULL;
	if (!c)
		return vmm__err(VMM_ENOMEM, "TLS session");
	c->t = t;
	c->fd = fd;
	c->fd_flags = fcntl(fd, F_GETFL);
	ERR_clear_error();
	c->ssl = SSL_new(t->ctx);
	if (!c->ssl || !SSL_set_fd(c->ssl, fd) ||
	    (t->peer_name[0] && !SSL_set1_host(c->ssl, t->peer_name))) {
		int r = vmm__err(VMM_ENOMEM, "TLS: SSL_new: %s", ssl_errtext(e, sizeof(e)));

		SSL_free(c->ssl);
		free(c);
		return r;
	}
	SSL_set_app_data(c->ssl, c);
	if (t->server)
		SSL_set_accept_state(c->ssl);
	else
		SSL_set_connect_state(c->ssl);
	if (c->fd_flags >= 0)
		fcntl(fd, F_SETFL, c->fd_flags | O_NONBLOCK);
	c->events = t->server ? POLLIN : POLLOUT;
	*out = c;
	return 0;
}

void vmm__tls_conn_free(struct vmm__tls_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	if (c->fd_flags >= 0)
		fcntl(c->fd, F_SETFL, c->fd_flags);
	free(c);
}

int vmm__tls_conn_fd(const struct vmm__tls_conn *c)
{
	return c->fd;
}

short vmm__tls_conn_events(const struct vmm__tls_conn *c)
{
	return c->events;
}

int vmm__tls_conn_ktls_send(const struct vmm__tls_conn *c)
{
	return BIO_get_ktls_send(SSL_get_wbio(c->ssl)) ? 1 : 0;
}

const char *vmm__tls_conn_cipher(const struct vmm__tls_conn *c)
{
	return SSL_get_cipher_name(c->ssl);
}

/* OpenSSL writes to the socket with write(), not send(MSG_NOSIGNAL) (kTLS needs its
 * socket BIO), so a peer gone away would raise SIGPIPE and kill the embedding process.
 * Around each call that may write, SIGPIPE is blocked on this thread and one it raised
 * is consumed before the mask comes back. */
struct sigpipe_guard {
	sigset_t old;
	int was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
	sigset_t set, pend;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigpending(&pend);
	g->was_pending = sigismember(&pend, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_restore(struct sigpipe_guard *g)
{
	sigset_t set, pend;
	struct timespec zero = { 0, 0 };
	int e = errno;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	if (!g->was_pending && !sigpending(&pend) && sigismember(&pend, SIGPIPE))
		sigtimedwait(&set, NULL, &zero);
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
	errno = e;
}

/* An alert the peer sent because it refused our credentials. */
static int auth_alert(int alert)
{
	switch (alert) {
	case SSL_AD_HANDSHAKE_FAILURE:
	case SSL_AD_BAD_CERTIFICATE:
	case SSL_AD_UNSUPPORTED_CERTIFICATE:
	case SSL_AD_CERTIFICATE_REVOKED:
	case SSL_AD_CERTIFICATE_EXPIRED:
	case SSL_AD_CERTIFICATE_UNKNOWN:
	case SSL_AD_UNKNOWN_CA:
	case SSL_AD_ACCESS_DENIED:
	case SSL_AD_DECRYPT_ERROR:
	case SSL_AD_UNKNOWN_PSK_IDENTITY:
	case SSL_AD_CERTIFICATE_REQUIRED:
		return 1;
	default:
		return 0;
	}
}

/* Turns a failed SSL call into 1 (wait for c->events) or a VMM_E* code with detail. */
static int ssl_fail(struct vmm__tls_conn *c, int ret, const char *what)
{
	int e = SSL_get_error(c->ssl, ret), saved = errno;
	unsigned long err = ERR_peek_last_error();
	int reason = ERR_GET_REASON(err), in_hs = !c->established;
	long vr;
	char text[256];

	switch (e) {
	case SSL_ERROR_WANT_READ:
		c->events = POLLIN;
		return 1;
	case SSL_ERROR_WANT_WRITE:
		c->events = POLLOUT;
		return 1;
	case SSL_ERROR_ZERO_RETURN:
		return vmm__err(VMM_EPEER, "%s: the peer closed the TLS session", what);
	case SSL_ERROR_SYSCALL:
		if (err)
			break;
		if (!saved || saved == EPIPE || saved == ECONNRESET)
			return vmm__err(VMM_EPEER, "%s: the peer closed the connection%s", what,
					in_hs ? " during the TLS handshake" : "");
		errno = saved;
		return vmm__err_sys(VMM_EPEER, what);
	default:
		break;
	}
	ssl_errtext(text, sizeof(text));
	if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
		return vmm__err(VMM_EPEER, "%s: the peer closed the connection%s", what,
				in_hs ? " during the TLS handshake" : "");
	vr = SSL_get_verify_result(c->ssl);
	if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && vr != X509_V_OK)
		return vmm__err(VMM_EAUTH, "%s: the peer's certificate is refused: %s", what,
				X509_verify_cert_error_string(vr));
	if (c->psk_unknown)
		return vmm__err(VMM_EAUTH, "%s: the peer's PSK identity is not this side's", what);
	if (reason == SSL_R_BINDER_DOES_NOT_VERIFY)
		return vmm__err(VMM_EAUTH, "%s: the peer's PSK is not this side's (%s)", what, text);
	if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
		return vmm__err(VMM_EAUTH, "%s: the peer sent no certificate (%s)", what, text);
	/* A server whose PSK differs answers the binder with illegal_parameter (OpenSSL) or
	 * decrypt_error (RFC 8446): in PSK mode, any alert during the handshake is that. */
	if (reason > SSL_AD_REASON_OFFSET && c->t->psk_mode && in_hs)
		return vmm__err(VMM_EAUTH, "%s: the peer refused this side's PSK or identity (%s)",
				what, text);
	if (reason > SSL_AD_REASON_OFFSET && auth_alert(reason - SSL_AD_REASON_OFFSET))
		return vmm__err(VMM_EAUTH, "%s: the peer refused this side's credentials (%s)",
				what, text);
	if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
	    reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_RECORD_LENGTH_MISMATCH)
		return vmm__err(VMM_ETLS, "%s: the peer does not speak TLS 1.3 (%s)", what, text);
	return vmm__err(VMM_ETLS, "%s: %s", what, text);
}

/* The first byte a TLS peer sends is a handshake record (0x16); libvmm's plain stream
 * starts with 'L' (LIBVMMST, a source) or 'M' (a record header: a receiver without TLS
 * refusing our handshake with an ERROR record). Looking before OpenSSL reads turns that
 * into a clear VMM_ETLS instead of a record-layer error. */
static int check_first(struct vmm__tls_conn *c)
{
	char b;
	ssize_t n;

	if (c->seen_first)
		return 0;
	n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n != 1)
		return 0;
	c->seen_first = 1;
	if (b == 'L' || b == 'M')
		return vmm__err(VMM_ETLS, "the peer speaks libvmm's stream in clear: it does not "
				"use TLS (give both sides certificates or a PSK)");
	return 0;
}

static int handshake_step(struct vmm__tls_conn *c)
{
	struct sigpipe_guard g;
	int ret, r;

	ERR_clear_error();
	errno = 0;
	sigpipe_block(&g);
	ret = SSL_do_handshake(c->ssl);
	sigpipe_restore(&g);
	if (ret == 1) {
		c->events = POLLIN;
		c->established = 1;
		return 1;
	}
	r = ssl_fail(c, ret, "TLS handshake");
	return r == 1 ? 0 : r;
}

int vmm__tls_conn_step(struct vmm__tls_conn *c)
{
	int r = check_first(c);

	return r ? r : handshake_step(c);
}

#define SLICE_MS 100

int vmm__tls_handshake(struct vmm__tls_conn *c, int timeout_ms, const int *cancel)
{
	int waited = 0;

	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = c->events };
		int r = vmm__tls_conn_step(c);

		if (r)
			return r < 0 ? r : 0;
		if (cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE))
			return vmm__err(VMM_ECANCELED, "TLS handshake: canceled");
		r = poll(&p, 1, SLICE_MS);
		if (r < 0 && errno != EINTR)
			return vmm__err_sys(VMM_ESYS, "poll");
		if (r == 0 && timeout_ms > 0 && (waited += SLICE_MS) >= timeout_ms)
			return vmm__err(VMM_ETIMEDOUT, "TLS handshake: no answer for %d ms",
					timeout_ms);
	}
}

int vmm__tls_conn_io(struct vmm__tls_conn *c, void *buf, size_t len, int is_write,
		     size_t *done)
{
	struct sigpipe_guard g;
	int ret;

	*done = 0;
	ERR_clear_error();
	errno = 0;
	sigpipe_block(&g); /* a read may write too (an alert) */
	ret = is_write ? SSL_write_ex(c->ssl, buf, len, done) : SSL_read_ex(c->ssl, buf, len, done);
	sigpipe_restore(&g);
	if (ret == 1)
		return 0;
	return ssl_fail(c, 0, is_write ? "TLS write" : "TLS read");
}

int vmm__tls_conn_peek(struct vmm__tls_conn *c, void *buf, size_t len)
{
	size_t n = 0;
	int r;

	struct sigpipe_guard g;
	int ok;

	ERR_clear_error();
	errno = 0;
	sigpipe_block(&g);
	ok = SSL_peek_ex(c->ssl, buf, len, &n);
	sigpipe_restore(&g);
	if (ok == 1)
		return (int)n;
	r = ssl_fail(c, 0, "TLS read");
	return r == 1 ? 0 : r;
}
