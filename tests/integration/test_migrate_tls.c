/* Live migration over TLS 1.3 between two processes, real guests: memcheck (which
 * rewrites and verifies its memory all along, so a page lost or garbled in transit fails
 * its own check) moves mid-run to this binary re-executed as the destination, once with
 * certificates over two connections and once with a PSK. Kept short: the refusal cases
 * are unit tests on the fake kernel (tests/unit/test_tls.c). */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "migrate_util.h"
#include "tls_certs.h"

extern char **environ;

static char dir[256];

/* Credentials of one side: "cert" (the given side's tls-dir layout) or "psk". */
struct side {
	struct vmm_tls_opts o;
	char ca[512], cert[512], key[512];
	uint8_t psk[32];
};

static const struct vmm_tls_opts *side_opts(struct side *s, const char *mode, const char *who,
					    const char *peer)
{
	vmm_tls_opts_init(&s->o);
	if (!strcmp(mode, "psk")) {
		for (size_t i = 0; i < sizeof(s->psk); i++)
			s->psk[i] = (uint8_t)(0x40 + i);
		s->o.psk = s->psk, s->o.psk_len = sizeof(s->psk), s->o.psk_identity = "memcheck";
		return &s->o;
	}
	snprintf(s->ca, sizeof(s->ca), "%s/%s/ca.pem", dir, who);
	snprintf(s->cert, sizeof(s->cert), "%s/%s/cert.pem", dir, who);
	snprintf(s->key, sizeof(s->key), "%s/%s/key.pem", dir, who);
	s->o.ca_file = s->ca, s->o.cert_file = s->cert, s->o.key_file = s->key;
	s->o.peer_name = peer;
	return &s->o;
}

/* The destination: "receive-tls FD MODE DIR": receives, runs the guest, prints its output,
 * exits with its status (100: nothing arrived). */
static int child(char **argv)
{
	struct vmm_receive_opts o;
	struct tu_output out;
	struct side s;
	struct vmm_vm *vm;
	struct vmm_exit ex;
	int r;

	snprintf(dir, sizeof(dir), "%s", argv[4]);
	tu_output_init(&out);
	vmm_receive_opts_init(&o);
	o.serial_out = tu_output_sink;
	o.serial_opaque = &out;
	o.tls = side_opts(&s, argv[3], "dest", TC_SRC_NAME);
	r = vmm_migrate_receive(atoi(argv[2]), &o, &vm);
	if (r) {
		fprintf(stderr, "receive: %s (%s)\n", vmm_err_name(r), vmm_last_error());
		return 100;
	}
	r = vmm_vm_wait(vm, 600000, &ex);
	vmm_vm_destroy(vm);
	fwrite(out.buf ? out.buf : "", 1, out.len, stdout);
	return r ? 101 : ex.reason == VMM_EXIT_GUEST ? ex.status : 102;
}

static void migrate_tls(const char *mode, unsigned conns)
{
	char fdstr[16], *argv[] = { "/proc/self/exe", "receive-tls", fdstr, (char *)mode, dir, NULL };
	char outpath[300], *after, *before;
	posix_spawn_file_actions_t fa;
	struct vmm_migrate_opts o;
	struct vmm_migrate_stats st;
	struct tu_output out;
	struct side s;
	struct vmm_vm *vm;
	uint16_t port;
	pid_t pid;
	int lfd = mu_listen(&port), ws, r;

	snprintf(fdstr, sizeof(fdstr), "%d", lfd);
	snprintf(outpath, sizeof(outpath), "%s/dest-%s.out", dir, mode);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, outpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	tu_output_init(&out);
	vm = tu_vm_new_ring("memcheck.elf",
			    tu_slowdown() > 1 ? "mem=24 gens=60 rate=40" : "mem=100 gens=40 rate=400",
			    128, 1, 0, &out);
	assert_int_equal(vmm_vm_start(vm), 0);
	tu_wait_lines(&out, vm, 3, 60);
	vmm_migrate_opts_init(&o);
	o.connections = conns;
	o.max_rounds = 10; /* then stop-and-copy: the guest must still be running by then */
	o.tls = side_opts(&s, mode, "src", TC_DEST_NAME);
	r = vmm_migrate_send_to(vm, "127.0.0.1", port, &o, &st);
	if (r)
		fail_msg("migrate over TLS (%s): %s (%s)", mode, vmm_err_name(r), vmm_last_error());
	print_message("    %s: %u rounds, %.1f MB, %u TLS connections (%u kTLS), %.0f ms\n", mode,
		      st.rounds, (double)st.wire_bytes / 1e6, st.tls_connections,
		      st.ktls_connections, (double)st.total_ns / 1e6);
	assert_int_equal(st.tls_connections, conns);
	assert_int_equal(vmm_vm_migrated(vm), 1);
	before = tu_output_copy(&out);
	vmm_vm_destroy(vm);
	tu_output_free(&out);
	close(lfd);
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	after = tu_read_file(outpath, NULL);
	unlink(outpath);
	if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0 || !after ||
	    strcmp(tu_last_line(after), "memcheck done ok"))
		fail_msg("%s: destination exit %d\n--- source:\n%s\n--- destination:\n%s", mode,
			 WIFEXITED(ws) ? WEXITSTATUS(ws) : -1, before, after ? after : "");
	free(before);
	free(after);
}

static void certificates_two_connections(void **state)
{
	(void)state;
	migrate_tls("cert", 2);
}

static void psk_one_connection(void **state)
{
	(void)state;
	migrate_tls("psk", 1);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(certificates_two_connections),
		cmocka_unit_test(psk_one_connection),
	};
	int r;

	if (argc >= 5 && !strcmp(argv[1], "receive-tls"))
		return child(argv);
	tu_require_kvm();
	if (tc_make(dir, sizeof(dir)))
		return 1;
	r = cmocka_run_group_tests(tests, NULL, NULL);
	tc_remove(dir);
	return r;
}
