/* Shared test helpers. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libvmm/clock.h"
#include "testutil.h"

void tu_require_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		printf("SKIP: /dev/kvm cannot be opened read-write (%m): this test runs guests\n");
		exit(77);
	}
	close(fd);
	/* Rerunning one failing case of a long kvm test, in the emulated host above all. */
	if (getenv("VMM_TEST_FILTER"))
		cmocka_set_test_filter(getenv("VMM_TEST_FILTER"));
}

const char *tu_guest(const char *name)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s/%s", VMM_GUEST_DIR, name);
	return path;
}

void tu_output_init(struct tu_output *o)
{
	memset(o, 0, sizeof(*o));
	pthread_mutex_init(&o->lock, NULL);
}

void tu_output_free(struct tu_output *o)
{
	free(o->buf);
	pthread_mutex_destroy(&o->lock);
}

void tu_output_sink(void *opaque, const uint8_t *buf, size_t len)
{
	struct tu_output *o = opaque;

	pthread_mutex_lock(&o->lock);
	if (o->len + len + 1 > o->cap) {
		size_t cap = (o->len + len + 1) * 2;
		char *nb = realloc(o->buf, cap);

		if (!nb)
			abort();
		o->buf = nb;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, buf, len);
	o->len += len;
	o->buf[o->len] = '\0';
	pthread_mutex_unlock(&o->lock);
}

char *tu_output_copy(struct tu_output *o)
{
	char *s;

	pthread_mutex_lock(&o->lock);
	s = strndup(o->buf ? o->buf : "", o->len);
	pthread_mutex_unlock(&o->lock);
	return s;
}

size_t tu_output_lines(struct tu_output *o)
{
	size_t n = 0;

	pthread_mutex_lock(&o->lock);
	for (size_t i = 0; i < o->len; i++)
		n += o->buf[i] == '\n';
	pthread_mutex_unlock(&o->lock);
	return n;
}

unsigned tu_slowdown(void)
{
	const char *e = getenv("VMM_TEST_EMULATED");

	return e && *e == '1' ? 10 : 1;
}

void tu_wait_lines(struct tu_output *out, struct vmm_vm *vm, size_t n, unsigned timeout_s)
{
	uint64_t end = vmm__now_ns() + (uint64_t)timeout_s * tu_slowdown() * 1000000000ull;
	const char *why = NULL;

	while (tu_output_lines(out) < n && !why) {
		if (vm && vmm_vm_run_state(vm) == VMM_VM_STOPPED)
			why = "the guest stopped";
		else if (vmm__now_ns() > end)
			why = "time ran out";
		else
			tu_sleep_us(1000);
	}
	if (why && tu_output_lines(out) < n) {
		char *s = tu_output_copy(out);

		fail_msg("waited for %zu lines of guest output, got %zu (%s after %u s):\n%s", n,
			 tu_output_lines(out), why, timeout_s * tu_slowdown(), s);
	}
}

struct vmm_vm *tu_vm_new_ring(const char *name, const char *cmdline, uint64_t mem_mib,
			      uint32_t vcpus, uint32_t ring, struct tu_output *out)
{
	struct vmm_vm_config cfg;
	struct vmm_vm *vm = NULL;
	int r;

	vmm_vm_config_init(&cfg);
	cfg.mem_size = mem_mib << 20;
	cfg.vcpus = vcpus;
	cfg.cmdline = cmdline;
	cfg.serial_out = tu_output_sink;
	cfg.serial_opaque = out;
	cfg.dirty_ring_entries = ring;
	r = vmm_vm_create(&cfg, &vm);
	if (r)
		fail_msg("vmm_vm_create: %s (%s)", vmm_strerror(r), vmm_last_error());
	if (name) {
		r = vmm_vm_load_kernel(vm, tu_guest(name), NULL);
		if (r)
			fail_msg("load %s: %s (%s)", name, vmm_strerror(r), vmm_last_error());
	}
	return vm;
}

struct vmm_vm *tu_vm_new(const char *name, const char *cmdline, uint64_t mem_mib,
			 uint32_t vcpus, struct tu_output *out)
{
	return tu_vm_new_ring(name, cmdline, mem_mib, vcpus, 0, out);
}

char *tu_run_guest(const char *name, const char *cmdline, uint64_t mem_mib, uint32_t vcpus,
		   struct vmm_exit *ex)
{
	struct tu_output out;
	struct vmm_vm *vm;
	char *s;

	tu_output_init(&out);
	vm = tu_vm_new(name, cmdline, mem_mib, vcpus, &out);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 300000, ex), 0);
	vmm_vm_destroy(vm);
	s = tu_output_copy(&out);
	tu_output_free(&out);
	return s;
}

char *tu_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	long n;
	char *buf;

	if (!f)
		fail_msg("cannot open %s: %m", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

const char *tu_last_line(const char *s)
{
	static char line[512];
	const char *end = s + strlen(s), *start;

	while (end > s && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	start = end;
	while (start > s && start[-1] != '\n')
		start--;
	snprintf(line, sizeof(line), "%.*s", (int)(end - start), start);
	if (strlen(line) && line[strlen(line) - 1] == '\r')
		line[strlen(line) - 1] = '\0';
	return line;
}

void tu_sleep_us(unsigned us)
{
	struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

uint8_t tu_byte_sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return s;
}
