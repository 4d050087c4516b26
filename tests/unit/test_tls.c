/* TLS on the migration stream, on the fake kernel (source and destination in this
 * process, the receiver on a thread): full migrations with certificates and with a PSK
 * arrive page by page; a wrong CA, an expired certificate, a wrong name (either side), a
 * wrong PSK or identity, a plain source meeting a TLS receiver and the reverse all fail
 * at once with VMM_EAUTH or VMM_ETLS, the source VM running on, and the receiver still
 * takes the right source afterwards; an authenticated but hostile peer (the stream fuzz
 * corpus replayed over TLS) fails cleanly. Credentials are made at test time
 * (tls_certs.h). */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "migrate_util.h"
#include "tls_certs.h"
#include "migrate/stream.h"
#include "migrate/tls.h"
#include "migrate/xport.h"
#include "stream.pb-c.h"
#include "vmm/sandbox.h"

#define MIB 8
#define PAGE 4096

static char dir[256];

struct creds {
	struct vmm_tls_opts o;
	char ca[512], cert[512], key[512];
	uint8_t psk[32];
};

/* Certificates: CA file, "<base>.pem"/"<base>.key", the peer's expected name. */
static struct creds *certs(struct creds *c, const char *ca, const char *base, const char *peer)
{
	char name[64];

	vmm_tls_opts_init(&c->o);
	snprintf(c->ca, sizeof(c->ca), "%s", tc_path(dir, ca));
	snprintf(name, sizeof(name), "%s.pem", base);
	snprintf(c->cert, sizeof(c->cert), "%s", tc_path(dir, name));
	snprintf(name, sizeof(name), "%s.key", base);
	snprintf(c->key, sizeof(c->key), "%s", tc_path(dir, name));
	c->o.ca_file = c->ca, c->o.cert_file = c->cert, c->o.key_file = c->key;
	c->o.peer_name = peer;
	return c;
}

static struct creds *psk(struct creds *c, const char *identity, uint8_t seed)
{
	vmm_tls_opts_init(&c->o);
	for (size_t i = 0; i < sizeof(c->psk); i++)
		c->psk[i] = (uint8_t)(seed + i);
	c->o.psk = c->psk, c->o.psk_len = sizeof(c->psk), c->o.psk_identity = identity;
	return c;
}

/* The receiver's log, to see why it dropped a connection. */
struct rxlog {
	char text[4096];
	size_t len;
};

static void log_sink(void *opaque, int level, const char *msg)
{
	struct rxlog *l = opaque;
	int n = snprintf(l->text + l->len, sizeof(l->text) - l->len, "%s\n", msg);

	(void)level;
	if (n > 0 && l->len + (size_t)n < sizeof(l->text))
		l->len += (size_t)n;
}

static void rx_start(struct mu_rx *x, struct rxlog *log, const struct creds *c)
{
	mu_rx_init(x);
	x->o.timeout_ms = 3000;
	x->o.no_start = 1;
	x->o.tls = c ? &c->o : NULL;
	memset(log, 0, sizeof(*log));
	x->o.log = log_sink;
	x->o.log_opaque = log;
	mu_rx_start(x);
}

/* A running source whose RAM is random pages and zero pages. */
static struct vmm_vm *source_vm(void)
{
	struct vmm_vm *vm = fake_vm_new_loaded(MIB, 1, NULL, NULL);
	uint8_t *buf = malloc(MIB << 20);
	uint64_t x = 0x9e3779b97f4a7c15ull;

	assert_non_null(vm);
	assert_non_null(buf);
	for (size_t i = 0; i < (MIB << 20) / 8; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		((uint64_t *)buf)[i] = (i / (PAGE / 8)) % 5 == 3 ? 0 : x;
	}
	assert_int_equal(vmm_vm_mem_write(vm, 0, buf, MIB << 20), 0);
	free(buf);
	assert_int_equal(vmm_vm_start(vm), 0);
	return vm;
}

