/* vmm_bench: one measured thing per invocation, one JSON object per line on stdout
 * (progress and guest output on stderr). Driven by tests/bench/bench.py; usable by hand.
 *
 *   vmm_bench membw [--size MiB] [--runs N]
 *   vmm_bench create-first-insn [--mem MiB] [--runs N]
 *   vmm_bench pause-resume [--mem MiB] [--n N]
 *   vmm_bench save --mem MiB --pattern P --file F [--fill MiB] [--compress] [--live]
 *                  [--repeat N] [--stdin]
 *   vmm_bench restore --file F --mode eager|lazy [--verify none|sampled|full] [--stdin]
 *   vmm_bench migrate-send --port P --mem MiB --pattern P [--fill MiB] [--conns N]
 *                  [--compress off|zstd|auto] [--guest ELF --cmdline STR --wait-line STR]
 *                  [--downtime-ms MS]
 *   vmm_bench migrate-recv --port P [--stdin] [--wait-exit SECONDS]
 *                  (--port 0: an ephemeral port, printed; with --wait-exit or --guest the
 *                  arriving guest is not the fill guest and has no heartbeat to wait for)
 *   vmm_bench clone --file F --n N
 *
 * Guest: the fill guest (tests/guests/fill.c). Its heartbeat is an MMIO write to
 * 0xd0000000 every `tick` us; the first one after a start is "the guest's first
 * instruction" as far as the host can see. A read of 0xd0000008 gives it a command
 * (1: verify a sample, 2: verify everything).
 *
 * --stdin: after the measured thing, keep the VM and take commands, one a line:
 *   save FILE [compress] [live]      snapshot it (the VM keeps running)
 *   send PORT CONNS off|zstd|auto    migrate it to 127.0.0.1:PORT (then it is gone)
 *   verify sampled|full              ask the guest to check its memory
 *   wait-exit SECONDS                wait for the guest to exit (memcheck)
 *   heartbeat                        check the guest still runs
 *   pause | resume                   (so that idle guests do not spin while others are measured)
 *   quit
 * Every command answers with one JSON line with "ok". The exit status is 0 only if every
 * operation and every verification succeeded. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vmm/vmm.h>

#include "libvmm/clock.h" /* the one monotonic clock of libvmm and its tests */

#ifndef VMM_BENCH_GUEST_DIR
#define VMM_BENCH_GUEST_DIR "."
#endif

#define MMIO_BASE 0xd0000000ull
#define MMIO_LEN 0x1000ull

static double ms_since(uint64_t t0) { return (double)(vmm__now_ns() - t0) / 1e6; }

static void die(const char *fmt, ...)
{
	va_list ap;
	char msg[512];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "vmm_bench: %s\n", msg);
	/* One JSON line too, so a driver reading stdout sees why. */
	printf("{\"event\":\"error\",\"ok\":false,\"error\":\"");
	for (const char *c = msg; *c; c++)
		putchar(*c == '"' || *c == '\\' ? '\'' : *c);
	printf("\"}\n");
	fflush(stdout);
	exit(1);
}

static void vdie(const char *what, int r)
{
	die("%s: %s (%s)", what, vmm_strerror(r), vmm_last_error());
}

/* ---------------------------------------------------------------- options */

static struct {
	uint64_t mem_mib, fill_mib, size_mib;
	const char *pattern, *file, *mode, *guest, *cmdline, *wait_line, *verify, *compress;
	int runs, n, repeat, use_stdin, live, compressf, conns, port, tick, seed;
	double downtime_ms, wait_exit_s, timeout_s;
} opt = {
	.mem_mib = 256, .size_mib = 1024, .pattern = "random", .mode = "eager", .verify = "none",
	.compress = "off", .runs = 3, .n = 100, .repeat = 1, .conns = 1, .tick = 50, .seed = 1,
	.timeout_s = 300,
};

static void parse_opts(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "mem", 1, 0, 'm' },	     { "fill", 1, 0, 'F' },	{ "size", 1, 0, 's' },
		{ "pattern", 1, 0, 'p' },    { "file", 1, 0, 'f' },	{ "mode", 1, 0, 'M' },
		{ "guest", 1, 0, 'g' },	     { "cmdline", 1, 0, 'c' },	{ "wait-line", 1, 0, 'w' },
		{ "verify", 1, 0, 'v' },     { "compress", 2, 0, 'z' }, { "runs", 1, 0, 'r' },
		{ "n", 1, 0, 'n' },	     { "repeat", 1, 0, 'R' },	{ "stdin", 0, 0, 'S' },
		{ "live", 0, 0, 'l' },	     { "conns", 1, 0, 'C' },	{ "port", 1, 0, 'P' },
		{ "tick", 1, 0, 't' },	     { "seed", 1, 0, 'e' },	{ "downtime-ms", 1, 0, 'd' },
		{ "wait-exit", 1, 0, 'x' },  { "timeout", 1, 0, 'T' },	{ 0, 0, 0, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'm': opt.mem_mib = strtoull(optarg, NULL, 0); break;
		case 'F': opt.fill_mib = strtoull(optarg, NULL, 0); break;
		case 's': opt.size_mib = strtoull(optarg, NULL, 0); break;
		case 'p': opt.pattern = optarg; break;
		case 'f': opt.file = optarg; break;
		case 'M': opt.mode = optarg; break;
		case 'g': opt.guest = optarg; break;
		case 'c': opt.cmdline = optarg; break;
		case 'w': opt.wait_line = optarg; break;
		case 'v': opt.verify = optarg; break;
		case 'z':
			if (optarg)
				opt.compress = optarg;
			opt.compressf = 1;
			break;
		case 'r': opt.runs = atoi(optarg); break;
		case 'n': opt.n = atoi(optarg); break;
		case 'R': opt.repeat = atoi(optarg); break;
		case 'S': opt.use_stdin = 1; break;
		case 'l': opt.live = 1; break;
		case 'C': opt.conns = atoi(optarg); break;
		case 'P': opt.port = atoi(optarg); break;
		case 't': opt.tick = atoi(optarg); break;
		case 'e': opt.seed = atoi(optarg); break;
		case 'd': opt.downtime_ms = atof(optarg); break;
		case 'x': opt.wait_exit_s = atof(optarg); break;
		case 'T': opt.timeout_s = atof(optarg); break;
		default: die("bad option (see the comment at the top of vmm_bench.c)");
		}
	}
}

