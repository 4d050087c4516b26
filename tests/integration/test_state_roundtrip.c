/* State round trip: run a guest, pause it at an arbitrary moment, capture all state and RAM,
 * destroy the VM, build a fresh one, load state and RAM, resume. What the guest prints
 * before plus after must equal the uninterrupted run, and its own self-check must pass. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

struct rt_case {
	const char *file, *cmdline, *last;
	uint64_t mem_mib;
	uint32_t vcpus;
	size_t pause_after_lines; /* pause once this many lines were printed */
};

static const struct rt_case cases[] = {
	{ "counter.elf", "count=40 interval=5000", "done", 32, 1, 13 },
	{ "memcheck.elf", "mem=48 gens=8", "memcheck done ok", 96, 1, 3 },
	{ "fpu.elf", "loops=100", "fpu ok", 32, 1, 3 },
	{ "timer.elf", "secs=6", "timer ok", 32, 1, 2 },
	{ "smp.elf", "cpus=2 iters=300000000", "smp ok", 32, 2, 0 },
};

static void roundtrip(void **state)
{
	const struct rt_case *c = *state;
	uint64_t ram = c->mem_mib << 20;
	struct tu_output out1, out2;
	struct vmm_vm *vm;
	struct vmm_exit ex;
	char *ref, *a, *b, *both;
	void *blob, *mem = malloc(ram);
	size_t len;

	assert_non_null(mem);
	ref = tu_run_guest(c->file, c->cmdline, c->mem_mib, c->vcpus, &ex);
	assert_int_equal(ex.status, 0);

	tu_output_init(&out1);
	vm = tu_vm_new(c->file, c->cmdline, c->mem_mib, c->vcpus, &out1);
	assert_int_equal(vmm_vm_start(vm), 0);
	tu_wait_lines(&out1, vm, c->pause_after_lines, 60);
	tu_sleep_us((unsigned)(rand() % 20000)); /* an arbitrary moment, not a line boundary */
	assert_int_equal(vmm_vm_pause(vm), 0);
	if (vmm_vm_state_save(vm, &blob, &len))
		fail_msg("state_save: %s", vmm_last_error());
	assert_int_equal(vmm_vm_mem_read(vm, 0, mem, ram), 0);
	vmm_vm_destroy(vm);
	a = tu_output_copy(&out1);
	if (strstr(a, c->last))
		fail_msg("%s finished before the pause; make it run longer", c->file);

	tu_output_init(&out2);
	vm = tu_vm_new(NULL, c->cmdline, c->mem_mib, c->vcpus, &out2);
	assert_int_equal(vmm_vm_mem_write(vm, 0, mem, ram), 0);
	if (vmm_vm_state_load(vm, blob, len))
		fail_msg("state_load: %s", vmm_last_error());
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 300000, &ex), 0);
	vmm_vm_destroy(vm);
	b = tu_output_copy(&out2);
	both = malloc(strlen(a) + strlen(b) + 1);
	strcpy(both, a);
	strcat(both, b);
	if (ex.reason != VMM_EXIT_GUEST || ex.status != 0)
		fail_msg("%s after restore: exit %d status %d (%s)\nbefore:\n%s\nafter:\n%s",
			 c->file, ex.reason, ex.status, ex.detail, a, b);
	assert_string_equal(both, ref);
	free(both), free(a), free(b), free(ref), free(blob), free(mem);
	tu_output_free(&out1);
	tu_output_free(&out2);
}

/* A state blob only loads into a VM of the same shape, and garbage is refused. */
static void shape_and_garbage(void **state)
{
	struct tu_output out;
	struct vmm_vm *vm;
	void *blob;
	size_t len;

	(void)state;
	tu_output_init(&out);
	vm = tu_vm_new("counter.elf", "count=100000 interval=1000", 32, 1, &out);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_pause(vm), 0);
	assert_int_equal(vmm_vm_state_save(vm, &blob, &len), 0);
	vmm_vm_destroy(vm);

	vm = tu_vm_new(NULL, "", 64, 1, &out); /* other memory size */
	assert_int_equal(vmm_vm_state_load(vm, blob, len), VMM_ESHAPE);
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_CREATED);
	vmm_vm_destroy(vm);
	vm = tu_vm_new(NULL, "", 32, 2, &out); /* other vCPU count */
	assert_int_equal(vmm_vm_state_load(vm, blob, len), VMM_ESHAPE);
	vmm_vm_destroy(vm);
	vm = tu_vm_new(NULL, "", 32, 1, &out);
	assert_int_equal(vmm_vm_state_load(vm, "\x0a\xff\xff\xff\x0f", 5), VMM_ESTATEDATA);
	assert_int_equal(vmm_vm_state_load(vm, blob, len / 2), VMM_ESTATEDATA);
	assert_int_equal(vmm_vm_start(vm), VMM_ESTATE); /* nothing was loaded */
	vmm_vm_destroy(vm);
	free(blob);
	tu_output_free(&out);
}

int main(void)
{
	struct CMUnitTest tests[sizeof(cases) / sizeof(cases[0]) + 1];
	size_t n = 0;

	tu_require_kvm();
	srand((unsigned)time(NULL));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++, n++) {
		tests[n] = (struct CMUnitTest)cmocka_unit_test_prestate(roundtrip, (void *)&cases[i]);
		tests[n].name = cases[i].file;
	}
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(shape_and_garbage);
	return _cmocka_run_group_tests("state_roundtrip", tests, n, NULL, NULL);
}