static void same_memory(struct vmm_vm *a, struct vmm_vm *b)
{
	uint8_t *pa = malloc(MIB << 20), *pb = malloc(MIB << 20);

	assert_int_equal(vmm_vm_mem_read(a, 0, pa, MIB << 20), 0);
	assert_int_equal(vmm_vm_mem_read(b, 0, pb, MIB << 20), 0);
	for (size_t p = 0; p < (MIB << 20) / PAGE; p++)
		if (memcmp(pa + p * PAGE, pb + p * PAGE, PAGE))
			fail_msg("page %zu differs after the migration", p);
	free(pa);
	free(pb);
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int send_tls(struct vmm_vm *vm, uint16_t port, const struct creds *c, unsigned conns,
		    struct vmm_migrate_stats *st)
{
	struct vmm_migrate_opts mo;
	double t0 = now_s();
	int r;

	vmm_migrate_opts_init(&mo);
	mo.connections = conns;
	mo.timeout_ms = 5000;
	mo.tls = c ? &c->o : NULL;
	r = vmm_migrate_send_to(vm, "127.0.0.1", port, &mo, st);
	print_message("    send: %s: %s (%.0f ms)\n", r ? vmm_err_name(r) : "ok",
		      r ? vmm_last_error() : "", (now_s() - t0) * 1e3);
	if (r)
		assert_true(now_s() - t0 < 2.0); /* refused at once, not by a timeout */
	return r;
}

/* The source migrates its VM over `conns` connections; it arrives page by page. */
static void migrate_ok(struct mu_rx *x, struct vmm_vm *vm, const struct creds *tx, unsigned conns)
{
	struct vmm_migrate_stats st;

	assert_int_equal(send_tls(vm, x->port, tx, conns, &st), 0);
	assert_int_equal(mu_rx_join(x), 0);
	assert_non_null(x->vm);
	assert_int_equal(st.tls_connections, tx ? conns : 0);
	print_message("    %u TLS connections, %u with kTLS\n", st.tls_connections,
		      st.ktls_connections);
	assert_true(vmm_vm_migrated(vm));
	same_memory(vm, x->vm);
	vmm_vm_destroy(x->vm);
}

static void full_migration_certificates(void **state)
{
	struct creds rx, tx;
	struct rxlog log;
	struct mu_rx x;
	struct vmm_vm *vm = source_vm();

	(void)state;
	rx_start(&x, &log, certs(&rx, "ca.pem", "dest", TC_SRC_NAME));
	/* No peer_name: the host dialled (127.0.0.1, an IP SAN of dest.pem). */
	migrate_ok(&x, vm, certs(&tx, "ca.pem", "src", NULL), 2);
	vmm_vm_destroy(vm);
}

static void full_migration_psk(void **state)
{
	struct creds rx, tx;
	struct rxlog log;
	struct mu_rx x;
	struct vmm_vm *vm = source_vm();

	(void)state;
	rx_start(&x, &log, psk(&rx, "vmm-test", 1));
	migrate_ok(&x, vm, psk(&tx, "vmm-test", 1), 3);
	vmm_vm_destroy(vm);
}

/* The CLI confines the library's threads by default (vmm/sandbox.h): TLS moves the
 * connections' reads and writes into OpenSSL (read, write, poll, its SIGPIPE guard), and
 * those must be on the migration threads' list. In a child, since the sandbox is for good:
 * a missing call kills it by SIGSYS and names the call on stderr. */

/* A bad source (or a source that refuses the receiver) fails at once with `want`, its VM
 * running on; the receiver logs why it dropped the connection (log_has) and still takes
 * the good source's migration afterwards. */
static void refused_then_ok(const struct creds *rx, const struct creds *bad, int want,
			    const char *log_has, const struct creds *good)
{
	struct rxlog log;
	struct mu_rx x;
	struct vmm_vm *vm = source_vm();

	rx_start(&x, &log, rx);
	assert_int_equal(send_tls(vm, x.port, bad, 2, NULL), want);
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_RUNNING);
	assert_false(vmm_vm_migrated(vm));
	migrate_ok(&x, vm, good, 2);
	print_message("    receiver log:\n%s", log.text);
	if (log_has && !strstr(log.text, log_has))
		fail_msg("the receiver's log does not say \"%s\"", log_has);
	vmm_vm_destroy(vm);
}