/* ---------------------------------------------------------------- one guest's I/O */

/* What a VM's serial output and MMIO heartbeat told us. vCPU threads write, the control
 * thread waits on the condition variable. */
struct gio {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const char *name;
	char line[512];
	size_t len;
	int fill_done, verify_ok, verify_failed, exception, too_big, wait_line_seen;
	char verify_line[512];
	const char *wait_line;
	/* heartbeat */
	uint64_t hb_count, hb_value, hb_first_ns, hb_last_ns;
	int hb_waiters;
	uint64_t command; /* returned once by the next read of +8 */
};

static void gio_init(struct gio *g, const char *name)
{
	memset(g, 0, sizeof(*g));
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->name = name;
	g->wait_line = opt.wait_line;
}

static void on_line(struct gio *g, const char *l)
{
	fprintf(stderr, "[%s] %s\n", g->name, l);
	if (!strcmp(l, "fill done"))
		g->fill_done = 1;
	else if (!strncmp(l, "verify ok", 9)) {
		g->verify_ok++;
		snprintf(g->verify_line, sizeof(g->verify_line), "%s", l);
	} else if (!strncmp(l, "verify FAILED", 13)) {
		g->verify_failed++;
		snprintf(g->verify_line, sizeof(g->verify_line), "%s", l);
	} else if (!strncmp(l, "EXCEPTION", 9) || strstr(l, "CORRUPT"))
		g->exception = 1;
	else if (!strcmp(l, "fill too big") || !strcmp(l, "memcheck too big"))
		g->too_big = 1;
	if (g->wait_line && strstr(l, g->wait_line))
		g->wait_line_seen = 1;
}

static void on_serial(void *opaque, const uint8_t *buf, size_t len)
{
	struct gio *g = opaque;

	pthread_mutex_lock(&g->lock);
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\n' || g->len == sizeof(g->line) - 1) {
			g->line[g->len] = '\0';
			on_line(g, g->line);
			g->len = 0;
			pthread_cond_broadcast(&g->cond);
			if (buf[i] == '\n')
				continue;
		}
		if (buf[i] != '\r')
			g->line[g->len++] = (char)buf[i];
	}
	pthread_mutex_unlock(&g->lock);
}

static void on_mmio(void *opaque, uint64_t addr, uint8_t *data, uint32_t size, int is_write)
{
	struct gio *g = opaque;
	uint64_t v = 0;

	if (is_write && addr == MMIO_BASE) {
		uint64_t t = vmm__now_ns();

		memcpy(&v, data, size < 8 ? size : 8);
		pthread_mutex_lock(&g->lock);
		if (!g->hb_count)
			g->hb_first_ns = t;
		g->hb_last_ns = t;
		g->hb_count++;
		g->hb_value = v;
		if (g->hb_waiters)
			pthread_cond_broadcast(&g->cond);
		pthread_mutex_unlock(&g->lock);
	} else if (!is_write) {
		if (addr == MMIO_BASE + 8) {
			pthread_mutex_lock(&g->lock);
			v = g->command;
			g->command = 0;
			pthread_mutex_unlock(&g->lock);
		}
		memcpy(data, &v, size < 8 ? size : 8);
	}
}

static void on_log(void *opaque, int level, const char *msg)
{
	if (level <= VMM_LOG_WARN)
		fprintf(stderr, "[libvmm] %s\n", msg);
}

/* Waits (lock held) until *flag != 0 or the guest failed; deadline in ns. 0: ok. */
static int gio_wait_locked(struct gio *g, const int *flag, uint64_t deadline)
{
	while (!*flag && !g->exception && !g->too_big) {
		struct timespec ts;
		uint64_t rt;

		if (vmm__now_ns() >= deadline)
			return -1;
		clock_gettime(CLOCK_REALTIME, &ts);
		rt = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + 20000000ull;
		ts.tv_sec = (time_t)(rt / 1000000000ull);
		ts.tv_nsec = (long)(rt % 1000000000ull);
		pthread_cond_timedwait(&g->cond, &g->lock, &ts);
	}
	return *flag ? 0 : -1;
}

