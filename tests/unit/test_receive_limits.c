/* The receiver's front door, on the fake kernel (no guest runs): a forged source in this
 * process speaks the raw stream to vmm_migrate_receive() on a thread. A VM larger than
 * this host's available memory or with more vCPUs than KVM recommends here is refused
 * before anything is built (the source hears why and keeps running); a stray connection
 * (garbage, silence, a wrong session) is dropped and the real source still gets in, on
 * the control connection and among the extra ones. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "migrate_util.h"
#include "migrate/stream.h"
#include "migrate/xport.h"
#include "stream.pb-c.h"

#define RX_MIB 8

/* One forged connection to the receiver. */
struct peer {
	int fd;
	struct vmm__xport *xp;
};

/* opts: NULL for the defaults (timeout 3 s, not started). */
static void rx_start(struct mu_rx *x, const struct vmm_receive_opts *o)
{
	mu_rx_init(x);
	x->o.timeout_ms = 3000;
	x->o.no_start = 1;
	if (o)
		x->o = *o;
	x->vm = (struct vmm_vm *)1; /* must become NULL on failure */
	mu_rx_start(x);
}

static int rx_finish(struct mu_rx *x)
{
	mu_rx_join(x);
	print_message("    -> %s: %s\n", x->r ? vmm_err_name(x->r) : "ok", x->detail);
	if (x->r)
		assert_null(x->vm);
	else
		vmm_vm_destroy(x->vm);
	return x->r;
}