static void wrong_ca(void **state)
{
	struct creds rx, bad, good;

	(void)state;
	certs(&rx, "ca.pem", "dest", TC_SRC_NAME);
	certs(&good, "ca.pem", "src", TC_DEST_NAME);
	/* The source's certificate is from another CA: the receiver refuses it. */
	refused_then_ok(&rx, certs(&bad, "ca.pem", "src-ca2", TC_DEST_NAME), VMM_EAUTH,
			"VMM_EAUTH", &good);
	/* The source trusts only the other CA: it refuses the receiver. */
	refused_then_ok(&rx, certs(&bad, "ca2.pem", "src", TC_DEST_NAME), VMM_EAUTH,
			"VMM_EAUTH", &good);
}

static void expired_certificate(void **state)
{
	struct creds rx, bad, good;

	(void)state;
	certs(&rx, "ca.pem", "dest", TC_SRC_NAME);
	certs(&good, "ca.pem", "src", TC_DEST_NAME);
	refused_then_ok(&rx, certs(&bad, "ca.pem", "expired", TC_DEST_NAME), VMM_EAUTH,
			"expired", &good);
}

static void wrong_name(void **state)
{
	struct creds rx, bad, good;

	(void)state;
	certs(&rx, "ca.pem", "dest", TC_SRC_NAME);
	certs(&good, "ca.pem", "src", TC_DEST_NAME);
	/* The receiver checks the source's name... */
	refused_then_ok(&rx, certs(&bad, "ca.pem", "wrongname", TC_DEST_NAME), VMM_EAUTH,
			"hostname mismatch", &good);
	/* ...and the source the receiver's. */
	refused_then_ok(&rx, certs(&bad, "ca.pem", "src", TC_OTHER_NAME), VMM_EAUTH,
			"VMM_EAUTH", &good);
}

static void wrong_psk(void **state)
{
	struct creds rx, bad, good;

	(void)state;
	psk(&rx, "vmm-test", 1);
	psk(&good, "vmm-test", 1);
	refused_then_ok(&rx, psk(&bad, "vmm-test", 2), VMM_EAUTH, "PSK", &good);
	refused_then_ok(&rx, psk(&bad, "someone-else", 1), VMM_EAUTH, "identity", &good);
	/* Certificates against a PSK receiver: no common ground. */
	refused_then_ok(&rx, certs(&bad, "ca.pem", "src", TC_DEST_NAME), VMM_EAUTH, NULL, &good);
}

static void plain_source_tls_receiver(void **state)
{
	struct creds rx, good;

	(void)state;
	refused_then_ok(certs(&rx, "ca.pem", "dest", TC_SRC_NAME), NULL, VMM_ETLS,
			"requires TLS", certs(&good, "ca.pem", "src", TC_DEST_NAME));
}

static void tls_source_plain_receiver(void **state)
{
	struct creds bad;

	(void)state;
	refused_then_ok(NULL, psk(&bad, "vmm-test", 1), VMM_ETLS, "does not use TLS", NULL);
}

/* The whole of a credentials file, NUL-terminated; the test owns it. */
static char *slurp(const char *name)
{
	FILE *f = fopen(tc_path(dir, name), "r");
	char *text = calloc(1, 64 << 10);
	size_t n;

	assert_non_null(f);
	assert_non_null(text);
	n = fread(text, 1, (64 << 10) - 1, f);
	fclose(f);
	assert_true(n > 0);
	return text;
}

/* Certificates as PEM text in memory (what a process keeps after it can no longer read
 * the files: the vmm command in its jail): the same checks as from files. */
struct pems {
	char *ca, *cert, *key;
};