/* Waits for heartbeat count > have; returns the time of the first heartbeat after 0. */
static int gio_wait_hb(struct gio *g, uint64_t have, double timeout_s)
{
	uint64_t deadline = vmm__now_ns() + (uint64_t)(timeout_s * 1e9);
	int r = 0;

	pthread_mutex_lock(&g->lock);
	g->hb_waiters++;
	while (g->hb_count <= have && !g->exception) {
		struct timespec ts;

		if (vmm__now_ns() >= deadline) {
			r = -1;
			break;
		}
		/* Short sleeps: the first heartbeat's own timestamp is what counts. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&g->cond, &g->lock, &ts);
	}
	g->hb_waiters--;
	if (g->exception)
		r = -1;
	pthread_mutex_unlock(&g->lock);
	return r;
}

/* Asks the guest to verify (1 sampled, 2 full); 0 when it printed "verify ok". */
static int gio_verify(struct gio *g, int how, double timeout_s, char *line, size_t linelen)
{
	int before, r;

	pthread_mutex_lock(&g->lock);
	before = g->verify_ok + g->verify_failed;
	g->command = (uint64_t)how;
	uint64_t deadline = vmm__now_ns() + (uint64_t)(timeout_s * 1e9);
	while (g->verify_ok + g->verify_failed == before && !g->exception && vmm__now_ns() < deadline) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&g->cond, &g->lock, &ts);
	}
	r = g->verify_ok + g->verify_failed > before && g->verify_failed == 0 && !g->exception
		    ? 0 : -1;
	snprintf(line, linelen, "%s", g->verify_line[0] ? g->verify_line : "no answer");
	pthread_mutex_unlock(&g->lock);
	return r;
}

/* ---------------------------------------------------------------- helpers */

static const char *guest_path(void)
{
	static char buf[4096];

	if (opt.guest)
		return opt.guest;
	snprintf(buf, sizeof(buf), "%s/fill.elf", VMM_BENCH_GUEST_DIR);
	return buf;
}

static const char *fill_cmdline(const char *pattern, uint64_t fill_mib)
{
	static char buf[512];

	if (opt.cmdline)
		return opt.cmdline;
	snprintf(buf, sizeof(buf), "mem=%llu pattern=%s tick=%d seed=%d",
		 (unsigned long long)fill_mib, pattern, opt.tick, opt.seed);
	return buf;
}

static uint64_t default_fill(uint64_t mem_mib)
{
	/* The same working set under libvmm and QEMU: RAM minus the image and QEMU's
	 * reserved top (bench.py passes the same). */
	return opt.fill_mib ? opt.fill_mib : mem_mib > 64 ? mem_mib - 16 : mem_mib / 2;
}

static struct vmm_vm *boot(struct gio *g, uint64_t mem_mib, const char *cmdline)
{
	struct vmm_vm_config cfg;
	struct vmm_vm *vm;
	int r;

	vmm_vm_config_init(&cfg);
	cfg.mem_size = mem_mib << 20;
	cfg.cmdline = cmdline;
	cfg.serial_out = on_serial;
	cfg.serial_opaque = g;
	cfg.log = on_log;
	r = vmm_vm_create(&cfg, &vm);
	if (r)
		vdie("vmm_vm_create", r);
	r = vmm_vm_load_kernel(vm, guest_path(), NULL);
	if (r)
		vdie("vmm_vm_load_kernel", r);
	r = vmm_vm_register_mmio(vm, MMIO_BASE, MMIO_LEN, on_mmio, g);
	if (r)
		vdie("vmm_vm_register_mmio", r);
	r = vmm_vm_start(vm);
	if (r)
		vdie("vmm_vm_start", r);
	return vm;
}

/* Boots the fill guest and waits for "fill done" (or --wait-line for other guests). */
static struct vmm_vm *boot_filled(struct gio *g)
{
	uint64_t t0 = vmm__now_ns(), fill = default_fill(opt.mem_mib);
	const char *cl = fill_cmdline(opt.pattern, fill);
	struct vmm_vm *vm = boot(g, opt.mem_mib, cl);
	uint64_t deadline = t0 + (uint64_t)(opt.timeout_s * 1e9);
	int r;

	pthread_mutex_lock(&g->lock);
	r = gio_wait_locked(g, g->wait_line ? &g->wait_line_seen : &g->fill_done, deadline);
	pthread_mutex_unlock(&g->lock);
	if (r)
		die("guest did not reach %s within %.0f s%s", g->wait_line ? g->wait_line : "fill done",
		    opt.timeout_s, g->too_big ? " (working set too big)" : "");
	printf("{\"event\":\"booted\",\"ok\":true,\"mem_mib\":%llu,\"cmdline\":\"%s\",\"fill_ms\":%.3f}\n",
	       (unsigned long long)opt.mem_mib, cl, ms_since(t0));
	fflush(stdout);
	return vm;
}

static uint64_t disk_bytes(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : (uint64_t)st.st_blocks * 512;
}

static int failures;

/* ---------------------------------------------------------------- membw */

static double gbps(uint64_t bytes, uint64_t ns) { return (double)bytes / (double)ns; }

