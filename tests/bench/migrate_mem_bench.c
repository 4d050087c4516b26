/* migrate_mem_bench: the migration data path on memory only (issue 14). A source VM on the
 * fake kernel (tests/util/fake_kvm.h: guest RAM is real memory, only the KVM calls are
 * faked, no vCPU runs) is migrated over loopback TCP to a receiver thread of this process
 * through the real vmm_migrate_send_to / vmm_migrate_receive; the destination's RAM is then
 * compared with the source's page by page (a wrong copy fails the bench, exit 1). Next to
 * it, the physical limits measured in the same run on the same size: a plain loopback TCP
 * send loop, the first touch of a fresh memfd and of anonymous memory, and a plain
 * loopback receive into a fresh memfd (both limits at once, no libvmm).
 *
 *   migrate_mem_bench [--mem MiB (2048)] [--runs N (3)] [--patterns random,text,halfzero]
 *                     [--conns 1,2] [--populate on|off|both (both)] [--no-limits]
 * --populate: the receiver's populate-ahead thread (migrate/rx_populate.h) on or off.
 * --no-limits: migrations only (to profile them alone).
 * Prints a markdown table on stdout, the median of --runs runs per row. Figures only,
 * never pass/fail on time; fails when a copy is wrong or a migration fails. */
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_mem.h"
#include "fake_vm.h"
#include "libvmm/clock.h"
#include "libvmm/bitmap.h"
#include "libvmm/dirty.h"
#include "libvmm/vm_move.h"
#include "migrate/ram.h"
#include "migrate/rx_populate.h"
#include "migrate_util.h"

#define CHUNK (8u << 20)
#define RUNS_MAX 15

/* ---- one migration */

/* Pages of vm's RAM that hold memory at all (the rest are holes of its memfd). */
static uint64_t allocated_pages(struct vmm_vm *vm)
{
	struct vmm__memory *m = vmm__move_ram(vm);
	uint64_t n = m->size / 4096, *bm = calloc(vmm__bitmap_words(n), 8), w;

	if (!bm || vmm__memory_populated(m, bm))
		bench_fail("scan the destination's RAM");
	w = vmm__bitmap_weight(bm, n);
	free(bm);
	return w;
}

/* Migrates a fresh source VM of mib MiB filled with pattern; returns seconds, and checks
 * the destination's RAM page by page against the source's, and that it allocated exactly
 * the non-zero pages (zero pages stay holes, populate-ahead or not). */
static double migrate_once(uint64_t mib, const char *pattern, unsigned conns, int populate)
{
	uint64_t bytes = mib << 20, x = 0x9e3779b97f4a7c15ull, differ = 0, nonzero = 0, alloc;
	uint8_t *a = malloc(CHUNK), *b = malloc(CHUNK);
	struct vmm_migrate_opts mo;
	struct vmm_migrate_stats st;
	struct vmm_vm *vm;
	struct mu_rx rx;
	double t0, t;
	int r;

	vm = fake_vm_new_loaded(mib, 1, NULL, NULL);
	if (!vm || !a || !b)
		bench_fail("source VM");
	for (uint64_t off = 0; off < bytes; off += CHUNK) {
		bench_fill(a, CHUNK, off / 4096, pattern, &x);
		if (vmm_vm_mem_write(vm, off, a, CHUNK))
			bench_fail("fill the source's RAM");
	}
	if (vmm_vm_start(vm)) /* a migration takes a running (or paused) VM */
		bench_fail("start the source");
	vmm__rx_populate_enable(populate ? VMM__RX_POPULATE_ON : VMM__RX_POPULATE_OFF);
	mu_rx_init(&rx);
	rx.o.no_start = 1;
	rx.o.max_mem_size = bytes; /* the host's MemAvailable is not what is measured */
	mu_rx_start(&rx);
	vmm_migrate_opts_init(&mo);
	mo.connections = conns;
	t0 = vmm__now_ns() / 1e9;
	r = vmm_migrate_send_to(vm, "127.0.0.1", rx.port, &mo, &st);
	t = vmm__now_ns() / 1e9 - t0;
	if (r)
		fprintf(stderr, "send: %s (%s)\n", vmm_err_name(r), vmm_last_error());
	if (mu_rx_join(&rx) && !r)
		fprintf(stderr, "receive: %s (%s)\n", vmm_err_name(rx.r), rx.detail);
	if (r || rx.r)
		bench_fail("migration failed");
	/* Before anything reads it: a read fault on a hole of shared memory allocates. */
	alloc = allocated_pages(rx.vm);
	for (uint64_t off = 0; off < bytes; off += CHUNK) {
		if (vmm_vm_mem_read(vm, off, a, CHUNK) || vmm_vm_mem_read(rx.vm, off, b, CHUNK))
			bench_fail("read RAM back");
		for (size_t p = 0; p < CHUNK; p += 4096) {
			differ += memcmp(a + p, b + p, 4096) != 0;
			nonzero += !vmm__page_is_zero(a + p);
		}
	}
	if (alloc != nonzero) {
		fprintf(stderr, "migrate_mem_bench: the destination allocated %llu pages for %llu "
			"non-zero ones (%s, %u connections, populate %s)\n",
			(unsigned long long)alloc, (unsigned long long)nonzero, pattern, conns,
			populate ? "on" : "off");
		exit(1);
	}
	if (differ) {
		fprintf(stderr, "migrate_mem_bench: %llu of %llu pages differ at the destination "
			"(%s, %u connections, populate %s)\n", (unsigned long long)differ,
			(unsigned long long)(bytes / 4096), pattern, conns, populate ? "on" : "off");
		exit(1);
	}
	vmm_vm_destroy(rx.vm);
	vmm_vm_destroy(vm);
	free(a);
	free(b);
	return t;
}