static struct creds *certs_in_memory(struct creds *c, struct pems *p, const char *ca,
				     const char *base, const char *peer)
{
	char name[64];

	vmm_tls_opts_init(&c->o);
	p->ca = slurp(ca);
	snprintf(name, sizeof(name), "%s.pem", base);
	p->cert = slurp(name);
	snprintf(name, sizeof(name), "%s.key", base);
	p->key = slurp(name);
	c->o.ca_pem = p->ca, c->o.cert_pem = p->cert, c->o.key_pem = p->key;
	c->o.peer_name = peer;
	return c;
}

static void pems_free(struct pems *p)
{
	free(p->ca), free(p->cert), free(p->key);
}

static void certificates_in_memory(void **state)
{
	struct creds rx, tx, bad, good;
	struct pems prx, ptx, pbad;
	struct rxlog log;
	struct mu_rx x;
	struct vmm_vm *vm = source_vm();

	(void)state;
	rx_start(&x, &log, certs_in_memory(&rx, &prx, "ca.pem", "dest", TC_SRC_NAME));
	migrate_ok(&x, vm, certs_in_memory(&tx, &ptx, "ca.pem", "src", NULL), 2);
	vmm_vm_destroy(vm);
	/* The other CA's certificate, in memory, is refused as from a file. */
	certs(&good, "ca.pem", "src", TC_DEST_NAME);
	refused_then_ok(&rx, certs_in_memory(&bad, &pbad, "ca.pem", "src-ca2", TC_DEST_NAME),
			VMM_EAUTH, "VMM_EAUTH", &good);
	pems_free(&prx), pems_free(&ptx), pems_free(&pbad);
}

/* Files and text mixed, text that holds no certificate, a key that is not the
 * certificate's, and a key under a passphrase (refused, never asked for): VMM_EINVAL
 * before anything listens or connects. */
static void bad_certificates_in_memory(void **state)
{
	struct creds c;
	struct pems p;
	struct vmm_receive_opts o;
	struct vmm_vm *out;
	char *other_key, *locked;
	int lfd;
	uint16_t port;

	(void)state;
	lfd = mu_listen(&port);
	vmm_receive_opts_init(&o);
	o.tls = &certs_in_memory(&c, &p, "ca.pem", "dest", TC_SRC_NAME)->o;
	c.o.ca_file = c.ca; /* and a file */
	snprintf(c.ca, sizeof(c.ca), "%s", tc_path(dir, "ca.pem"));
	assert_int_equal(vmm_migrate_receive(lfd, &o, &out), VMM_EINVAL);
	print_message("    %s\n", vmm_last_error());
	c.o.ca_file = NULL;
	c.o.ca_pem = "not a certificate";
	assert_int_equal(vmm_migrate_receive(lfd, &o, &out), VMM_EINVAL);
	print_message("    %s\n", vmm_last_error());
	c.o.ca_pem = p.ca;
	other_key = slurp("src.key");
	c.o.key_pem = other_key;
	assert_int_equal(vmm_migrate_receive(lfd, &o, &out), VMM_EINVAL);
	print_message("    %s\n", vmm_last_error());
	assert_non_null(strstr(vmm_last_error(), "mismatch"));
	locked = tc_locked_key(p.key, "secret");
	assert_non_null(locked);
	assert_non_null(strstr(locked, "ENCRYPTED"));
	c.o.key_pem = locked;
	assert_int_equal(vmm_migrate_receive(lfd, &o, &out), VMM_EINVAL);
	print_message("    %s\n", vmm_last_error());
	assert_non_null(strstr(vmm_last_error(), "passphrase"));
	close(lfd);
	free(other_key), free(locked);
	pems_free(&p);
}

/* The body of sandboxed_migrations, in a fresh process (this program executed again), so
 * that OpenSSL starts inside the sandbox as it does in the vmm command: its first use
 * (configuration, providers, the random generator) happens on a confined thread. The
 * main thread is under the control filter, as cli_run_foreground() puts the command's
 * main thread (which serves the control API and runs vm.migrate's worker); credentials
 * from files, from memory (as the command passes them) and a PSK. */