static int cmd_membw(void)
{
	size_t sz = (size_t)opt.size_mib << 20;

	for (int run = 0; run < opt.runs; run++) {
		/* memcpy between two buffers already faulted in */
		uint8_t *a = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint8_t *b = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint64_t t0, best = UINT64_MAX;

		if (a == MAP_FAILED || b == MAP_FAILED)
			die("mmap %zu", sz);
		memset(a, 1, sz);
		memset(b, 2, sz);
		for (int i = 0; i < 3; i++) {
			t0 = vmm__now_ns();
			memcpy(b, a, sz);
			if (vmm__now_ns() - t0 < best)
				best = vmm__now_ns() - t0;
		}
		printf("{\"event\":\"memcpy\",\"ok\":true,\"run\":%d,\"bytes\":%zu,\"gb_s\":%.3f}\n", run,
		       sz, gbps(sz, best));
		munmap(a, sz);
		munmap(b, sz);

		/* first touch: fresh memory, one write per byte, as a restore or a migration
		 * destination pays it. anon4k: private anonymous, no THP; anon_thp: with
		 * MADV_HUGEPAGE (what QEMU asks for); memfd: shared memfd with MADV_HUGEPAGE
		 * (what libvmm's guest RAM is). */
		const char *kinds[] = { "anon4k", "anon_thp", "memfd" };
		for (int k = 0; k < 3; k++) {
			uint8_t *p;
			int fd = -1;

			if (k == 2) {
				fd = memfd_create("bench", MFD_CLOEXEC);
				if (fd < 0 || ftruncate(fd, (off_t)sz))
					die("memfd");
				p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			} else {
				p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			}
			if (p == MAP_FAILED)
				die("mmap");
			madvise(p, sz, k == 0 ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
			t0 = vmm__now_ns();
			memset(p, 0xa5, sz);
			uint64_t ns = vmm__now_ns() - t0;
			printf("{\"event\":\"first_touch\",\"ok\":true,\"run\":%d,\"kind\":\"%s\",\"bytes\":%zu,\"gb_s\":%.3f}\n",
			       run, kinds[k], sz, gbps(sz, ns));
			munmap(p, sz);
			if (fd >= 0)
				close(fd);
		}
		fflush(stdout);
	}
	return 0;
}

/* ---------------------------------------------------------------- create-first-insn */

static int cmd_create_first_insn(void)
{
	char cl[128];

	snprintf(cl, sizeof(cl), "pattern=none tick=%d", opt.tick);
	for (int run = 0; run < opt.runs; run++) {
		struct vmm_vm_config cfg;
		struct vmm_vm *vm;
		struct gio g;
		uint64_t t0, t_create, t_load, t_start;
		int r;

		gio_init(&g, "guest");
		vmm_vm_config_init(&cfg);
		cfg.mem_size = opt.mem_mib << 20;
		cfg.cmdline = cl;
		cfg.serial_out = on_serial;
		cfg.serial_opaque = &g;
		cfg.log = on_log;
		t0 = vmm__now_ns();
		r = vmm_vm_create(&cfg, &vm);
		if (r)
			vdie("vmm_vm_create", r);
		t_create = vmm__now_ns();
		r = vmm_vm_load_kernel(vm, guest_path(), NULL);
		if (!r)
			r = vmm_vm_register_mmio(vm, MMIO_BASE, MMIO_LEN, on_mmio, &g);
		if (r)
			vdie("load", r);
		t_load = vmm__now_ns();
		r = vmm_vm_start(vm);
		if (r)
			vdie("vmm_vm_start", r);
		t_start = vmm__now_ns();
		if (gio_wait_hb(&g, 0, 30))
			die("no heartbeat from the guest within 30 s");
		printf("{\"event\":\"create_first_insn\",\"ok\":true,\"run\":%d,\"mem_mib\":%llu,"
		       "\"create_ms\":%.3f,\"load_ms\":%.3f,\"start_ms\":%.3f,\"boot_ms\":%.3f,\"total_ms\":%.3f}\n",
		       run, (unsigned long long)opt.mem_mib, (t_create - t0) / 1e6, (t_load - t_create) / 1e6,
		       (t_start - t_load) / 1e6, (g.hb_first_ns - t_start) / 1e6, (g.hb_first_ns - t0) / 1e6);
		fflush(stdout);
		vmm_vm_destroy(vm);
	}
	return 0;
}

/* ---------------------------------------------------------------- pause-resume */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void print_dist(const char *name, double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	printf("\"%s\":{\"median_us\":%.2f,\"p99_us\":%.2f,\"min_us\":%.2f,\"max_us\":%.2f}", name,
	       v[n / 2], v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], v[0], v[n - 1]);
}

static int cmd_pause_resume(void)
{
	struct gio g;
	char cl[128];
	double *p = calloc((size_t)opt.n, sizeof(double)), *rs = calloc((size_t)opt.n, sizeof(double));
	struct vmm_vm *vm;

	gio_init(&g, "guest");
	snprintf(cl, sizeof(cl), "pattern=none tick=%d", opt.tick);
	vm = boot(&g, opt.mem_mib, cl);
	if (gio_wait_hb(&g, 0, 30))
		die("no heartbeat");
	for (int i = 0; i < opt.n; i++) {
		uint64_t t0 = vmm__now_ns(), t1, t2;
		int r = vmm_vm_pause(vm);

		t1 = vmm__now_ns();
		if (r)
			vdie("vmm_vm_pause", r);
		usleep(200);
		t2 = vmm__now_ns();
		r = vmm_vm_resume(vm);
		if (r)
			vdie("vmm_vm_resume", r);
		p[i] = (t1 - t0) / 1e3;
		rs[i] = (vmm__now_ns() - t2) / 1e3;
		/* let it run a little and prove it does */
		pthread_mutex_lock(&g.lock);
		uint64_t have = g.hb_count;
		pthread_mutex_unlock(&g.lock);
		if (gio_wait_hb(&g, have, 10))
			die("guest did not run after resume %d", i);
	}
	printf("{\"event\":\"pause_resume\",\"ok\":true,\"n\":%d,", opt.n);
	print_dist("pause", p, opt.n);
	printf(",");
	print_dist("resume", rs, opt.n);
	printf("}\n");
	fflush(stdout);
	vmm_vm_destroy(vm);
	free(p);
	free(rs);
	return 0;
}