/* ---- the physical limits */

struct lo_peer {
	int fd;
	uint64_t bytes;
};

static void *lo_send(void *arg)
{
	struct lo_peer *p = arg;
	uint8_t *buf = malloc(1 << 20);

	memset(buf, 0x5a, 1 << 20);
	for (uint64_t sent = 0; sent < p->bytes;) {
		size_t n = p->bytes - sent < (1 << 20) ? (size_t)(p->bytes - sent) : 1 << 20;
		ssize_t w = send(p->fd, buf, n, MSG_NOSIGNAL);

		if (w <= 0)
			break;
		sent += (uint64_t)w;
	}
	free(buf);
	return NULL;
}

/* Loopback TCP: bytes sent from a 1 MiB buffer by a thread, received into dst (a reused
 * 1 MiB buffer: the link alone; or a fresh memfd of `bytes`: link and first touch). */
static double loopback(uint64_t bytes, int into_memfd)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct lo_peer peer = { .bytes = bytes };
	uint8_t *dst;
	int lfd = socket(AF_INET, SOCK_STREAM, 0), cfd, fd, mfd = -1;
	pthread_t th;
	double t0, t;

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl))
		bench_fail("loopback listen");
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sizeof(sa)))
		bench_fail("loopback connect");
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		bench_fail("loopback accept");
	if (into_memfd) {
		mfd = memfd_create("bench-lo", 0);
		if (mfd < 0 || ftruncate(mfd, (off_t)bytes))
			bench_fail("memfd");
		dst = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	} else {
		dst = malloc(1 << 20);
	}
	if (!dst || dst == MAP_FAILED)
		bench_fail("loopback buffer");
	peer.fd = cfd;
	t0 = vmm__now_ns() / 1e9;
	if (pthread_create(&th, NULL, lo_send, &peer))
		bench_fail("thread");
	for (uint64_t got = 0; got < bytes;) {
		size_t room = into_memfd ? (size_t)(bytes - got < (4u << 20) ? bytes - got : 4u << 20)
					 : (size_t)(bytes - got < (1u << 20) ? bytes - got : 1u << 20);
		ssize_t n = recv(fd, into_memfd ? dst + got : dst, room, 0);

		if (n <= 0)
			bench_fail("loopback recv");
		got += (uint64_t)n;
	}
	t = vmm__now_ns() / 1e9 - t0;
	pthread_join(th, NULL);
	if (into_memfd) {
		munmap(dst, bytes);
		close(mfd);
	} else {
		free(dst);
	}
	close(fd);
	close(cfd);
	close(lfd);
	return t;
}