static int sandboxed_child(const char *creds_dir)
{
	struct vmm_sandbox_opts so;
	struct creds rx, tx;
	struct pems prx, ptx;
	struct rxlog log;
	struct mu_rx x;
	struct vmm_vm *vm, *vm2, *vm3;

	snprintf(dir, sizeof(dir), "%s", creds_dir);
	fake_vm_setup(NULL);
	vm = source_vm(), vm2 = source_vm(), vm3 = source_vm();
	vmm_sandbox_opts_init(&so);
	so.report_fd = 2;
	if (vmm_sandbox_enable(&so) || vmm_sandbox_apply(VMM_THREAD_CONTROL))
		return 3;
	rx_start(&x, &log, certs(&rx, "ca.pem", "dest", TC_SRC_NAME));
	migrate_ok(&x, vm, certs(&tx, "ca.pem", "src", NULL), 2);
	vmm_vm_destroy(vm);
	rx_start(&x, &log, psk(&rx, "vmm-test", 1));
	migrate_ok(&x, vm2, psk(&tx, "vmm-test", 1), 3);
	vmm_vm_destroy(vm2);
	rx_start(&x, &log, certs_in_memory(&rx, &prx, "ca.pem", "dest", TC_SRC_NAME));
	migrate_ok(&x, vm3, certs_in_memory(&tx, &ptx, "ca.pem", "src", NULL), 2);
	vmm_vm_destroy(vm3);
	return 0;
}