/* ---------------------------------------------------------------- save */

static int do_save(struct vmm_vm *vm, struct gio *g, const char *file, int compress, int live,
		   int run)
{
	struct vmm_snapshot_opts so;
	struct vmm_snapshot_stats st;
	uint64_t t0, ms;
	int r;

	vmm_snapshot_opts_init(&so);
	if (compress)
		so.flags |= VMM_SNAPSHOT_COMPRESS;
	if (live)
		so.flags |= VMM_SNAPSHOT_LIVE;
	unlink(file);
	t0 = vmm__now_ns();
	r = vmm_snapshot_save(vm, file, &so, &st);
	ms = vmm__now_ns() - t0;
	if (r) {
		printf("{\"event\":\"save\",\"ok\":false,\"error\":\"%s: %s\"}\n", vmm_strerror(r),
		       vmm_last_error());
		fflush(stdout);
		failures++;
		return r;
	}
	/* A running guest must still be running afterwards (a paused one stays paused). */
	pthread_mutex_lock(&g->lock);
	uint64_t have = g->hb_count;
	pthread_mutex_unlock(&g->lock);
	int alive = vmm_vm_run_state(vm) != VMM_VM_RUNNING || gio_wait_hb(g, have, 10) == 0;
	uint64_t mem = vmm_vm_mem_size(vm);

	printf("{\"event\":\"save\",\"ok\":%s,\"run\":%d,\"mem_bytes\":%llu,\"compress\":%d,\"live\":%d,"
	       "\"ms\":%.3f,\"total_ms\":%.3f,\"mb_s\":%.1f,\"pause_ms\":%.3f,\"file_bytes\":%llu,"
	       "\"disk_bytes\":%llu,\"ram_bytes\":%llu,\"pages_written\":%llu,\"zero_pages\":%llu,"
	       "\"rounds\":%u,\"guest_alive\":%d}\n",
	       alive ? "true" : "false", run, (unsigned long long)mem, compress, live, ms / 1e6,
	       st.total_ns / 1e6, (double)mem / 1e6 / (ms / 1e9), st.pause_ns / 1e6,
	       (unsigned long long)st.file_bytes, (unsigned long long)disk_bytes(file),
	       (unsigned long long)st.ram_bytes, (unsigned long long)st.pages_written,
	       (unsigned long long)st.zero_pages, st.rounds, alive);
	fflush(stdout);
	if (!alive)
		failures++;
	return alive ? 0 : -1;
}

/* ---------------------------------------------------------------- migrate */

struct send_ctx {
	uint64_t t0;
};

static void on_round(void *opaque, const struct vmm_migrate_round *rd,
		     const struct vmm_migrate_stats *total)
{
	struct send_ctx *c = opaque;

	printf("{\"event\":\"round\",\"t_ms\":%.3f,\"round\":%u,\"final\":%d,\"pages\":%llu,"
	       "\"zero_pages\":%llu,\"raw_bytes\":%llu,\"wire_bytes\":%llu,\"duration_ms\":%.3f,"
	       "\"bandwidth_mbps\":%.1f,\"dirty_rate_mbps\":%.1f,\"remaining_bytes\":%llu,"
	       "\"expected_downtime_ms\":%.3f,\"throttle_pct\":%u}\n",
	       ms_since(c->t0), rd->round, rd->final, (unsigned long long)rd->pages,
	       (unsigned long long)rd->zero_pages, (unsigned long long)rd->raw_bytes,
	       (unsigned long long)rd->wire_bytes, rd->duration_ns / 1e6, rd->bandwidth_mbps,
	       rd->dirty_rate_mbps, (unsigned long long)rd->remaining_bytes,
	       rd->expected_downtime_ns / 1e6, rd->throttle_pct);
	fflush(stdout);
}

static int parse_compress(const char *s)
{
	if (!strcmp(s, "zstd"))
		return VMM_MIGRATE_COMPRESS_ZSTD;
	if (!strcmp(s, "auto"))
		return VMM_MIGRATE_COMPRESS_AUTO;
	return VMM_MIGRATE_COMPRESS_OFF;
}

