/* Fuzz target: the migration receiver after the source's HELLO, the code vmm_migrate_receive
 * runs (this file includes migrate/receive.c and calls its receive_after_hello): the hello
 * accepted and a VM built on the fake kernel, then RAM records of any type on the control
 * connection (RAM batches, ROUND, SYNC echoed, ERROR, END), the machine STATE installed
 * into the VM, COMPLETE checked against the pages that arrived, READY, GO. The input is
 * everything the source sends after its HELLO; the HELLO is a fixed one for a 2 MiB,
 * 1-vCPU VM (one connection, the hand-over spoken). The input comes from a socket whose
 * far end is closed after it, so the receiver meets the end of the stream, not a wait.
 * Seeds: seeds/receiver_seeds.c (whole migrations of such a VM).
 *
 * Speed (perf, issue 15): at 185 inputs/s two thirds of the time went to the RAM
 * receiver's 2 MiB of buffers, which ASan maps, poisons and unmaps on every allocation;
 * then to the fake kernel clearing its 64 vCPU slots (5 MiB) at each VM's creation and
 * close, and the transport's 260 KiB I/O queue that a socket never uses. The receiver's
 * code still runs whole per input (it makes and frees its RAM receiver, its VM, its
 * transport): vmm__ram_rx_keep_idle(1) only lets a freed receiver's buffers be the next
 * one's, the fake kernel clears what a VM uses, and the queue is made on first use. */
#include "../../migrate/receive.c"

#include "fuzz.h"
#include "fake_vm.h"

#define INPUT_MAX (256u << 10)

static uint8_t hello_buf[4096];
static size_t hello_len;

/* The hello a source of a fresh 2 MiB fake VM sends, packed once. */
static void make_hello(void)
{
	static uint8_t session[16] = "fuzz-session-id";
	struct vmm__hello_buf hb;
	struct vmm_vm *vm;

	fake_kvm_install();
	vm = fake_vm_new(2, 1, 0, NULL, NULL);
	if (!vm)
		abort();
	vmm__hello_from_vm(vm, VMM_FEAT_RAM_BATCHES | VMM_FEAT_ZSTD | VMM_FEAT_HANDOVER, &hb);
	hb.hello.has_connections = 1, hb.hello.connections = 1;
	hb.hello.has_session_id = 1;
	hb.hello.session_id = (ProtobufCBinaryData){ sizeof(session), session };
	hb.hello.has_conn_index = 1, hb.hello.conn_index = 0;
	hello_len = vmm__stream__hello__get_packed_size(&hb.hello);
	if (hello_len > sizeof(hello_buf))
		abort();
	vmm__stream__hello__pack(&hb.hello, hello_buf);
	vmm_vm_destroy(vm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct receiver *rv;
	struct vmm_vm *vm = NULL;
	Vmm__Stream__Hello *h;
	int sv[2], big = 64 << 20;

	if (!hello_len) {
		make_hello();
		vmm__ram_rx_keep_idle(1);
	}
	if (size > INPUT_MAX)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	/* Room for the whole input, and for every SYNC echo and reply the receiver writes
	 * back (never read here): the receiver must never wait on this socket. */
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
	if (size && write(sv[1], data, size) != (ssize_t)size)
		abort();
	shutdown(sv[1], SHUT_WR);
	rv = calloc(1, sizeof(*rv));
	h = vmm__stream__hello__unpack(NULL, hello_len, hello_buf);
	if (!rv || !h)
		abort();
	vmm_receive_opts_init(&rv->o);
	rv->o.no_start = 1;
	rv->o.timeout_ms = 2000;
	rv->o.max_mem_size = 4u << 20;
	if (conn_open(rv, &rv->c[0], sv[0]))
		abort();
	receive_after_hello(rv, 0, h, -1, &vm); /* frees rv and h, closes sv[0] */
	vmm_vm_destroy(vm);
	close(sv[1]);
	return 0;
}
