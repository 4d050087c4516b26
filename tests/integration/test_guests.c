/* Every test guest runs to its success line through the API, with deterministic output,
 * and each boot format (multiboot, ELF64, bzImage with initrd) reaches the guest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

struct guest_case {
	const char *file, *cmdline, *last;
	uint64_t mem_mib;
	uint32_t vcpus;
};

static const struct guest_case cases[] = {
	{ "hello.elf", "", "hello from guest", 32, 1 },
	{ "hello64.elf", "", "hello from guest", 32, 1 },
	{ "counter.elf", "count=7", NULL, 32, 1 },
	{ "memcheck.elf", "mem=16 gens=3", "memcheck done ok", 64, 1 },
	{ "fpu.elf", "loops=20", "fpu ok", 32, 1 },
	{ "timer.elf", "secs=3", "timer ok", 32, 1 },
	{ "smp.elf", "cpus=2 iters=200000", "smp ok", 32, 2 },
	{ "smp.elf", "cpus=4 iters=100000", "smp ok", 32, 4 },
};

static void run_case(void **state)
{
	const struct guest_case *c = *state;
	struct vmm_exit ex;
	char *out = tu_run_guest(c->file, c->cmdline, c->mem_mib, c->vcpus, &ex);
	char *again;

	if (ex.reason != VMM_EXIT_GUEST || ex.status != 0)
		fail_msg("%s: exit reason %d status %d (%s); output:\n%s", c->file, ex.reason,
			 ex.status, ex.detail, out);
	if (c->last)
		assert_string_equal(tu_last_line(out), c->last);
	else
		assert_non_null(strstr(out, "count 7\ndone "));
	/* Deterministic: a second run prints exactly the same. */
	again = tu_run_guest(c->file, c->cmdline, c->mem_mib, c->vcpus, &ex);
	assert_string_equal(out, again);
	free(again);
	free(out);
}

/* bzImage: the Linux boot protocol delivers the command line and the initrd. */
static void bzimage_with_initrd(void **state)
{
	static const char initrd[] = "0123456789abcdef-initrd-payload";
	struct vmm_vm_config cfg;
	struct tu_output out;
	struct vmm_vm *vm;
	struct vmm_exit ex;
	char *kernel, *s, expect[64];
	size_t klen;
	uint32_t sum = 0;

	(void)state;
	kernel = tu_read_file(tu_guest("hello.bzimage"), &klen);
	tu_output_init(&out);
	vmm_vm_config_init(&cfg);
	cfg.mem_size = 64 << 20;
	cfg.cmdline = "console=ttyS0 hello=world";
	cfg.serial_out = tu_output_sink;
	cfg.serial_opaque = &out;
	assert_int_equal(vmm_vm_create(&cfg, &vm), 0);
	assert_int_equal(vmm_vm_load_kernel_image(vm, kernel, klen, initrd, sizeof(initrd) - 1), 0);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 60000, &ex), 0);
	vmm_vm_destroy(vm);
	s = tu_output_copy(&out);
	assert_int_equal(ex.reason, VMM_EXIT_GUEST);
	assert_int_equal(ex.status, 0);
	for (size_t i = 0; i < sizeof(initrd) - 1; i++)
		sum += (uint8_t)initrd[i];
	snprintf(expect, sizeof(expect), "initrd %zu %08x", sizeof(initrd) - 1, sum);
	if (!strstr(s, expect) || !strstr(s, "cmdline console=ttyS0 hello=world"))
		fail_msg("bzImage output lacks '%s' or the cmdline:\n%s", expect, s);
	assert_string_equal(tu_last_line(s), "hello from guest");
	free(s);
	free(kernel);
	tu_output_free(&out);
}

int main(void)
{
	struct CMUnitTest tests[sizeof(cases) / sizeof(cases[0]) + 1];
	size_t n = 0;

	tu_require_kvm();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++, n++) {
		tests[n] = (struct CMUnitTest)cmocka_unit_test_prestate(run_case, (void *)&cases[i]);
		tests[n].name = cases[i].file;
	}
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(bzimage_with_initrd);
	return _cmocka_run_group_tests("guests", tests, n, NULL, NULL);
}