static int do_send(struct vmm_vm *vm, int port, int conns, const char *compress)
{
	struct vmm_migrate_opts mo;
	struct vmm_migrate_stats st;
	struct send_ctx c;
	uint64_t mem = vmm_vm_mem_size(vm);
	int r;

	vmm_migrate_opts_init(&mo);
	mo.connections = (uint32_t)conns;
	mo.compress = parse_compress(compress);
	mo.progress = on_round;
	mo.progress_opaque = &c;
	if (opt.downtime_ms > 0)
		mo.downtime_limit_ns = (uint64_t)(opt.downtime_ms * 1e6);
	c.t0 = vmm__now_ns();
	r = vmm_migrate_send_to(vm, "127.0.0.1", (uint16_t)port, &mo, &st);
	double wall = ms_since(c.t0);
	if (r) {
		printf("{\"event\":\"send\",\"ok\":false,\"error\":\"%s: %s\"}\n", vmm_strerror(r),
		       vmm_last_error());
		fflush(stdout);
		failures++;
		return r;
	}
	printf("{\"event\":\"send\",\"ok\":true,\"mem_bytes\":%llu,\"conns\":%d,\"compress\":\"%s\","
	       "\"wall_ms\":%.3f,\"total_ms\":%.3f,\"mb_s\":%.1f,\"wire_mb_s\":%.1f,\"rounds\":%u,"
	       "\"downtime_ms\":%.3f,\"expected_downtime_ms\":%.3f,\"pages\":%llu,\"zero_pages\":%llu,"
	       "\"raw_bytes\":%llu,\"wire_bytes\":%llu,\"compression_ratio\":%.3f,\"max_throttle_pct\":%u,"
	       "\"state_bytes\":%llu}\n",
	       (unsigned long long)mem, conns, compress, wall, st.total_ns / 1e6,
	       (double)mem / 1e6 / (st.total_ns / 1e9), (double)st.wire_bytes / 1e6 / (st.total_ns / 1e9),
	       st.rounds, st.downtime_ns / 1e6, st.expected_downtime_ns / 1e6,
	       (unsigned long long)st.pages, (unsigned long long)st.zero_pages,
	       (unsigned long long)st.raw_bytes, (unsigned long long)st.wire_bytes,
	       st.compression_ratio, st.max_throttle_pct, (unsigned long long)st.state_bytes);
	fflush(stdout);
	return 0;
}

/* ---------------------------------------------------------------- the command loop */

static int wait_exit(struct vmm_vm *vm, double secs)
{
	struct vmm_exit ex;
	int r = vmm_vm_wait(vm, (int)(secs * 1000), &ex);

	if (r) {
		printf("{\"event\":\"exit\",\"ok\":false,\"error\":\"%s\"}\n", vmm_strerror(r));
		failures++;
	} else {
		int ok = ex.reason == VMM_EXIT_GUEST && ex.status == 0;

		printf("{\"event\":\"exit\",\"ok\":%s,\"reason\":%d,\"status\":%d,\"detail\":\"%s\"}\n",
		       ok ? "true" : "false", ex.reason, ex.status, ex.detail);
		if (!ok)
			failures++;
	}
	fflush(stdout);
	return r;
}

static int verify_cmd(struct gio *g, const char *how)
{
	char line[512];
	uint64_t t0 = vmm__now_ns();
	int r = gio_verify(g, !strcmp(how, "full") ? 2 : 1, opt.timeout_s, line, sizeof(line));

	printf("{\"event\":\"verify\",\"ok\":%s,\"how\":\"%s\",\"ms\":%.3f,\"line\":\"%s\"}\n",
	       r ? "false" : "true", how, ms_since(t0), line);
	fflush(stdout);
	if (r)
		failures++;
	return r;
}

static void command_loop(struct vmm_vm *vm, struct gio *g)
{
	char line[1024];
	int run = 0;

	printf("{\"event\":\"ready\",\"ok\":true}\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		char a[512] = "", b[64] = "", c[64] = "", d[64] = "";
		int n;

		line[strcspn(line, "\n")] = '\0';
		n = sscanf(line, "%*s %511s %63s %63s %63s", a, b, c, d);
		(void)n;
		if (!strncmp(line, "quit", 4))
			break;
		else if (!strncmp(line, "save ", 5)) {
			int comp = !strcmp(b, "compress") || !strcmp(c, "compress");
			int live = !strcmp(b, "live") || !strcmp(c, "live");
			do_save(vm, g, a, comp, live, run++);
		} else if (!strncmp(line, "send ", 5)) {
			if (!do_send(vm, atoi(a), atoi(b), c[0] ? c : "off")) {
				vmm_vm_destroy(vm);
				vm = NULL;
				printf("{\"event\":\"gone\",\"ok\":true}\n");
				fflush(stdout);
			}
		} else if (!strncmp(line, "verify", 6)) {
			verify_cmd(g, a[0] ? a : "sampled");
		} else if (!strncmp(line, "wait-exit", 9)) {
			wait_exit(vm, atof(a));
		} else if (!strcmp(line, "pause") || !strcmp(line, "resume")) {
			int p = line[0] == 'p';
			uint64_t t0 = vmm__now_ns();
			int r = p ? vmm_vm_pause(vm) : vmm_vm_resume(vm);
			printf("{\"event\":\"%s\",\"ok\":%s,\"us\":%.1f}\n", p ? "paused" : "resumed",
			       r ? "false" : "true", (vmm__now_ns() - t0) / 1e3);
			fflush(stdout);
			if (r)
				failures++;
		} else if (!strncmp(line, "heartbeat", 9)) {
			pthread_mutex_lock(&g->lock);
			uint64_t have = g->hb_count, v = g->hb_value;
			pthread_mutex_unlock(&g->lock);
			int ok = vm && gio_wait_hb(g, have, 10) == 0;
			printf("{\"event\":\"heartbeat\",\"ok\":%s,\"value\":%llu}\n", ok ? "true" : "false",
			       (unsigned long long)v);
			fflush(stdout);
			if (!ok)
				failures++;
		} else {
			printf("{\"event\":\"error\",\"ok\":false,\"error\":\"unknown command\"}\n");
			fflush(stdout);
		}
		if (!vm)
			break;
	}
	if (vm)
		vmm_vm_destroy(vm);
}

/* ---------------------------------------------------------------- subcommands */