/* Measures and prints the limits, each the median of `runs`; returns the time of the
 * slower of loopback and memfd first touch (the min of their rates). */
static double print_limits(uint64_t bytes, int runs)
{
	static const char *const what[] = { "limit: loopback TCP send loop",
					    "limit: first touch, fresh memfd",
					    "limit: first touch, anonymous",
					    "loopback TCP into a fresh memfd" };
	double v[RUNS_MAX], t[4];

	for (int k = 0; k < 4; k++) {
		for (int i = 0; i < runs; i++)
			v[i] = k == 0 ? loopback(bytes, 0) : k == 3 ? loopback(bytes, 1)
						: bench_first_touch(bytes, k == 1, 0);
		t[k] = bench_median(v, runs);
	}
	for (int k = 0; k < 4; k++) {
		printf("| %s | %llu | %.3f | %.0f | ", what[k], (unsigned long long)(bytes >> 20),
		       t[k], (double)bytes / t[k] / 1e6);
		if (k == 3)
			printf("%.2f |\n", (t[0] > t[1] ? t[0] : t[1]) / t[k]);
		else
			printf("|\n");
	}
	return t[0] > t[1] ? t[0] : t[1];
}

static int split(char *list, char **out, int max)
{
	int n = 0;

	for (char *s = strtok(list, ","); s && n < max; s = strtok(NULL, ","))
		out[n++] = s;
	return n;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mem", required_argument, NULL, 'm' },	{ "runs", required_argument, NULL, 'r' },
		{ "patterns", required_argument, NULL, 'p' }, { "conns", required_argument, NULL, 'c' },
		{ "populate", required_argument, NULL, 'P' }, { "no-limits", no_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	char pats[128] = "random,text,halfzero", cl[64] = "1,2", *pv[8], *cv[8];
	const char *pop = "both";
	uint64_t mib = 2048, bytes;
	int runs = 3, limits = 1, np, nc, c;
	double v[RUNS_MAX], lim;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'm')
			mib = strtoull(optarg, NULL, 10);
		else if (c == 'r')
			runs = atoi(optarg);
		else if (c == 'p')
			snprintf(pats, sizeof(pats), "%s", optarg);
		else if (c == 'c')
			snprintf(cl, sizeof(cl), "%s", optarg);
		else if (c == 'P')
			pop = optarg;
		else if (c == 'L')
			limits = 0;
		else
			return 2;
	}
	if (!mib || mib % 8 || runs < 1 || runs > RUNS_MAX ||
	    (strcmp(pop, "on") && strcmp(pop, "off") && strcmp(pop, "both")))
		bench_fail("usage: --mem MiB (a multiple of 8) --runs 1..15 --populate on|off|both");
	bytes = mib << 20;
	np = split(pats, pv, 8);
	nc = split(cl, cv, 8);
	fake_vm_setup(NULL);

	printf("# Migration data path on memory only: %llu MiB, fake kernel, loopback TCP, "
	       "median of %d runs, %ld CPUs\n\n", (unsigned long long)mib, runs,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("| what | MiB | s | MB/s | ratio to min(loopback, memfd touch) |\n");
	printf("| --- | ---: | ---: | ---: | ---: |\n");
	lim = limits ? print_limits(bytes, runs) : 0;
	fflush(stdout);
	for (int p = 0; p < np; p++)
		for (int k = 0; k < nc; k++)
			for (int on = 1; on >= 0; on--) {
				unsigned conns = (unsigned)atoi(cv[k]);
				double t;

				if ((on && !strcmp(pop, "off")) || (!on && !strcmp(pop, "on")))
					continue;
				for (int i = 0; i < runs; i++)
					v[i] = migrate_once(mib, pv[p], conns, on);
				t = bench_median(v, runs);
				printf("| migrate %s, %u conn%s, populate-ahead %s | %llu | %.3f | %.0f | ",
				       pv[p], conns, conns > 1 ? "s" : "", on ? "on" : "off",
				       (unsigned long long)mib, t, (double)bytes / t / 1e6);
				if (lim > 0)
					printf("%.2f |\n", lim / t);
				else
					printf("(--no-limits) |\n");
				fflush(stdout);
			}
	return 0;
}
