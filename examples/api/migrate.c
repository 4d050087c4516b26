/* Live-migrate a running guest to another process over TCP and report the statistics.
 * The destination is this program forked, receiving on 127.0.0.1.
 *
 *   cc migrate.c $(pkg-config --cflags --libs libvmm) -o migrate
 *   ./migrate memcheck.elf "mem=64 gens=20 rate=200"
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vmm/vmm.h>

/* Guest output arrives a byte at a time; print it a line at a time, tagged with the side. */
struct side {
	const char *name;
	char line[256];
	size_t len;
};

static void on_serial(void *opaque, const uint8_t *buf, size_t len)
{
	struct side *s = opaque;

	for (size_t i = 0; i < len; i++) {
		if (s->len < sizeof(s->line) - 1)
			s->line[s->len++] = (char)buf[i];
		if (buf[i] == '\n') {
			printf("[%s] %.*s", s->name, (int)s->len, s->line);
			fflush(stdout);
			s->len = 0;
		}
	}
}

static void on_round(void *opaque, const struct vmm_migrate_round *rd,
		     const struct vmm_migrate_stats *total)
{
	fprintf(stderr, "round %u%s: %llu pages, %.0f MB/s, dirty %.0f MB/s, expected downtime %.2f ms\n",
		rd->round, rd->final ? " (final, paused)" : "", (unsigned long long)rd->pages,
		rd->bandwidth_mbps, rd->dirty_rate_mbps, rd->expected_downtime_ns / 1e6);
}

/* The destination: receive one VM, run it to the end. */
static int destination(int lfd)
{
	struct vmm_receive_opts o;
	struct vmm_vm *vm;
	struct vmm_exit ex = { 0 };
	int r;

	vmm_receive_opts_init(&o);
	static struct side dst = { .name = "destination" };

	o.serial_out = on_serial;
	o.serial_opaque = &dst;
	r = vmm_migrate_receive(lfd, &o, &vm); /* returns with the VM running */
	if (!r)
		r = vmm_vm_wait(vm, -1, &ex);
	vmm_vm_destroy(vm);
	return r || ex.status ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	struct vmm_vm_config cfg;
	struct vmm_migrate_opts mo;
	struct vmm_migrate_stats st;
	struct vmm_vm *vm;
	int lfd, status, r;
	pid_t pid;

	if (argc < 2) {
		fprintf(stderr, "usage: %s KERNEL [CMDLINE]\n", argv[0]);
		return 2;
	}
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 8) ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen))
		return perror("listen"), 1;
	pid = fork(); /* before any VM exists: the child builds its own */
	if (pid == 0)
		_exit(destination(lfd));
	close(lfd);

	vmm_vm_config_init(&cfg);
	cfg.mem_size = 256 << 20;
	cfg.cmdline = argc > 2 ? argv[2] : "mem=64 gens=20 rate=200";
	static struct side src = { .name = "source" };

	cfg.serial_out = on_serial;
	cfg.serial_opaque = &src;
	r = vmm_vm_create(&cfg, &vm);
	if (!r)
		r = vmm_vm_load_kernel(vm, argv[1], NULL);
	if (!r)
		r = vmm_vm_start(vm);
	if (!r) {
		usleep(300000);
		vmm_migrate_opts_init(&mo);
		mo.progress = on_round;
		r = vmm_migrate_send_to(vm, "127.0.0.1", ntohs(a.sin_port), &mo, &st);
	}
	if (r) {
		fprintf(stderr, "migrate: %s (%s)\n", vmm_strerror(r), vmm_last_error());
		vmm_vm_destroy(vm);
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
		return 1;
	}
	fprintf(stderr, "moved in %.1f ms: %u rounds, %.1f MB on the wire, downtime %.2f ms\n",
		st.total_ns / 1e6, st.rounds, st.wire_bytes / 1e6, st.downtime_ns / 1e6);
	vmm_vm_destroy(vm); /* the source copy is paused for good */
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