static int cmd_save(void)
{
	struct gio g;
	struct vmm_vm *vm;

	gio_init(&g, "guest");
	vm = boot_filled(&g);
	if (opt.use_stdin) {
		command_loop(vm, &g);
		return failures ? 1 : 0;
	}
	if (!opt.file)
		die("save needs --file");
	for (int i = 0; i < opt.repeat; i++)
		do_save(vm, &g, opt.file, opt.compressf, opt.live, i);
	vmm_vm_destroy(vm);
	return failures ? 1 : 0;
}

static int cmd_restore(void)
{
	struct vmm_restore_opts ro;
	struct vmm_vm *vm;
	struct gio g;
	uint64_t t0, t1, t2, t3;
	int r;

	if (!opt.file)
		die("restore needs --file");
	gio_init(&g, "restored");
	vmm_restore_opts_init(&ro);
	ro.mode = !strcmp(opt.mode, "lazy") ? VMM_RESTORE_LAZY : VMM_RESTORE_EAGER;
	ro.serial_out = on_serial;
	ro.serial_opaque = &g;
	ro.log = on_log;
	t0 = vmm__now_ns();
	r = vmm_snapshot_restore(opt.file, &ro, &vm);
	t1 = vmm__now_ns();
	if (r)
		vdie("vmm_snapshot_restore", r);
	r = vmm_vm_register_mmio(vm, MMIO_BASE, MMIO_LEN, on_mmio, &g);
	if (r)
		vdie("vmm_vm_register_mmio", r);
	t2 = vmm__now_ns();
	r = vmm_vm_start(vm);
	t3 = vmm__now_ns();
	if (r)
		vdie("vmm_vm_start", r);
	if (gio_wait_hb(&g, 0, 30))
		die("no heartbeat after the restore");
	uint64_t mem = vmm_vm_mem_size(vm);
	printf("{\"event\":\"restore\",\"ok\":true,\"mode\":\"%s\",\"mem_bytes\":%llu,\"restore_ms\":%.3f,"
	       "\"start_ms\":%.3f,\"first_insn_ms\":%.3f,\"start_to_insn_ms\":%.3f,\"mb_s\":%.1f}\n",
	       opt.mode, (unsigned long long)mem, (t1 - t0) / 1e6, (t3 - t2) / 1e6,
	       (g.hb_first_ns - t0) / 1e6, (g.hb_first_ns - t3) / 1e6,
	       (double)mem / 1e6 / ((t1 - t0) / 1e9));
	fflush(stdout);
	if (strcmp(opt.verify, "none"))
		verify_cmd(&g, opt.verify);
	if (opt.use_stdin)
		command_loop(vm, &g);
	else
		vmm_vm_destroy(vm);
	return failures ? 1 : 0;
}

static int cmd_migrate_send(void)
{
	struct gio g;
	struct vmm_vm *vm;

	if (!opt.port)
		die("migrate-send needs --port");
	gio_init(&g, "source");
	vm = boot_filled(&g);
	do_send(vm, opt.port, opt.conns, opt.compress);
	vmm_vm_destroy(vm);
	return failures ? 1 : 0;
}

static int cmd_migrate_recv(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	struct vmm_receive_opts ro;
	struct vmm_vm *vm;
	struct gio g;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, r;
	uint64_t t0, t1, t2;

	a.sin_port = htons((uint16_t)opt.port);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 16) ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen))
		die("listen on 127.0.0.1:%d: %s", opt.port, strerror(errno));
	printf("{\"event\":\"listening\",\"ok\":true,\"port\":%d}\n", ntohs(a.sin_port));
	fflush(stdout);
	gio_init(&g, "destination");
	vmm_receive_opts_init(&ro);
	ro.serial_out = on_serial;
	ro.serial_opaque = &g;
	ro.log = on_log;
	ro.no_start = 1;
	ro.timeout_ms = 60000;
	/* Accept blocks until the source connects; bench.py bounds the whole process. */
	t0 = vmm__now_ns();
	r = vmm_migrate_receive(lfd, &ro, &vm);
	t1 = vmm__now_ns();
	close(lfd);
	if (r)
		vdie("vmm_migrate_receive", r);
	r = vmm_vm_register_mmio(vm, MMIO_BASE, MMIO_LEN, on_mmio, &g);
	if (r)
		vdie("vmm_vm_register_mmio", r);
	t2 = vmm__now_ns();
	r = vmm_vm_start(vm);
	if (r)
		vdie("vmm_vm_start", r);
	/* memcheck has no heartbeat: it shows it runs by finishing. */
	int is_fill = !opt.guest && opt.wait_exit_s <= 0;
	if (is_fill && gio_wait_hb(&g, 0, 30))
		die("no heartbeat after the migration");
	printf("{\"event\":\"received\",\"ok\":true,\"accept_to_commit_ms\":%.3f,\"start_to_insn_ms\":%.3f}\n",
	       (t1 - t0) / 1e6, is_fill ? (g.hb_first_ns - t2) / 1e6 : -1.0);
	fflush(stdout);
	if (opt.wait_exit_s > 0)
		wait_exit(vm, opt.wait_exit_s);
	if (opt.use_stdin)
		command_loop(vm, &g);
	else
		vmm_vm_destroy(vm);
	return failures ? 1 : 0;
}

/* Private (not shared with another mapping) and proportional memory of this process, kB. */
static void mem_kb(long *priv, long *pss, long *rss)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];
	long v;

	*priv = *pss = *rss = 0;
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Private_Clean: %ld", &v) == 1 || sscanf(line, "Private_Dirty: %ld", &v) == 1)
			*priv += v;
		else if (sscanf(line, "Pss: %ld", &v) == 1)
			*pss = v;
		else if (sscanf(line, "Rss: %ld", &v) == 1)
			*rss = v;
	}
	if (f)
		fclose(f);
}

