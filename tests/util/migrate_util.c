/* Migration test helpers. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "libvmm/vcpu.h"
#include "libvmm/vm_internal.h"
#include "migrate_util.h"

extern char **environ;

int mu_listen(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

void mu_rx_init(struct mu_rx *x)
{
	memset(x, 0, sizeof(*x));
	vmm_receive_opts_init(&x->o);
	x->lfd = -1;
}

static void *mu_rx_main(void *arg)
{
	struct mu_rx *x = arg;

	x->r = vmm_migrate_receive(x->lfd, &x->o, &x->vm);
	snprintf(x->detail, sizeof(x->detail), "%s", x->r ? vmm_last_error() : "");
	return NULL;
}

void mu_rx_start(struct mu_rx *x)
{
	x->lfd = mu_listen(&x->port);
	assert_int_equal(pthread_create(&x->thread, NULL, mu_rx_main, x), 0);
}

int mu_rx_join(struct mu_rx *x)
{
	pthread_join(x->thread, NULL);
	close(x->lfd);
	x->lfd = -1;
	return x->r;
}

void mu_dest_start(struct mu_dest *d, uint64_t max_mem_mib)
{
	char fdstr[16], maxstr[32];
	char *argv[] = { "/proc/self/exe", "receive", fdstr, maxstr, NULL };
	posix_spawn_file_actions_t fa;

	d->lfd = mu_listen(&d->port);
	snprintf(fdstr, sizeof(fdstr), "%d", d->lfd);
	snprintf(maxstr, sizeof(maxstr), "%llu", (unsigned long long)max_mem_mib);
	snprintf(d->outpath, sizeof(d->outpath), "/tmp/vmm-migrate-dest.%d.%d.out", getpid(), d->port);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, d->outpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(posix_spawn(&d->pid, "/proc/self/exe", &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
}

char *mu_dest_finish(struct mu_dest *d, int *status)
{
	int ws;
	char *buf;

	close(d->lfd);
	assert_int_equal(waitpid(d->pid, &ws, 0), d->pid);
	*status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
	buf = tu_read_file(d->outpath, NULL);
	unlink(d->outpath);
	return buf;
}

static void log_line(void *opaque, int level, const char *msg)
{
	char line[600];
	snprintf(line, sizeof(line), "  [%d] %s\n", level, msg);
	tu_output_sink(opaque, (const uint8_t *)line, strlen(line));
}

void mu_dump_vcpus(struct vmm_vm *vm, FILE *f)
{
	if (vmm_vm_pause(vm))
		fprintf(f, "  (could not pause: %s)\n", vmm_last_error());
	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		int fd = vm->vcpus[i].fd;
		struct kvm_regs r = { 0 };
		struct kvm_sregs sr = { 0 };
		struct kvm_mp_state mp = { 0 };
		struct kvm_vcpu_events ev = { 0 };
		struct {
			struct kvm_msrs h;
			struct kvm_msr_entry e;
		} tsc = { .h.nmsrs = 1, .e.index = 0x10 };

		if (ioctl(fd, KVM_GET_REGS, &r) || ioctl(fd, KVM_GET_SREGS, &sr) ||
		    ioctl(fd, KVM_GET_MP_STATE, &mp) || ioctl(fd, KVM_GET_VCPU_EVENTS, &ev)) {
			fprintf(f, "  vcpu %u: ioctl: %m\n", i);
			continue;
		}
		ioctl(fd, KVM_GET_MSRS, &tsc);
		fprintf(f, "  vcpu %u: mp_state %u rip %#llx rsp %#llx rflags %#llx cs %#x cpl %u "
			"rax %#llx rcx %#llx rdx %#llx rsi %#llx rdi %#llx cr0 %#llx cr3 %#llx "
			"efer %#llx tsc %#llx exc %u/%u irq %u/%u nmi %u/%u shadow %u\n", i,
			mp.mp_state, r.rip, r.rsp, r.rflags, sr.cs.selector, sr.cs.dpl, r.rax, r.rcx,
			r.rdx, r.rsi, r.rdi, sr.cr0, sr.cr3, sr.efer, tsc.e.data, ev.exception.injected,
			ev.exception.nr, ev.interrupt.injected, ev.interrupt.nr, ev.nmi.injected,
			ev.nmi.pending, ev.interrupt.shadow);
	}
}

int mu_child_receive(int argc, char **argv)
{
	struct vmm_receive_opts o;
	struct tu_output out, log;
	struct vmm_vm *vm;
	struct vmm_exit ex;
	int r;

	tu_output_init(&out);
	tu_output_init(&log);
	vmm_receive_opts_init(&o);
	o.serial_out = tu_output_sink;
	o.serial_opaque = &out;
	/* Kept, and shown only when the guest does not finish: a CI log then says why. */
	o.log = log_line;
	o.log_opaque = &log;
	if (!strcmp(argv[1], "receive-at")) {
		o.timeout_ms = argc > 4 ? atoi(argv[4]) : 0;
		r = vmm_migrate_receive_at(argv[2], (uint16_t)atoi(argv[3]), &o, &vm);
	} else {
		o.max_mem_size = argc > 3 ? strtoull(argv[3], NULL, 10) << 20 : 0;
		r = vmm_migrate_receive(atoi(argv[2]), &o, &vm);
	}
	if (r) {
		fprintf(stderr, "receive: %s: %s (%s)\n", vmm_err_name(r), vmm_strerror(r),
			vmm_last_error());
		tu_output_free(&out);
		tu_output_free(&log);
		if (r == VMM_EINDOUBT) { /* kept paused, never started: this child lets go */
			vmm_migrate_resolve(vm, VMM_RESOLVE_DISCARD);
			vmm_vm_destroy(vm);
			return 103;
		}
		return 100;
	}
	/* receive-at's optional 5th argument: how long the guest may run here, below what the
	 * parent waits, so a stuck guest is described before the parent kills this child. */
	r = vmm_vm_wait(vm, argc > 5 ? atoi(argv[5]) : 300000, &ex);
	if (r || ex.reason != VMM_EXIT_GUEST) {
		char *l = tu_output_copy(&log);

		if (r == VMM_ETIMEDOUT) {
			fprintf(stderr, "receive child: the guest did not finish in time; its vCPUs:\n");
			mu_dump_vcpus(vm, stderr);
		}

		fprintf(stderr, "receive child: wait: %s (%s), guest %s, exit %d/%d (%s), %zu output "
			"bytes\n", vmm_err_name(r), r ? vmm_last_error() : "",
			vmm_vm_run_state_name(vmm_vm_run_state(vm)), r ? -1 : (int)ex.reason,
			r ? -1 : ex.status, r ? "" : ex.detail, out.len);
		fprintf(stderr, "receive child: the VM's log:\n%s\n", l);
		free(l);
	}
	vmm_vm_destroy(vm);
	fwrite(out.buf ? out.buf : "", 1, out.len, stdout);
	tu_output_free(&out);
	tu_output_free(&log);
	if (r)
		return 101;
	return ex.reason == VMM_EXIT_GUEST ? ex.status : 102;
}

int mu_send(struct vmm_vm *vm, struct mu_dest *d, const struct vmm_migrate_opts *o,
	    struct vmm_migrate_stats *st)
{
	return vmm_migrate_send_to(vm, "127.0.0.1", d->port, o, st);
}
