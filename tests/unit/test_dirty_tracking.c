/* Dirty tracking (libvmm/dirty.c, dirty_ring.c) on the fake kernel: each backend's harvest
 * into the memfd page index space, host marks, clears, and the tracker's life. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "fake_vm.h"
#include "libvmm/bitmap.h"
#include "libvmm/dirty.h"
#include "libvmm/vm_internal.h"

#define PAGE 4096ull

struct fixture {
	struct vmm_vm *vm;
	uint64_t npages, words;
	uint64_t *bm;
};

static struct fixture fx(uint64_t mem_mib, uint32_t ring)
{
	struct fixture f = { .vm = fake_vm_new(mem_mib, 2, ring, NULL, NULL) };

	assert_non_null(f.vm);
	f.npages = vmm_vm_mem_size(f.vm) / PAGE;
	f.words = vmm__bitmap_words(f.npages);
	f.bm = calloc(f.words, 8);
	return f;
}

static void fx_free(struct fixture *f)
{
	vmm_vm_destroy(f->vm);
	free(f->bm);
}

/* Syncs into a cleared bitmap and returns how many pages it reports. */
static uint64_t sync(struct fixture *f)
{
	uint64_t n = 0;

	memset(f->bm, 0, f->words * 8);
	assert_int_equal(vmm__dirty_sync(&f->vm->dirty, f->bm), 0);
	for (uint64_t i = 0; i < f->npages; i++)
		n += vmm__bitmap_test(f->bm, i);
	return n;
}

static void manual_protect(void **state)
{
	struct fixture f = fx(16, 0);

	(void)state;
	assert_int_equal(vmm__dirty_sync(&f.vm->dirty, f.bm), VMM_ESTATE);
	assert_int_equal(vmm__dirty_start(&f.vm->dirty), 0);
	assert_int_equal(vmm__dirty_start(&f.vm->dirty), VMM_EBUSY);
	assert_int_equal(vmm__dirty_backend(&f.vm->dirty), VMM__DIRTY_MANUAL);
	assert_true(fake_kvm_slot_logging(0));
	assert_int_equal(sync(&f), 0); /* nothing written since start */
	fake_kvm_dirty_set(0, 5);
	fake_kvm_dirty_set(0, 200);
	assert_int_equal(sync(&f), 2);
	assert_true(vmm__bitmap_test(f.bm, 5) && vmm__bitmap_test(f.bm, 200));
	/* Not cleared: KVM still holds them, and says so again. */
	assert_int_equal(sync(&f), 2);
	assert_int_equal(vmm__dirty_clear(&f.vm->dirty, f.bm, 1, 64), VMM_EINVAL);
	assert_int_equal(vmm__dirty_clear(&f.vm->dirty, f.bm, 0, 65), VMM_EINVAL);
	/* Clearing [192, 256) re-protects page 200 only. */
	assert_int_equal(vmm__dirty_clear(&f.vm->dirty, f.bm, 192, 64), 0);
	assert_int_equal(fake_kvm_cleared(0), 1);
	assert_int_equal(sync(&f), 1);
	assert_true(vmm__bitmap_test(f.bm, 5));
	assert_int_equal(vmm__dirty_clear(&f.vm->dirty, f.bm, 0, f.words * 64), 0);
	assert_int_equal(sync(&f), 0);
	/* Host writes are reported once, clipped to RAM. */
	vmm__dirty_mark(&f.vm->dirty, 7 * PAGE + 5, PAGE); /* pages 7 and 8 */
	vmm__dirty_mark(&f.vm->dirty, (f.npages - 1) * PAGE, 3 * PAGE);
	vmm__dirty_mark(&f.vm->dirty, f.npages * PAGE, PAGE);
	assert_int_equal(sync(&f), 3);
	assert_true(vmm__bitmap_test(f.bm, 7) && vmm__bitmap_test(f.bm, 8));
	assert_true(vmm__bitmap_test(f.bm, f.npages - 1));
	assert_int_equal(sync(&f), 0);
	vmm__dirty_stop(&f.vm->dirty);
	assert_false(fake_kvm_slot_logging(0));
	assert_int_equal(vmm__dirty_backend(&f.vm->dirty), 0);
	assert_int_equal(vmm__dirty_sync(&f.vm->dirty, f.bm), VMM_ESTATE);
	vmm__dirty_stop(&f.vm->dirty); /* without a tracker: nothing */
	fx_free(&f);
}

