/* Live migration between two processes: the destination is this binary re-executed
 * ("receive FD"), receiving on a listening socket the parent made. Each guest migrated
 * mid-run prints, source then destination, exactly what the uninterrupted run prints, and
 * its self-check passes on the destination. Both dirty-tracking backends. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "migrate_util.h"

struct guest {
	const char *file, *cmdline, *last;
	uint64_t mem_mib;
	uint32_t vcpus;
	size_t at_lines;
	unsigned delay_ms;
	/* In the emulated KVM host, if not NULL: the same work at a tenth of the dirty rate
	 * (the link there is ~10x slower too, so pre-copy still has to chase the guest) on a
	 * smaller working set, so the guest still outlasts the migration. */
	const char *emulated_cmdline;
};

static struct guest guests[] = {
	{ "counter.elf", "count=120 interval=5000", "done", 32, 1, 11, 0, NULL },
	{ "memcheck.elf", "mem=160 gens=30 rate=400", "memcheck done ok", 256, 1, 3, 0,
	  "mem=40 gens=30 rate=40" },
	{ "fpu.elf", "loops=1000", "fpu ok", 32, 1, 3, 0, NULL },
	{ "timer.elf", "secs=10", "timer ok", 32, 1, 2, 0, NULL },
	{ "smp.elf", "cpus=2 iters=300000000", "smp ok", 32, 2, 0, 400, NULL },
};

struct variant {
	const char *name;
	uint32_t ring; /* dirty ring entries, 0: bitmap */
	unsigned conns;
	enum vmm_migrate_compress compress;
};

static const struct variant variants[] = {
	{ "bitmap", 0, 1, VMM_MIGRATE_COMPRESS_OFF },
	{ "ring", 4096, 1, VMM_MIGRATE_COMPRESS_OFF },
	{ "bitmap-2conn-zstd", 0, 2, VMM_MIGRATE_COMPRESS_AUTO },
};

#define NVARIANTS (sizeof(variants) / sizeof(variants[0]))
#define NGUESTS (sizeof(guests) / sizeof(guests[0]))

/* VMM_TEST_QUICK (the TSan pass): fewer cases, and no zstd, whose instrumented copying
 * would outlast the guests; the connections and threads stay. */
static int quick;

static void progress(void *opaque, const struct vmm_migrate_round *rd,
		     const struct vmm_migrate_stats *t)
{
	if (rd->final)
		print_message("    final: %llu pages, downtime %.2f ms (expected %.2f; pause %.2f, "
			      "sync %.2f, capture %.2f, apply %.2f), %u rounds\n",
			      (unsigned long long)rd->pages, t->downtime_ns / 1e6,
			      t->expected_downtime_ns / 1e6, t->pause_ns / 1e6,
			      t->final_sync_ns / 1e6, t->capture_ns / 1e6, t->apply_ns / 1e6,
			      t->rounds);
}

/* The uninterrupted run of guest g, computed once and shared by its variants. */
static const char *reference(size_t g)
{
	static char *refs[NGUESTS];
	struct vmm_exit ex;

	if (!refs[g]) {
		refs[g] = tu_run_guest(guests[g].file, guests[g].cmdline, guests[g].mem_mib,
				       guests[g].vcpus, &ex);
		assert_int_equal(ex.status, 0);
	}
	return refs[g];
}

static void migrate_case(void **state)
{
	size_t i = (size_t)(uintptr_t)*state;
	const struct guest *g = &guests[i / NVARIANTS];
	const struct variant *v = &variants[i % NVARIANTS];
	struct vmm_migrate_opts o;
	struct vmm_migrate_stats st;
	struct mu_dest d;
	struct tu_output out;
	struct vmm_vm *vm;
	const char *ref;
	char *before, *after;
	int r, status;

	ref = reference(i / NVARIANTS);
	mu_dest_start(&d, 0);
	tu_output_init(&out);
	vm = tu_vm_new_ring(g->file, g->cmdline, g->mem_mib, g->vcpus, v->ring, &out);
	assert_int_equal(vmm_vm_start(vm), 0);
	tu_wait_lines(&out, vm, g->at_lines, 60);
	tu_sleep_us(g->delay_ms * 1000);
	vmm_migrate_opts_init(&o);
	o.connections = v->conns;
	o.compress = quick ? VMM_MIGRATE_COMPRESS_OFF : v->compress;
	o.progress = progress;
	r = mu_send(vm, &d, &o, &st);
	if (r)
		fail_msg("migrate %s/%s: %s (%s)", g->file, v->name, vmm_strerror(r), vmm_last_error());
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_PAUSED);
	assert_int_equal(vmm_vm_migrated(vm), 1);
	assert_int_equal(vmm_vm_resume(vm), VMM_ESTATE); /* gone for good */
	assert_true(st.rounds >= 2);
	before = tu_output_copy(&out);
	vmm_vm_destroy(vm);
	tu_output_free(&out);
	after = mu_dest_finish(&d, &status);
	if (status != 0 || strlen(before) + strlen(after) != strlen(ref) ||
	    strncmp(ref, before, strlen(before)) || strcmp(ref + strlen(before), after))
		fail_msg("%s/%s: destination exit %d\n--- source:\n%s\n--- destination:\n%s\n--- expected:\n%s",
			 g->file, v->name, status, before, after, ref);
	free(before), free(after);
}

int main(int argc, char **argv)
{
	static char names[NGUESTS * NVARIANTS][64];
	struct CMUnitTest tests[NGUESTS * NVARIANTS];
	size_t n = 0;

	if (argc >= 3 && !strcmp(argv[1], "receive"))
		return mu_child_receive(argc, argv);
	tu_require_kvm();
	/* VMM_TEST_QUICK (the TSan pass): only the guests whose migration exercises the most
	 * threads, multi-connection memcheck and 2-vCPU smp. */
	quick = getenv("VMM_TEST_QUICK") && *getenv("VMM_TEST_QUICK") == '1';
	for (size_t g = 0; g < NGUESTS; g++)
		if (tu_slowdown() > 1 && guests[g].emulated_cmdline)
			guests[g].cmdline = guests[g].emulated_cmdline;
	for (size_t g = 0; g < NGUESTS; g++)
		for (size_t v = 0; v < NVARIANTS; v++) {
			if (quick && strcmp(guests[g].file, "memcheck.elf") && strcmp(guests[g].file, "smp.elf"))
				continue;
			snprintf(names[n], sizeof(names[n]), "%s/%s", guests[g].file, variants[v].name);
			tests[n] = (struct CMUnitTest)cmocka_unit_test_prestate(
				migrate_case, (void *)(uintptr_t)(g * NVARIANTS + v));
			tests[n].name = names[n];
			n++;
		}
	return _cmocka_run_group_tests("migrate", tests, n, NULL, NULL);
}