static long mem_available_kb(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	long v = 0;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %ld", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

/* As examples/api/clone.c: N lazy restores of one snapshot, side by side. Each clone is
 * restored, started, seen executing (first heartbeat), then paused, so a hundred clones
 * busy-polling two cores do not slow down the restores that follow. */
static int cmd_clone(void)
{
	struct vmm_vm **vms = calloc((size_t)opt.n, sizeof(*vms));
	struct gio *gs = calloc((size_t)opt.n, sizeof(*gs));
	double *per = calloc((size_t)opt.n, sizeof(double)), *ins = calloc((size_t)opt.n, sizeof(double));
	long priv0, pss0, rss0, priv1, pss1, rss1, avail0, avail1;
	uint64_t tall = vmm__now_ns();

	if (!opt.file)
		die("clone needs --file");
	mem_kb(&priv0, &pss0, &rss0);
	avail0 = mem_available_kb();
	for (int i = 0; i < opt.n; i++) {
		struct vmm_restore_opts ro;
		uint64_t t0 = vmm__now_ns(), t1;
		int r;

		gio_init(&gs[i], "clone");
		vmm_restore_opts_init(&ro);
		ro.mode = VMM_RESTORE_LAZY;
		ro.serial_out = on_serial;
		ro.serial_opaque = &gs[i];
		r = vmm_snapshot_restore(opt.file, &ro, &vms[i]);
		if (!r)
			r = vmm_vm_register_mmio(vms[i], MMIO_BASE, MMIO_LEN, on_mmio, &gs[i]);
		if (!r)
			r = vmm_vm_start(vms[i]);
		if (r)
			vdie("clone", r);
		t1 = vmm__now_ns();
		if (gio_wait_hb(&gs[i], 0, 30))
			die("clone %d: no heartbeat", i);
		per[i] = (t1 - t0) / 1e6;
		ins[i] = (gs[i].hb_first_ns - t0) / 1e6;
		r = vmm_vm_pause(vms[i]);
		if (r)
			vdie("pause clone", r);
	}
	double all_ms = ms_since(tall);
	mem_kb(&priv1, &pss1, &rss1);
	avail1 = mem_available_kb();
	/* Every clone still runs when resumed. */
	int alive = 0;
	for (int i = 0; i < opt.n; i++) {
		pthread_mutex_lock(&gs[i].lock);
		uint64_t have = gs[i].hb_count;
		pthread_mutex_unlock(&gs[i].lock);
		vmm_vm_resume(vms[i]);
		alive += gio_wait_hb(&gs[i], have, 10) == 0;
		vmm_vm_pause(vms[i]);
	}
	double sum = 0, sumi = 0;
	for (int i = 0; i < opt.n; i++)
		sum += per[i], sumi += ins[i];
	qsort(per, (size_t)opt.n, sizeof(double), cmp_double);
	qsort(ins, (size_t)opt.n, sizeof(double), cmp_double);
	printf("{\"event\":\"clone\",\"ok\":%s,\"n\":%d,\"alive\":%d,\"all_ms\":%.3f,"
	       "\"restore_start_ms_mean\":%.3f,\"restore_start_ms_median\":%.3f,\"restore_start_ms_max\":%.3f,"
	       "\"first_insn_ms_mean\":%.3f,\"first_insn_ms_median\":%.3f,\"first_insn_ms_max\":%.3f,"
	       "\"private_kb_per_clone\":%.1f,\"pss_kb_per_clone\":%.1f,\"rss_kb_per_clone\":%.1f,"
	       "\"memavailable_kb_per_clone\":%.1f}\n",
	       alive == opt.n ? "true" : "false", opt.n, alive, all_ms, sum / opt.n, per[opt.n / 2],
	       per[opt.n - 1], sumi / opt.n, ins[opt.n / 2], ins[opt.n - 1],
	       (double)(priv1 - priv0) / opt.n, (double)(pss1 - pss0) / opt.n,
	       (double)(rss1 - rss0) / opt.n, (double)(avail0 - avail1) / opt.n);
	fflush(stdout);
	for (int i = 0; i < opt.n; i++)
		vmm_vm_destroy(vms[i]);
	free(vms);
	free(gs);
	free(per);
	free(ins);
	return alive == opt.n ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2) {
		fprintf(stderr, "usage: vmm_bench membw|create-first-insn|pause-resume|save|restore|"
				"migrate-send|migrate-recv|clone [options]\n");
		return 2;
	}
	cmd = argv[1];
	parse_opts(argc - 1, argv + 1);
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (!strcmp(cmd, "membw"))
		return cmd_membw();
	if (!strcmp(cmd, "create-first-insn"))
		return cmd_create_first_insn();
	if (!strcmp(cmd, "pause-resume"))
		return cmd_pause_resume();
	if (!strcmp(cmd, "save"))
		return cmd_save();
	if (!strcmp(cmd, "restore"))
		return cmd_restore();
	if (!strcmp(cmd, "migrate-send"))
		return cmd_migrate_send();
	if (!strcmp(cmd, "migrate-recv"))
		return cmd_migrate_recv();
	if (!strcmp(cmd, "clone"))
		return cmd_clone();
	fprintf(stderr, "vmm_bench: unknown subcommand %s\n", cmd);
	return 2;
}