static void sandboxed_migrations(void **state)
{
	pid_t pid;
	int ws;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl("/proc/self/exe", "test_tls", "--sandboxed-child", dir, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	if (WIFSIGNALED(ws))
		fail_msg("the sandboxed migrations died by signal %d", WTERMSIG(ws));
	assert_int_equal(WEXITSTATUS(ws), 0);
}

static void receiver_needs_peer_name(void **state)
{
	struct creds rx;
	struct vmm_receive_opts o;
	struct vmm_vm *out;
	int lfd;
	uint16_t port;

	(void)state;
	vmm_receive_opts_init(&o);
	o.tls = &certs(&rx, "ca.pem", "dest", NULL)->o;
	lfd = mu_listen(&port);
	assert_int_equal(vmm_migrate_receive(lfd, &o, &out), VMM_EINVAL);
	print_message("    %s\n", vmm_last_error());
	assert_non_null(strstr(vmm_last_error(), "peer_name"));
	rx.o.peer_name = TC_SRC_NAME;
	rx.o.key_file = rx.cert; /* a certificate is no key */
	assert_int_equal(vmm_migrate_receive(lfd, &o, &out), VMM_EINVAL);
	print_message("    %s\n", vmm_last_error());
	close(lfd);
}

/* An authenticated peer that then sends garbage: each stream fuzz corpus input after an
 * accepted HELLO, over TLS. The receiver fails cleanly and builds nothing to keep. */
static void hostile_authenticated_peer(void **state)
{
	char path[512];
	struct dirent *de = NULL;
	DIR *d;
	int n = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/stream", VMM_SOURCE_DIR);
	d = opendir(path);
	assert_non_null(d);
	for (;;) {
		Vmm__Stream__Hello h = VMM__STREAM__HELLO__INIT;
		Vmm__Stream__VmShape shape = VMM__STREAM__VM_SHAPE__INIT;
		static const uint8_t session[16] = "0123456789abcdef";
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		struct vmm__xport_opts xo = { .timeout_ms = 5000 };
		struct creds rx, tx;
		struct rxlog log;
		struct vmm__tls *t;
		struct vmm__tls_conn *c;
		struct vmm__xport *xp;
		struct vmm__rec_hdr rh;
		struct mu_rx x;
		uint8_t *b, *data;
		size_t len;
		int fd;

		if (!(n & 1) && !(de = readdir(d)))
			break;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/stream/%s", VMM_SOURCE_DIR,
			 de->d_name);
		data = (uint8_t *)tu_read_file(path, &len);
		assert_non_null(data);
		rx_start(&x, &log, psk(&rx, "vmm-test", 1));
		assert_int_equal(vmm__tls_new(&psk(&tx, "vmm-test", 1)->o, 0, NULL, &t), 0);
		a.sin_port = htons(x.port);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		assert_int_equal(vmm__xport_new(fd, &xo, &xp), 0);
		assert_int_equal(vmm__tls_conn_new(t, fd, &c), 0);
		assert_int_equal(vmm__tls_handshake(c, 5000, NULL), 0);
		assert_int_equal(vmm__xport_set_tls(xp, c), 0);
		shape.has_mem_size = 1, shape.mem_size = (uint64_t)MIB << 20;
		shape.has_vcpus = 1, shape.vcpus = 1;
		shape.has_page_size = 1, shape.page_size = PAGE;
		h.has_version_major = 1, h.version_major = VMM_STREAM_MAJOR;
		h.has_version_minor = 1, h.version_minor = VMM_STREAM_MINOR;
		h.has_required_features = 1;
		h.required_features = VMM_FEAT_RAM_BATCHES | VMM_FEAT_HANDOVER;
		h.shape = &shape;
		h.has_connections = 1, h.connections = 1;
		h.has_session_id = 1, h.session_id = (ProtobufCBinaryData){ 16, (uint8_t *)session };
		h.has_conn_index = 1, h.conn_index = 0;
		assert_int_equal(vmm__stream_write_preamble(xp), 0);
		assert_int_equal(vmm__stream_write_msg(xp, VMM_REC_HELLO, &h.base), 0);
		assert_int_equal(vmm__stream_read_rec(xp, VMM_REC_HELLO_REPLY, &rh, &b), 0);
		free(b);
		/* The corpus input (every second file name: bit-flipped after its first record
		 * header), then the end of the connection. */
		if (n & 1)
			for (size_t i = 8; i < len; i += 7)
				data[i] ^= 0x5a;
		vmm__xport_write(xp, data, len);
		shutdown(fd, SHUT_WR);
		assert_int_not_equal(mu_rx_join(&x), 0);
		print_message("    %s: %s: %s\n", de->d_name, vmm_err_name(x.r), x.detail);
		assert_null(x.vm);
		vmm__xport_free(xp);
		close(fd);
		vmm__tls_free(t);
		free(data);
		n++;
	}
	closedir(d);
	assert_true(n > 0);
}

static int group_setup(void **state)
{
	(void)state;
	if (tc_make(dir, sizeof(dir))) {
		print_error("could not make the test credentials\n");
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	tc_remove(dir);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(full_migration_certificates, fake_vm_setup),
		cmocka_unit_test_setup(full_migration_psk, fake_vm_setup),
		cmocka_unit_test_setup(wrong_ca, fake_vm_setup),
		cmocka_unit_test_setup(expired_certificate, fake_vm_setup),
		cmocka_unit_test_setup(wrong_name, fake_vm_setup),
		cmocka_unit_test_setup(wrong_psk, fake_vm_setup),
		cmocka_unit_test_setup(plain_source_tls_receiver, fake_vm_setup),
		cmocka_unit_test_setup(tls_source_plain_receiver, fake_vm_setup),
		cmocka_unit_test_setup(receiver_needs_peer_name, fake_vm_setup),
		cmocka_unit_test_setup(hostile_authenticated_peer, fake_vm_setup),
		cmocka_unit_test_setup(sandboxed_migrations, fake_vm_setup),
		cmocka_unit_test_setup(certificates_in_memory, fake_vm_setup),
		cmocka_unit_test_setup(bad_certificates_in_memory, fake_vm_setup),
	};

	/* _exit: LeakSanitizer's check at exit (it ptraces) is no call the filter allows. */
	if (argc == 3 && !strcmp(argv[1], "--sandboxed-child"))
		_exit(sandboxed_child(argv[2]));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