static void peer_connect(struct peer *p, const struct mu_rx *x)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct vmm__xport_opts xo = { .timeout_ms = 5000 };

	a.sin_port = htons(x->port);
	p->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(p->fd >= 0);
	assert_int_equal(connect(p->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(vmm__xport_new(p->fd, &xo, &p->xp), 0);
}

static void peer_close(struct peer *p)
{
	vmm__xport_free(p->xp);
	close(p->fd);
}

static const uint8_t session[16] = "0123456789abcdef";

/* Preamble and HELLO: a VM of mem_mib and vcpus over nconns connections, this one being
 * conn_index, with session id sess. */
static void peer_hello(struct peer *p, uint64_t mem_mib, uint32_t vcpus, uint32_t nconns,
		       uint32_t conn_index, const uint8_t *sess)
{
	Vmm__Stream__Hello h = VMM__STREAM__HELLO__INIT;
	Vmm__Stream__VmShape shape = VMM__STREAM__VM_SHAPE__INIT;

	shape.has_mem_size = 1, shape.mem_size = mem_mib << 20;
	shape.has_vcpus = 1, shape.vcpus = vcpus;
	shape.has_page_size = 1, shape.page_size = 4096;
	h.has_version_major = 1, h.version_major = VMM_STREAM_MAJOR;
	h.has_version_minor = 1, h.version_minor = VMM_STREAM_MINOR;
	h.has_required_features = 1, h.required_features = VMM_FEAT_RAM_BATCHES | VMM_FEAT_HANDOVER;
	h.shape = &shape;
	h.has_connections = 1, h.connections = nconns;
	h.has_session_id = 1, h.session_id = (ProtobufCBinaryData){ 16, (uint8_t *)sess };
	h.has_conn_index = 1, h.conn_index = conn_index;
	assert_int_equal(vmm__stream_write_preamble(p->xp), 0);
	assert_int_equal(vmm__stream_write_msg(p->xp, VMM_REC_HELLO, &h.base), 0);
}

static Vmm__Stream__HelloReply *peer_reply(struct peer *p)
{
	Vmm__Stream__HelloReply *rep;
	struct vmm__rec_hdr rh;
	uint8_t *b;

	assert_int_equal(vmm__stream_read_rec(p->xp, VMM_REC_HELLO_REPLY, &rh, &b), 0);
	rep = vmm__stream__hello_reply__unpack(NULL, rh.len, b);
	free(b);
	assert_non_null(rep);
	if (!rep->accepted)
		print_message("    refused: %s\n", rep->reason ? rep->reason : "");
	return rep;
}

/* The source gives up: the receiver must end with VMM_EPEER having built nothing for us. */
static void peer_give_up(struct peer *p)
{
	vmm__stream_send_error(p->xp, VMM_ECANCELED, "test source gives up");
}

/* A refused HELLO: the reply names the code and `figure`; the receiver fails with it. */
static void refused(uint64_t mem_mib, uint32_t vcpus, int want, const char *figure)
{
	Vmm__Stream__HelloReply *rep;
	struct peer p;
	struct mu_rx x;

	fake_kvm_log_clear();
	rx_start(&x, NULL);
	peer_connect(&p, &x);
	peer_hello(&p, mem_mib, vcpus, 1, 0, session);
	rep = peer_reply(&p);
	assert_false(rep->accepted);
	assert_int_equal(rep->error, want);
	assert_non_null(rep->reason);
	if (figure && !strstr(rep->reason, figure))
		fail_msg("reason \"%s\" does not name %s", rep->reason, figure);
	vmm__stream__hello_reply__free_unpacked(rep, NULL);
	assert_int_equal(rx_finish(&x), want);
	/* Refused before anything was built: no VM, no guest memory. */
	assert_int_equal(fake_kvm_log_find(KVM_CREATE_VM, 0), -1);
	peer_close(&p);
}

static void larger_than_host_memory(void **state)
{
	(void)state;
	/* 1 TiB: within libvmm's format limit, beyond what any test machine has free. */
	refused(1ull << 20, 1, VMM_ESHAPE, "available");
}

static void max_mem_raises_the_cap(void **state)
{
	Vmm__Stream__HelloReply *rep;
	struct vmm_receive_opts o;
	struct peer p;
	struct mu_rx x;

	(void)state;
	/* An explicit cap below the VM refuses it, naming the cap... */
	vmm_receive_opts_init(&o);
	o.timeout_ms = 3000, o.no_start = 1, o.max_mem_size = 4ull << 20;
	rx_start(&x, &o);
	peer_connect(&p, &x);
	peer_hello(&p, RX_MIB, 1, 1, 0, session);
	rep = peer_reply(&p);
	assert_false(rep->accepted);
	assert_int_equal(rep->error, VMM_ESHAPE);
	assert_non_null(strstr(rep->reason, "4 MiB"));
	vmm__stream__hello_reply__free_unpacked(rep, NULL);
	assert_int_equal(rx_finish(&x), VMM_ESHAPE);
	peer_close(&p);
}

static void more_vcpus_than_host(void **state)
{
	(void)state;
	fake_kvm_set_vcpu_caps(2, 64);
	refused(RX_MIB, 4, VMM_ESHAPE, "2 ");
}

static void vcpus_4096(void **state)
{
	(void)state;
	refused(RX_MIB, 4096, VMM_ESHAPE, "4096");
}

static void max_vcpus_raises_the_cap(void **state)
{
	Vmm__Stream__HelloReply *rep;
	struct vmm_receive_opts o;
	struct peer p;
	struct mu_rx x;

	(void)state;
	fake_kvm_set_vcpu_caps(2, 64);
	vmm_receive_opts_init(&o);
	o.timeout_ms = 3000, o.no_start = 1, o.max_vcpus = 4;
	rx_start(&x, &o);
	peer_connect(&p, &x);
	peer_hello(&p, RX_MIB, 4, 1, 0, session);
	rep = peer_reply(&p);
	assert_true(rep->accepted);
	vmm__stream__hello_reply__free_unpacked(rep, NULL);
	peer_give_up(&p);
	assert_int_equal(rx_finish(&x), VMM_EPEER);
	peer_close(&p);
}

/* A stray connection first (garbage, or silence), then the real source: it is accepted
 * promptly, well within the receiver's timeout. */
static void stray_then_source(int silent)
{
	static const char http[] = "GET / HTTP/1.0\r\n\r\n";
	Vmm__Stream__HelloReply *rep;
	struct peer stray, p;
	struct timespec t0, t1;
	struct mu_rx x;
	char c;

	rx_start(&x, NULL);
	peer_connect(&stray, &x);
	if (!silent) {
		assert_int_equal(vmm__xport_write(stray.xp, http, sizeof(http) - 1), 0);
		/* Dropped: the receiver closes it without a word. */
		assert_true(recv(stray.fd, &c, 1, 0) <= 0); /* closed (reset: its bytes unread) */
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	peer_connect(&p, &x);
	peer_hello(&p, RX_MIB, 1, 1, 0, session);
	rep = peer_reply(&p);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(rep->accepted);
	vmm__stream__hello_reply__free_unpacked(rep, NULL);
	/* Not held up by the silent one for the receiver's 3 s timeout. */
	assert_true(t1.tv_sec - t0.tv_sec < 2);
	peer_give_up(&p);
	assert_int_equal(rx_finish(&x), VMM_EPEER);
	peer_close(&p);
	peer_close(&stray);
}

static void stray_garbage_then_source(void **state)
{
	(void)state;
	stray_then_source(0);
}

static void stray_silent_then_source(void **state)
{
	(void)state;
	stray_then_source(1);
}

/* Strays while the extra connections are being accepted (garbage; a HELLO of another
 * session; one claiming the control connection's index) are not taken for them. */
static void stray_among_extra_connections(void **state)
{
	static const uint8_t other[16] = "another session!";
	Vmm__Stream__HelloReply *rep;
	struct peer p0, p1, garbage, wrong, dup;
	struct vmm__rec_hdr h;
	uint8_t *b;
	struct mu_rx x;
	char c;

	(void)state;
	rx_start(&x, NULL);
	peer_connect(&p0, &x);
	peer_hello(&p0, RX_MIB, 1, 2, 0, session);
	rep = peer_reply(&p0);
	assert_true(rep->accepted);
	vmm__stream__hello_reply__free_unpacked(rep, NULL);

	/* All connected first (each waits, pending, until it speaks): their transports then
	 * never reuse the memory of one the receiver freed, which TSan cannot see through. */
	peer_connect(&garbage, &x);
	peer_connect(&wrong, &x);
	peer_connect(&dup, &x);
	peer_connect(&p1, &x);
	assert_int_equal(vmm__xport_write(garbage.xp, "\x00\x03\x01\x02\x00\x01\x00\x01", 8), 0);
	assert_true(recv(garbage.fd, &c, 1, 0) <= 0); /* closed (reset: its bytes unread) */
	peer_hello(&wrong, RX_MIB, 1, 2, 1, other);
	assert_int_equal(vmm__stream_read_rec(wrong.xp, 0, &h, &b), VMM_EREFUSED);
	peer_hello(&dup, RX_MIB, 1, 2, 0, session);
	assert_int_equal(vmm__stream_read_rec(dup.xp, 0, &h, &b), VMM_EREFUSED);

	/* The real extra connection: served by a RAM thread, which echoes SYNC. */
	peer_hello(&p1, RX_MIB, 1, 2, 1, session);
	assert_int_equal(vmm__stream_write_rec(p1.xp, VMM_REC_SYNC, NULL, 0), 0);
	assert_int_equal(vmm__stream_read_rec(p1.xp, VMM_REC_SYNC, &h, &b), 0);
	free(b);
	peer_give_up(&p0);
	assert_int_equal(rx_finish(&x), VMM_EPEER);
	peer_close(&p0);
	peer_close(&p1);
	peer_close(&garbage);
	peer_close(&wrong);
	peer_close(&dup);
}

/* End to end on the fake kernel: a silent stray and a garbage one connect first, then a
 * real source over two connections migrates a VM; it arrives. */
static void strays_then_real_migration(void **state)
{
	static const char text[] = "guest memory that must arrive";
	struct vmm_vm *vm = fake_vm_new_loaded(16, 1, NULL, NULL);
	struct vmm_migrate_opts mo;
	struct peer silent, junk;
	char got[sizeof(text)];
	struct mu_rx x;
	char c;

	(void)state;
	assert_non_null(vm);
	assert_int_equal(vmm_vm_mem_write(vm, 0x200000, text, sizeof(text)), 0);
	assert_int_equal(vmm_vm_start(vm), 0);
	rx_start(&x, NULL);
	peer_connect(&silent, &x);
	peer_connect(&junk, &x);
	assert_int_equal(vmm__xport_write(junk.xp, "SSH-2.0-OpenSSH_9.2\r\n", 21), 0);
	assert_true(recv(junk.fd, &c, 1, 0) <= 0);
	vmm_migrate_opts_init(&mo);
	mo.connections = 2;
	mo.timeout_ms = 5000;
	assert_int_equal(vmm_migrate_send_to(vm, "127.0.0.1", x.port, &mo, NULL), 0);
	mu_rx_join(&x);
	print_message("    -> %s: %s\n", x.r ? vmm_err_name(x.r) : "ok", x.detail);
	assert_int_equal(x.r, 0);
	assert_int_equal(vmm_vm_mem_read(x.vm, 0x200000, got, sizeof(got)), 0);
	assert_memory_equal(got, text, sizeof(text));
	assert_int_equal(vmm_vm_start(x.vm), 0);
	vmm_vm_destroy(x.vm);
	peer_close(&silent);
	peer_close(&junk);
	vmm_vm_destroy(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(larger_than_host_memory, fake_vm_setup),
		cmocka_unit_test_setup(max_mem_raises_the_cap, fake_vm_setup),
		cmocka_unit_test_setup(more_vcpus_than_host, fake_vm_setup),
		cmocka_unit_test_setup(vcpus_4096, fake_vm_setup),
		cmocka_unit_test_setup(max_vcpus_raises_the_cap, fake_vm_setup),
		cmocka_unit_test_setup(stray_garbage_then_source, fake_vm_setup),
		cmocka_unit_test_setup(stray_silent_then_source, fake_vm_setup),
		cmocka_unit_test_setup(stray_among_extra_connections, fake_vm_setup),
		cmocka_unit_test_setup(strays_then_real_migration, fake_vm_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