/* Without manual protect, KVM_GET_DIRTY_LOG clears as it reports; clear is a no-op. */
static void plain_bitmap(void **state)
{
	struct fixture f;

	(void)state;
	fake_kvm_set_caps(0, 0);
	f = fx(16, 0);
	assert_int_equal(vmm__dirty_start(&f.vm->dirty), 0);
	assert_int_equal(vmm__dirty_backend(&f.vm->dirty), VMM__DIRTY_PLAIN);
	fake_kvm_dirty_set(0, 63);
	fake_kvm_dirty_set(0, 64);
	assert_int_equal(sync(&f), 2);
	assert_int_equal(vmm__dirty_clear(&f.vm->dirty, f.bm, 0, 128), 0);
	assert_int_equal(fake_kvm_cleared(0), 0);
	assert_int_equal(sync(&f), 0);
	vmm__dirty_stop(&f.vm->dirty);
	fx_free(&f);
}

/* Pages of slot 1 (RAM above the 32-bit hole) land after region 0's in the page index. */
static void two_slots(void **state)
{
	struct fixture f = fx(4096, 0);
	const struct vmm__memory *m = &f.vm->mem;
	uint64_t first1;

	(void)state;
	assert_int_equal(m->nregions, 2);
	first1 = m->regions[1].offset / PAGE;
	assert_int_equal(vmm__dirty_start(&f.vm->dirty), 0);
	fake_kvm_dirty_set(m->regions[0].slot, 1);
	fake_kvm_dirty_set(m->regions[1].slot, 3);
	assert_int_equal(sync(&f), 2);
	assert_true(vmm__bitmap_test(f.bm, 1));
	assert_true(vmm__bitmap_test(f.bm, first1 + 3));
	/* A clear across the boundary reaches both slots. */
	assert_int_equal(vmm__dirty_clear(&f.vm->dirty, f.bm, 0, f.words * 64), 0);
	assert_int_equal(fake_kvm_cleared(m->regions[0].slot) + fake_kvm_cleared(m->regions[1].slot), 2);
	assert_int_equal(sync(&f), 0);
	vmm__dirty_stop(&f.vm->dirty);
	fx_free(&f);
}

static void ring(void **state)
{
	struct fixture f = fx(16, 256);
	struct vmm__dirty_stats st;

	(void)state;
	fake_kvm_ring_push(0, 0, 11); /* before start: drained, never reported */
	assert_int_equal(vmm__dirty_start(&f.vm->dirty), 0);
	assert_int_equal(vmm__dirty_backend(&f.vm->dirty), VMM__DIRTY_RING);
	assert_int_equal(sync(&f), 0);
	fake_kvm_ring_push(0, 0, 9);
	fake_kvm_ring_push(1, 0, 9);
	fake_kvm_ring_push(1, 0, 300);
	fake_kvm_ring_push(1, 1 << 16, 4); /* SMM address space: not ours */
	fake_kvm_ring_push(1, 0, f.npages + 10); /* outside the slot: ignored */
	assert_int_equal(sync(&f), 2);
	assert_true(vmm__bitmap_test(f.bm, 9) && vmm__bitmap_test(f.bm, 300));
	assert_int_equal(sync(&f), 0);
	/* A ring-full exit harvests on the vCPU thread; the next sync reports it. */
	fake_kvm_ring_push(0, 0, 17);
	assert_int_equal(vmm__dirty_ring_full(&f.vm->dirty, 0), 0);
	vmm__dirty_get_stats(&f.vm->dirty, &st);
	assert_int_equal(st.ring_full, 1);
	assert_int_equal(st.ring_harvested, 6);
	assert_int_equal(sync(&f), 1);
	assert_true(vmm__bitmap_test(f.bm, 17));
	assert_int_equal(vmm__dirty_clear(&f.vm->dirty, f.bm, 0, 64), 0); /* no-op */
	vmm__dirty_stop(&f.vm->dirty);
	fx_free(&f);
}

