/* tls_bench: the cost of TLS on a migration's page transfer, on the fake kernel (no KVM
 * needed: no guest runs, so this is the memory-only path: one full round of pages, then
 * the hand-over), source and destination in this process over loopback TCP. One JSON
 * line per run on stdout; the destination's memory is compared page by page.
 *
 *   tls_bench --mem MiB --pattern random|text --tls off|cert|psk --conns N
 *   tls_bench --mem MiB --pattern random|text --dump FILE
 * --dump writes the memory content to FILE and exits: the bench loads that same content
 * into QEMU's RAM for its peer rows (tests/bench/vmmbench/peers_qemu_tls.py).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_vm.h"
#include "migrate_util.h"
#include "tls_certs.h"

static void fill(uint8_t *buf, size_t len, const char *pattern)
{
	static const char *const words[] = { "migration ", "guest ", "memory ", "page ", "the ",
					     "of ", "kernel ", "libvmm ", "and ", "dirty\n" };
	uint64_t x = 0x9e3779b97f4a7c15ull;

	if (!strcmp(pattern, "random")) {
		for (size_t i = 0; i + 8 <= len; i += 8) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			memcpy(buf + i, &x, 8);
		}
		return;
	}
	for (size_t i = 0; i < len;) {
		const char *w;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		w = words[x % 10];
		for (; *w && i < len; w++)
			buf[i++] = (uint8_t)*w;
	}
}

/* The content fill() gives, written to a file (written under a temporary name, renamed). */
static int dump_content(const char *path, size_t len, const char *pattern)
{
	char tmp[4096];
	uint8_t *buf = malloc(len);
	FILE *f;
	int bad;

	snprintf(tmp, sizeof(tmp), "%s.part", path);
	if (!buf || !(f = fopen(tmp, "wb"))) {
		perror(path);
		free(buf);
		return 1;
	}
	fill(buf, len, pattern);
	bad = fwrite(buf, 1, len, f) != len;
	bad |= fclose(f) != 0;
	free(buf);
	if (bad || rename(tmp, path)) {
		perror(path);
		remove(tmp);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mem", required_argument, NULL, 'm' }, { "pattern", required_argument, NULL, 'p' },
		{ "tls", required_argument, NULL, 't' }, { "conns", required_argument, NULL, 'c' },
		{ "dump", required_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	const char *pattern = "random", *mode = "off", *dump = NULL;
	unsigned mem = 256, conns = 1;
	char dir[256], ca[512], dcert[512], dkey[512], scert[512], skey[512];
	struct vmm_tls_opts rt, st;
	struct vmm_migrate_opts mo;
	struct vmm_migrate_stats s;
	struct mu_rx x;
	struct vmm_vm *vm;
	uint8_t *a, *b, key[32];
	struct timespec t0, t1;
	size_t len, bad = 0;
	int c, r;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'm')
			mem = (unsigned)atoi(optarg);
		else if (c == 'p')
			pattern = optarg;
		else if (c == 't')
			mode = optarg;
		else if (c == 'c')
			conns = (unsigned)atoi(optarg);
		else if (c == 'd')
			dump = optarg;
		else
			return 2;
	}
	len = (size_t)mem << 20;
	if (dump)
		return dump_content(dump, len, pattern);
	fake_vm_setup(NULL);
	if (tc_make(dir, sizeof(dir)))
		return 1;
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(dcert, sizeof(dcert), "%s/dest.pem", dir);
	snprintf(dkey, sizeof(dkey), "%s/dest.key", dir);
	snprintf(scert, sizeof(scert), "%s/src.pem", dir);
	snprintf(skey, sizeof(skey), "%s/src.key", dir);
	memset(key, 7, sizeof(key));
	vmm_tls_opts_init(&rt);
	vmm_tls_opts_init(&st);
	if (!strcmp(mode, "cert")) {
		rt.ca_file = st.ca_file = ca;
		rt.cert_file = dcert, rt.key_file = dkey, rt.peer_name = TC_SRC_NAME;
		st.cert_file = scert, st.key_file = skey, st.peer_name = TC_DEST_NAME;
	} else if (!strcmp(mode, "psk")) {
		rt.psk = st.psk = key;
		rt.psk_len = st.psk_len = sizeof(key);
		rt.psk_identity = st.psk_identity = "bench";
	}
	vm = fake_vm_new_loaded(mem, 1, NULL, NULL);
	a = malloc(len), b = malloc(len);
	if (!vm || !a || !b)
		return 1;
	fill(a, len, pattern);
	vmm_vm_mem_write(vm, 0, a, len);
	if (vmm_vm_start(vm)) /* a migration takes a running (or paused) VM */
		return 1;
	mu_rx_init(&x);
	x.o.no_start = 1;
	x.o.tls = strcmp(mode, "off") ? &rt : NULL;
	mu_rx_start(&x);
	vmm_migrate_opts_init(&mo);
	mo.connections = conns;
	mo.tls = x.o.tls ? &st : NULL;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = vmm_migrate_send_to(vm, "127.0.0.1", x.port, &mo, &s);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (r)
		fprintf(stderr, "send: %s (%s)\n", vmm_err_name(r), vmm_last_error());
	mu_rx_join(&x);
	if (!r && x.r)
		r = x.r;
	if (!r) {
		vmm_vm_mem_read(x.vm, 0, b, len);
		for (size_t p = 0; p < len / 4096; p++)
			bad += memcmp(a + p * 4096, b + p * 4096, 4096) != 0;
	}
	{
		double sec = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

		printf("{\"tls\": \"%s\", \"conns\": %u, \"pattern\": \"%s\", \"mem_mib\": %u, "
		       "\"ok\": %s, \"pages_differ\": %zu, \"total_ms\": %.1f, \"mbps\": %.0f, "
		       "\"tls_connections\": %u, \"ktls_connections\": %u}\n",
		       mode, conns, pattern, mem, !r && !bad ? "true" : "false", bad, sec * 1e3,
		       (double)len / 1e6 / sec, s.tls_connections, s.ktls_connections);
	}
	vmm_vm_destroy(x.vm);
	vmm_vm_destroy(vm);
	tc_remove(dir);
	free(a), free(b);
	return r || bad;
}