/* Pages in the since-base set (vmm__dirty_since_base) right now. */
static uint64_t since_base(struct fixture *f, uint64_t *bm)
{
	uint64_t n = 0;

	memset(bm, 0, f->words * 8);
	assert_int_equal(vmm__dirty_since_base(&f->vm->dirty, bm), 0);
	for (uint64_t i = 0; i < f->npages; i++)
		n += vmm__bitmap_test(bm, i);
	return n;
}

/* Every sync feeds the since-base set, which no consumer drains: only a rebase (a
 * committed tracked snapshot) empties it. A clear adds what it re-protects, since KVM's
 * bits for those pages are dropped unreported. */
static void since_base_set(void **state)
{
	struct fixture f = fx(16, 0);
	uint64_t *bm = calloc(f.words, 8);

	(void)state;
	assert_int_equal(vmm__dirty_since_base(&f.vm->dirty, bm), VMM_ESTATE);
	assert_int_equal(vmm__dirty_start(&f.vm->dirty), 0);
	assert_int_equal(since_base(&f, bm), 0);
	fake_kvm_dirty_set(0, 5);
	vmm__dirty_mark(&f.vm->dirty, 9 * PAGE, 1);
	assert_int_equal(sync(&f), 2);
	assert_int_equal(sync(&f), 1);  /* 5 again: KVM holds it until cleared */
	assert_int_equal(since_base(&f, bm), 2);
	assert_true(vmm__bitmap_test(bm, 5) && vmm__bitmap_test(bm, 9));
	/* A consumer re-protects page 70 that no sync reported: it joins the set. */
	fake_kvm_dirty_set(0, 70);
	memset(f.bm, 0, f.words * 8);
	vmm__bitmap_set(f.bm, 70);
	assert_int_equal(vmm__dirty_clear(&f.vm->dirty, f.bm, 64, 64), 0);
	assert_int_equal(sync(&f), 1); /* 5 only: 70's bit is gone from KVM */
	assert_int_equal(since_base(&f, bm), 3);
	assert_true(vmm__bitmap_test(bm, 70));
	vmm__dirty_rebase(&f.vm->dirty);
	assert_int_equal(since_base(&f, bm), 0);
	assert_int_equal(sync(&f), 1); /* KVM's own log is untouched by a rebase */
	assert_int_equal(since_base(&f, bm), 1);
	vmm__dirty_stop(&f.vm->dirty);
	free(bm);
	fx_free(&f);
}

static void since_base_ring(void **state)
{
	struct fixture f = fx(16, 256);
	uint64_t *bm = calloc(f.words, 8);

	(void)state;
	assert_int_equal(vmm__dirty_start(&f.vm->dirty), 0);
	fake_kvm_ring_push(0, 0, 9);
	assert_int_equal(sync(&f), 1);
	fake_kvm_ring_push(1, 0, 300);
	assert_int_equal(vmm__dirty_ring_full(&f.vm->dirty, 1), 0);
	assert_int_equal(sync(&f), 1);
	assert_int_equal(since_base(&f, bm), 2);
	vmm__dirty_rebase(&f.vm->dirty);
	assert_int_equal(since_base(&f, bm), 0);
	vmm__dirty_stop(&f.vm->dirty);
	free(bm);
	fx_free(&f);
}

static void ring_config_refused(void **state)
{
	(void)state;
	assert_null(fake_vm_new(16, 1, 300, NULL, NULL)); /* not a power of two */
	assert_null(fake_vm_new(16, 1, 128, NULL, NULL)); /* under a page */
	assert_null(fake_vm_new(16, 1, 1u << 20, NULL, NULL)); /* over KVM's maximum */
	fake_kvm_set_caps(1, 0);
	assert_null(fake_vm_new(16, 1, 256, NULL, NULL)); /* no ring at all */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(manual_protect, fake_vm_setup),
		cmocka_unit_test_setup(plain_bitmap, fake_vm_setup),
		cmocka_unit_test_setup(two_slots, fake_vm_setup),
		cmocka_unit_test_setup(ring, fake_vm_setup),
		cmocka_unit_test_setup(ring_config_refused, fake_vm_setup),
		cmocka_unit_test_setup(since_base_set, fake_vm_setup),
		cmocka_unit_test_setup(since_base_ring, fake_vm_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
