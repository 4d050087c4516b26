/* Dirty-page tracking (libvmm/dirty.h) with all three backends: manual-protect bitmap, plain
 * bitmap, dirty ring. The guest is a hand-made ELF64 of a few dozen bytes that goes to ring 3
 * (native speed on this host; ring 0 is emulated) and writes exactly the pages the test
 * commands through an MMIO mailbox, so every expected bitmap is known to the page.
 * Also: host writes (vmm__dirty_mark), ring-full exits with a small ring, syncs concurrent
 * with the guest and host writes, RAM in two slots around the 32-bit hole, and the memfd's
 * populated pages. */
#include <elf.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "libvmm/bitmap.h"
#include "libvmm/dirty.h"
#include "libvmm/vm_internal.h"

#define PAGE 4096ull
#define LOW_MEM (64ull << 20)
/* 3 GiB + 64 MiB: slot 0 is [0, 3 GiB), slot 1 is [4 GiB, 4 GiB + 64 MiB) at memfd offset
 * 3 GiB. Sparse: only touched pages cost anything. */
#define HIGH_MEM ((3ull << 30) + (64ull << 20))
#define HOLE_PAGE (VMM_MEM_HOLE_START / PAGE) /* first page index of slot 1 */

/* --- the guest ---------------------------------------------------------------------- */

#define LOAD 0x100000u
#define MBOX 0xd0000000ull /* in the 32-bit hole: no RAM, so accesses exit as MMIO */
#define OFF_GDT 0x80
#define OFF_GDTR 0xb0
#define OFF_KCODE 0xc0
#define OFF_UCODE 0xe0
#define IMG_SIZE 0x110

/* Ring 0 (entered in long mode by the ELF64 loader, emulated here): load a GDT with user
 * segments and iretq to ring 3 with interrupts off. */
static const uint8_t kcode[] = {
	0x0f, 0x01, 0x14, 0x25, 0xb0, 0x00, 0x10, 0x00, /* lgdt 0x1000b0 */
	0x6a, 0x23,                                     /* push $0x23 (user SS) */
	0x68, 0x00, 0x00, 0x08, 0x00,                   /* push $0x80000 (user RSP, unused) */
	0x6a, 0x02,                                     /* push $2 (RFLAGS, IF=0) */
	0x6a, 0x2b,                                     /* push $0x2b (user CS) */
	0x68, 0xe0, 0x00, 0x10, 0x00,                   /* push $0x1000e0 */
	0x48, 0xcf,                                     /* iretq */
};

/* Ring 3: forever { rdi = [mbox] (blocks in the test's handler until a command);
 * rcx = [mbox+8]; rdx = [mbox+16]; if !rcx break; do { [rdi] = rcx; rdi += rdx } while
 * (--rcx) }; then [mbox+24] = 0 and spin until the VMM stops the VM. */
static const uint8_t ucode[] = {
	0xbb, 0x00, 0x00, 0x00, 0xd0, /* mov $0xd0000000, %ebx */
	0x48, 0x8b, 0x3b,             /* 1: mov (%rbx), %rdi */
	0x48, 0x8b, 0x4b, 0x08,       /* mov 8(%rbx), %rcx */
	0x48, 0x8b, 0x53, 0x10,       /* mov 16(%rbx), %rdx */
	0x48, 0x85, 0xc9,             /* test %rcx, %rcx */
	0x74, 0x0d,                   /* je 3f */
	0x48, 0x89, 0x0f,             /* 2: mov %rcx, (%rdi) */
	0x48, 0x01, 0xd7,             /* add %rdx, %rdi */
	0x48, 0xff, 0xc9,             /* dec %rcx */
	0x75, 0xf5,                   /* jne 2b */
	0xeb, 0xe3,                   /* jmp 1b */
	0x89, 0x4b, 0x18,             /* 3: mov %ecx, 24(%rbx) */
	0xeb, 0xfe,                   /* jmp . */
};

static size_t build_guest(uint8_t *img)
{
	static const uint64_t gdt[6] = {
		0, 0,
		0x00af9b000000ffffull, /* 0x10 kernel code64 */
		0x00cf93000000ffffull, /* 0x18 kernel data */
		0x00cff3000000ffffull, /* 0x20 user data, DPL 3 */
		0x00affb000000ffffull, /* 0x28 user code64, DPL 3 */
	};
	Elf64_Ehdr eh = { 0 };
	Elf64_Phdr ph = { 0 };
	uint16_t limit = sizeof(gdt) - 1;
	uint64_t base = LOAD + OFF_GDT;

	memset(img, 0, IMG_SIZE);
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_version = EV_CURRENT;
	eh.e_entry = LOAD + OFF_KCODE;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(ph);
	eh.e_phnum = 1;
	ph.p_type = PT_LOAD;
	ph.p_flags = PF_R | PF_W | PF_X;
	ph.p_vaddr = ph.p_paddr = LOAD;
	ph.p_filesz = ph.p_memsz = IMG_SIZE;
	ph.p_align = PAGE;
	memcpy(img, &eh, sizeof(eh));
	memcpy(img + sizeof(eh), &ph, sizeof(ph));
	memcpy(img + OFF_GDT, gdt, sizeof(gdt));
	memcpy(img + OFF_GDTR, &limit, 2);
	memcpy(img + OFF_GDTR + 2, &base, 8);
	memcpy(img + OFF_KCODE, kcode, sizeof(kcode));
	memcpy(img + OFF_UCODE, ucode, sizeof(ucode));
	return IMG_SIZE;
}

#define PTE_US 0x04ull
#define PTE_A 0x20ull
#define PTE_D 0x40ull
#define PTE_PS 0x80ull
/* The loader's identity map (PML4 at 0x9000, PDPT at 0xa000, four PDs of 2 MiB pages) lacks
 * the U/S bit: set it everywhere so ring 3 may touch all of RAM and the mailbox. It also ends
 * at 4 GiB: a fifth PD in the first free page after them (0xf000) maps 4 GiB + 1 GiB for the
 * RAM of slot 1. Accessed and Dirty are set up front, so that the guest's page walks never
 * write to its tables: each sync write-protects every page again, tables included, and in
 * the emulated host the concurrent rounds ended about once in 30 runs in a triple fault
 * (this guest has no IDT), as if a walk's A/D update on a protected table page had come
 * back to the guest as a fault. The test checks only the guest's own pages, never tables. */
static void allow_user(struct vmm_vm *vm)
{
	static uint64_t pt[7 * 512];

	assert_int_equal(vmm_vm_mem_read(vm, 0x9000, pt, 6 * 4096), 0);
	for (size_t i = 0; i < 6 * 512; i++)
		if (pt[i] & 1)
			pt[i] |= PTE_US | PTE_A | (i >= 2 * 512 && (pt[i] & PTE_PS) ? PTE_D : 0);
	pt[512 + 4] = 0xf000 | 7 | PTE_A; /* PDPT[4] */
	for (uint64_t i = 0; i < 512; i++)
		pt[6 * 512 + i] = ((4ull << 30) + (i << 21)) | 0x87 | PTE_A | PTE_D;
	assert_int_equal(vmm_vm_mem_write(vm, 0x9000, pt, sizeof(pt)), 0);
}

/* The mailbox: the guest's read at +0 says "previous command done, give me the next" and
 * blocks on the vCPU thread until the test posts one. */
struct mbox {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t ready;          /* mailbox reads at +0 so far: commands done + 1 */
	int posted;              /* a command waits for the guest */
	uint64_t gpa, count, stride;
	uint64_t cur_count, cur_stride;
	int quit;                /* the guest wrote +24: it is spinning, stop it */
	int closing;             /* teardown: answer "quit" instead of waiting */
};

static void mbox_fn(void *opaque, uint64_t addr, uint8_t *data, uint32_t size, int is_write)
{
	struct mbox *mb = opaque;
	uint64_t v = 0;

	pthread_mutex_lock(&mb->lock);
	if (is_write) {
		mb->quit = 1;
		pthread_cond_broadcast(&mb->cond);
	} else if (addr == MBOX) {
		mb->ready++;
		pthread_cond_broadcast(&mb->cond);
		while (!mb->posted && !mb->closing)
			pthread_cond_wait(&mb->cond, &mb->lock);
		if (mb->posted) {
			mb->posted = 0;
			v = mb->gpa;
			mb->cur_count = mb->count;
			mb->cur_stride = mb->stride;
		} else {
			mb->cur_count = 0; /* quit */
		}
	} else if (addr == MBOX + 8) {
		v = mb->cur_count;
	} else if (addr == MBOX + 16) {
		v = mb->cur_stride;
	}
	pthread_mutex_unlock(&mb->lock);
	if (!is_write)
		memcpy(data, &v, size < 8 ? size : 8);
}

/* --- fixture -------------------------------------------------------------------------- */

struct fx {
	struct vmm_vm *vm;
	struct mbox mb;
	uint64_t npages, words;
	uint64_t own;  /* the guest owns pages [own, npages): no code, stack or table there */
	uint64_t *bm;  /* scratch */
	uint64_t *want, *got;
};

static void deadline_in(struct timespec *ts, int sec)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += sec;
}

/* Fails (instead of waiting forever) once the VM has stopped: its vCPU can no longer do
 * what the test waits for. */
static void guest_alive(struct fx *f)
{
	struct vmm_exit ex = { 0 };

	if (vmm_vm_run_state(f->vm) == VMM_VM_RUNNING)
		return;
	vmm_vm_wait(f->vm, 0, &ex);
	fail_msg("the VM stopped while the guest wrote (%s: %s)",
		 vmm_vm_run_state_name(vmm_vm_run_state(f->vm)), ex.detail);
}

/* Waits until the guest has asked for command number n (1 = the first). */
static void guest_wait(struct fx *f, uint64_t n)
{
	struct timespec ts;
	int timed_out = 0;

	deadline_in(&ts, 60);
	pthread_mutex_lock(&f->mb.lock);
	while (f->mb.ready < n && !timed_out)
		timed_out = pthread_cond_timedwait(&f->mb.cond, &f->mb.lock, &ts) != 0;
	pthread_mutex_unlock(&f->mb.lock);
	if (timed_out) {
		struct vmm_exit ex = { 0 };

		vmm_vm_wait(f->vm, 0, &ex);
		fail_msg("guest did not come back (VM %s: %s)",
			 vmm_vm_run_state_name(vmm_vm_run_state(f->vm)), ex.detail);
	}
}

/* Guest-physical address of page index p (memfd order). */
static uint64_t page_gpa(struct fx *f, uint64_t p)
{
	const struct vmm__memory *m = &f->vm->mem;

	for (uint32_t i = 0; i < m->nregions; i++)
		if (p >= m->regions[i].offset / PAGE &&
		    p < (m->regions[i].offset + m->regions[i].size) / PAGE)
			return m->regions[i].gpa + p * PAGE - m->regions[i].offset;
	fail_msg("page %llu is not RAM", (unsigned long long)p);
	return 0;
}

/* Posts "write one word at each of count pages from page first, every stride pages" (all in
 * one slot); returns the command's number for guest_wait. */
static uint64_t guest_post(struct fx *f, uint64_t first, uint64_t count, uint64_t stride)
{
	uint64_t n, gpa = page_gpa(f, first);

	assert_int_equal(page_gpa(f, first + (count - 1) * stride),
			 gpa + (count - 1) * stride * PAGE);
	pthread_mutex_lock(&f->mb.lock);
	assert_false(f->mb.posted);
	f->mb.gpa = gpa;
	f->mb.count = count;
	f->mb.stride = stride * PAGE;
	f->mb.posted = 1;
	n = f->mb.ready + 1;
	pthread_cond_broadcast(&f->mb.cond);
	pthread_mutex_unlock(&f->mb.lock);
	return n;
}

static int guest_done(struct fx *f, uint64_t n)
{
	int done;

	pthread_mutex_lock(&f->mb.lock);
	done = f->mb.ready >= n;
	pthread_mutex_unlock(&f->mb.lock);
	return done;
}

static void guest_write(struct fx *f, uint64_t first, uint64_t count, uint64_t stride)
{
	guest_wait(f, guest_post(f, first, count, stride));
}

static int fx_setup(void **state, uint64_t mem, uint32_t ring_entries, int force_plain,
		    uint32_t vcpus)
{
	struct vmm_vm_config cfg;
	uint8_t img[IMG_SIZE];
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	pthread_mutex_init(&f->mb.lock, NULL);
	pthread_cond_init(&f->mb.cond, NULL);
	f->npages = mem / PAGE;
	f->words = vmm__bitmap_words(f->npages);
	/* Low VM: everything from 16 MiB. Two-slot VM: the last 1536 pages of slot 0 and all
	 * of slot 1, so exercise() lands on both sides of the boundary. */
	f->own = mem == HIGH_MEM ? HOLE_PAGE - 1536 : 4096;
	f->bm = calloc(f->words, sizeof(uint64_t));
	f->want = calloc(f->words, sizeof(uint64_t));
	f->got = calloc(f->words, sizeof(uint64_t));
	assert_true(f->bm && f->want && f->got);
	vmm_vm_config_init(&cfg);
	cfg.mem_size = mem;
	cfg.vcpus = vcpus;
	cfg.dirty_ring_entries = ring_entries;
	assert_int_equal(vmm_vm_create(&cfg, &f->vm), 0);
	if (force_plain) /* as on a host without KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 */
		f->vm->kvm->has_manual_dirty_protect = 0;
	assert_int_equal(vmm_vm_load_kernel_image(f->vm, img, build_guest(img), NULL, 0), 0);
	allow_user(f->vm);
	assert_int_equal(vmm_vm_register_mmio(f->vm, MBOX, PAGE, mbox_fn, &f->mb), 0);
	assert_int_equal(vmm_vm_start(f->vm), 0);
	guest_wait(f, 1); /* in ring 3, blocked on its first command: it writes nothing now */
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	struct timespec ts;
	struct vmm_exit ex;

	if (!f)
		return 0;
	if (vmm_vm_run_state(f->vm) == VMM_VM_RUNNING) {
		pthread_mutex_lock(&f->mb.lock);
		f->mb.closing = 1;
		pthread_cond_broadcast(&f->mb.cond);
		/* Wait for the guest to leave the handler, so no vCPU thread blocks in it. */
		deadline_in(&ts, 30);
		while (!f->mb.quit &&
		       pthread_cond_timedwait(&f->mb.cond, &f->mb.lock, &ts) == 0)
			;
		pthread_mutex_unlock(&f->mb.lock);
		vmm_vm_stop(f->vm);
		vmm_vm_wait(f->vm, 30000, &ex);
	}
	vmm_vm_destroy(f->vm);
	pthread_cond_destroy(&f->mb.cond);
	pthread_mutex_destroy(&f->mb.lock);
	free(f->bm);
	free(f->want);
	free(f->got);
	free(f);
	return 0;
}

static int setup_manual(void **state) { return fx_setup(state, LOW_MEM, 0, 0, 1); }
static int setup_plain(void **state) { return fx_setup(state, LOW_MEM, 0, 1, 1); }
static int setup_ring(void **state) { return fx_setup(state, LOW_MEM, 4096, 0, 2); }
/* KVM's smallest ring: one page of 16-byte entries, soft limit 256 - 64. */
static int setup_ring_small(void **state) { return fx_setup(state, LOW_MEM, 256, 0, 2); }
static int setup_manual_2slots(void **state) { return fx_setup(state, HIGH_MEM, 0, 0, 1); }
static int setup_plain_2slots(void **state) { return fx_setup(state, HIGH_MEM, 0, 1, 1); }
static int setup_ring_2slots(void **state) { return fx_setup(state, HIGH_MEM, 1024, 0, 1); }

/* --- checking bitmaps --------------------------------------------------------------- */

static void want_none(struct fx *f)
{
	memset(f->want, 0, f->words * sizeof(uint64_t));
}

static void want_add(struct fx *f, uint64_t first, uint64_t count, uint64_t stride)
{
	for (uint64_t i = 0; i < count; i++)
		vmm__bitmap_set(f->want, first + i * stride);
}

/* The owned part of bm equals f->want exactly; pages below it (the guest's page tables get
 * accessed/dirty bits) are only counted. */
static void check_owned(struct fx *f, const uint64_t *bm, const char *what)
{
	uint64_t extra = 0, missing = 0, outside, first_bad = UINT64_MAX;

	outside = vmm__bitmap_weight(bm, f->own);
	for (uint64_t p = f->own; p < f->npages; p++) {
		int got = vmm__bitmap_test(bm, p), exp = vmm__bitmap_test(f->want, p);

		if (got != exp) {
			extra += got;
			missing += exp;
			if (first_bad == UINT64_MAX)
				first_bad = p;
		}
	}
	if (extra || missing)
		fail_msg("%s: %llu pages missing, %llu extra, first at page %llu (%llu dirty outside)",
			 what, (unsigned long long)missing, (unsigned long long)extra,
			 (unsigned long long)first_bad, (unsigned long long)outside);
}

static void sync_fresh(struct fx *f)
{
	memset(f->bm, 0, f->words * sizeof(uint64_t));
	assert_int_equal(vmm__dirty_sync(&f->vm->dirty, f->bm), 0);
}

/* What a migration round does: sync, then re-protect everything reported before reading. */
static void sync_and_clear(struct fx *f)
{
	sync_fresh(f);
	assert_int_equal(vmm__dirty_clear(&f->vm->dirty, f->bm, 0, f->words * 64), 0);
}

/* --- the scenarios ------------------------------------------------------------------ */

static void exercise(struct fx *f, int backend)
{
	struct vmm_vm *vm = f->vm;
	uint64_t own = f->own, x = own + 1024, q = own + 2000, r = x + 128, r2 = x - 1;
	uint8_t bytes[16] = { 1, 2, 3 };

	assert_int_equal(x % 64, 0);
	assert_int_equal(vmm__dirty_backend(&vm->dirty), 0);
	vmm__dirty_stop(&vm->dirty); /* without a tracker: nothing happens */
	assert_int_equal(vmm__dirty_sync(&vm->dirty, f->bm), VMM_ESTATE);
	assert_int_equal(vmm__dirty_start(&vm->dirty), 0);
	assert_int_equal(vmm__dirty_start(&vm->dirty), VMM_EBUSY);
	assert_int_equal(vmm__dirty_backend(&vm->dirty), backend);

	/* Nothing was written since start. */
	want_none(f);
	sync_and_clear(f);
	check_owned(f, f->bm, "idle");

	/* (1) Exactly the pages the guest writes: a run and every third page of another. */
	guest_write(f, own, 100, 1);
	guest_write(f, own + 200, 101, 3);
	want_add(f, own, 100, 1);
	want_add(f, own + 200, 101, 3);
	sync_and_clear(f);
	check_owned(f, f->bm, "first writes");
	want_none(f);
	sync_and_clear(f);
	check_owned(f, f->bm, "no writes since the last sync");

	/* (2) The re-protect point. Pages x..x+63 written and reported; written again; then
	 * vmm__dirty_clear of [x, x+128) (a no-op for ring and plain, whose sync already
	 * re-protected); then x+32..x+95 written. q is written too but the clear's bitmap lacks
	 * it; r and r2 are in the bitmap but just outside the cleared range. */
	guest_write(f, x, 64, 1);
	guest_write(f, q, 1, 1);
	guest_write(f, r, 1, 1);
	guest_write(f, r2, 1, 1);
	sync_fresh(f);
	want_add(f, x, 64, 1);
	want_add(f, q, 1, 1);
	want_add(f, r, 1, 1);
	want_add(f, r2, 1, 1);
	check_owned(f, f->bm, "before the clear");
	guest_write(f, x, 64, 1);
	f->bm[q / 64] &= ~(1ull << (q % 64));
	assert_int_equal(vmm__dirty_clear(&vm->dirty, f->bm, x, 128), 0);
	guest_write(f, x + 32, 64, 1);
	sync_fresh(f);
	want_none(f);
	want_add(f, x + 32, 64, 1);
	if (backend == VMM__DIRTY_MANUAL) {
		/* x..x+31 were written before the clear only; q, r, r2 were never cleared. */
		want_add(f, q, 1, 1);
		want_add(f, r, 1, 1);
		want_add(f, r2, 1, 1);
	} else {
		/* The sync re-protected: the second write of x..x+31 came after it. */
		want_add(f, x, 32, 1);
	}
	check_owned(f, f->bm, "after the clear");
	assert_int_equal(vmm__dirty_clear(&vm->dirty, f->bm, 0, f->words * 64), 0);
	want_none(f);
	sync_and_clear(f);
	check_owned(f, f->bm, "everything cleared");
	assert_int_equal(vmm__dirty_clear(&vm->dirty, f->bm, 1, 64), VMM_EINVAL);
	assert_int_equal(vmm__dirty_clear(&vm->dirty, f->bm, 64, 65), VMM_EINVAL);

	/* (3) Host writes: one page, two pages across a boundary, a direct mark, and a
	 * mark running past the end of RAM (clipped). */
	assert_int_equal(vmm_vm_mem_write(vm, page_gpa(f, own + 4000) + 8, bytes, 8), 0);
	assert_int_equal(vmm_vm_mem_write(vm, page_gpa(f, own + 4100) + PAGE - 4, bytes, 8), 0);
	vmm__dirty_mark(&vm->dirty, (own + 4200) * PAGE + 5, 1);
	vmm__dirty_mark(&vm->dirty, (f->npages - 1) * PAGE, 3 * PAGE);
	vmm__dirty_mark(&vm->dirty, f->npages * PAGE, PAGE); /* outside RAM: ignored */
	want_add(f, own + 4000, 1, 1);
	want_add(f, own + 4100, 2, 1);
	want_add(f, own + 4200, 1, 1);
	want_add(f, f->npages - 1, 1, 1);
	sync_and_clear(f);
	check_owned(f, f->bm, "host writes");

	/* Stop, and a tracker can start again, reporting only what follows. */
	vmm__dirty_stop(&vm->dirty);
	vmm__dirty_stop(&vm->dirty);
	assert_int_equal(vmm__dirty_backend(&vm->dirty), 0);
	assert_int_equal(vmm__dirty_sync(&vm->dirty, f->bm), VMM_ESTATE);
	guest_write(f, own + 5000, 10, 1); /* untracked */
	assert_int_equal(vmm__dirty_start(&vm->dirty), 0);
	guest_write(f, own + 6000, 10, 1);
	want_none(f);
	want_add(f, own + 6000, 10, 1);
	sync_and_clear(f);
	check_owned(f, f->bm, "second tracker");
	vmm__dirty_stop(&vm->dirty);
}

static void bitmap_manual(void **state)
{
	exercise(*state, VMM__DIRTY_MANUAL);
}

static void bitmap_plain(void **state)
{
	exercise(*state, VMM__DIRTY_PLAIN);
}

static void ring(void **state)
{
	exercise(*state, VMM__DIRTY_RING);
}

/* --- concurrency ------------------------------------------------------------------- */

#define BIG 8192ull /* pages the guest writes in one command: 32 MiB */
#define MARKS 256ull

static void *marker(void *arg)
{
	struct fx *f = arg;
	uint64_t v = 42;

	for (uint64_t i = 0; i < MARKS; i++) {
		vmm_vm_mem_write(f->vm, page_gpa(f, f->own + BIG + i), &v, sizeof(v));
		if (i % 16 == 0)
			tu_sleep_us(200);
	}
	return NULL;
}

/* The guest rewrites BIG pages and a host thread writes MARKS others while this thread
 * syncs (and clears) in a loop: the union of everything reported holds every page. */
static void concurrent_round(struct fx *f)
{
	pthread_t t;
	uint64_t n, rounds = 0;

	memset(f->got, 0, f->words * sizeof(uint64_t));
	n = guest_post(f, f->own, BIG, 1);
	assert_int_equal(pthread_create(&t, NULL, marker, f), 0);
	/* Paced: back-to-back syncs re-protect each page right after the guest's fault on
	 * it, and with the host's CPUs busy (ctest -j2 in the emulated host) the guest then
	 * crawled, once taking 12 minutes for this loop. A sync every 200 us still lands
	 * hundreds of them inside the guest's writes. */
	while (!guest_done(f, n)) {
		sync_and_clear(f);
		vmm__bitmap_or(f->got, f->bm, f->words);
		rounds++;
		tu_sleep_us(200);
		guest_alive(f);
	}
	pthread_join(t, NULL);
	sync_and_clear(f);
	vmm__bitmap_or(f->got, f->bm, f->words);
	want_none(f);
	want_add(f, f->own, BIG, 1);
	want_add(f, f->own + BIG, MARKS, 1);
	check_owned(f, f->got, "concurrent round");
	print_message("concurrent round: %llu syncs while the guest wrote\n",
		      (unsigned long long)rounds);
}

static void concurrent(void **state)
{
	struct fx *f = *state;

	assert_int_equal(vmm__dirty_start(&f->vm->dirty), 0);
	sync_and_clear(f);
	concurrent_round(f);
	concurrent_round(f); /* now every page is an old one being re-protected */
	vmm__dirty_stop(&f->vm->dirty);
}

/* (4) A 256-entry ring and a guest dirtying 8192 pages between syncs: the vCPU exits with
 * KVM_EXIT_DIRTY_RING_FULL dozens of times, each harvest is kept, nothing is lost. */
static void ring_full(void **state)
{
	struct fx *f = *state;
	struct vmm__dirty_stats st;

	assert_int_equal(vmm__dirty_start(&f->vm->dirty), 0);
	assert_int_equal(vmm__dirty_backend(&f->vm->dirty), VMM__DIRTY_RING);
	for (int round = 0; round < 3; round++) {
		guest_write(f, f->own, BIG, 1);
		sync_fresh(f);
		want_none(f);
		want_add(f, f->own, BIG, 1);
		check_owned(f, f->bm, "after ring-full exits");
	}
	vmm__dirty_get_stats(&f->vm->dirty, &st);
	print_message("ring of 256: %llu ring-full exits, %llu entries harvested\n",
		      (unsigned long long)st.ring_full, (unsigned long long)st.ring_harvested);
	assert_true(st.ring_full >= 3 * BIG / 256);
	assert_true(st.ring_harvested >= 3 * BIG);
	concurrent_round(f);
	vmm__dirty_stop(&f->vm->dirty);
	assert_int_equal(vmm_vm_run_state(f->vm), VMM_VM_RUNNING);
}

/* Ring sizes KVM refuses are refused at create, with a reason. */
static void ring_sizes(void **state)
{
	struct vmm_vm_config cfg;
	struct vmm_vm *vm = NULL;

	(void)state;
	vmm_vm_config_init(&cfg);
	cfg.mem_size = 16 << 20;
	cfg.dirty_ring_entries = 64; /* 1 KiB: KVM wants at least a page */
	assert_int_equal(vmm_vm_create(&cfg, &vm), VMM_EINVAL);
	assert_non_null(strstr(vmm_last_error(), "at least 256"));
	cfg.dirty_ring_entries = 1000;
	assert_int_equal(vmm_vm_create(&cfg, &vm), VMM_EINVAL);
	cfg.dirty_ring_entries = 1u << 24;
	assert_int_equal(vmm_vm_create(&cfg, &vm), VMM_EUNSUPPORTED);
	assert_null(vm);
}

/* (5) The memfd's populated pages: none in a fresh VM, exactly the ones written after, in
 * both slots. */
static void populated(void **state)
{
	struct vmm_vm_config cfg;
	struct vmm_vm *vm;
	uint64_t np = HIGH_MEM / PAGE, words = vmm__bitmap_words(np), v = 7;
	uint64_t *bm = calloc(words, sizeof(uint64_t)), *want = calloc(words, sizeof(uint64_t));

	(void)state;
	vmm_vm_config_init(&cfg);
	cfg.mem_size = HIGH_MEM;
	assert_int_equal(vmm_vm_create(&cfg, &vm), 0);
	assert_int_equal(vmm__memory_populated(&vm->mem, bm), 0);
	assert_int_equal(vmm__bitmap_weight(bm, np), 0);
	for (uint64_t p = 0; p < HOLE_PAGE; p += 99991) {
		assert_int_equal(vmm_vm_mem_write(vm, p * PAGE + 100, &v, sizeof(v)), 0);
		vmm__bitmap_set(want, p);
	}
	assert_int_equal(vmm_vm_mem_write(vm, 77 * PAGE - 4, &v, sizeof(v)), 0); /* two pages */
	vmm__bitmap_set_range(want, 76, 2);
	/* Slot 1 is at 4 GiB in the guest, right after slot 0 in the memfd. */
	assert_int_equal(vmm_vm_mem_write(vm, VMM_MEM_HOLE_END, &v, sizeof(v)), 0);
	vmm__bitmap_set(want, HOLE_PAGE);
	assert_int_equal(vmm_vm_mem_write(vm, VMM_MEM_HOLE_END + 5 * PAGE, &v, sizeof(v)), 0);
	vmm__bitmap_set(want, HOLE_PAGE + 5);
	assert_int_equal(vmm_vm_mem_write(vm, VMM_MEM_HOLE_END + (64 << 20) - 8, &v, 8), 0);
	vmm__bitmap_set(want, np - 1);
	assert_int_equal(vmm__memory_populated(&vm->mem, bm), 0);
	assert_memory_equal(bm, want, words * sizeof(uint64_t));
	vmm_vm_destroy(vm);
	free(bm);
	free(want);
}

/* The same with a guest: what it wrote is populated, what nobody touched is a hole. */
static void populated_guest(void **state)
{
	struct fx *f = *state;

	guest_write(f, f->own + 100, 50, 2);
	guest_write(f, HOLE_PAGE + 10, 3, 1);
	memset(f->bm, 0, f->words * sizeof(uint64_t));
	assert_int_equal(vmm__memory_populated(&f->vm->mem, f->bm), 0);
	want_none(f);
	want_add(f, f->own + 100, 50, 2);
	want_add(f, HOLE_PAGE + 10, 3, 1);
	check_owned(f, f->bm, "populated");
	assert_true(vmm__bitmap_test(f->bm, LOAD / PAGE)); /* the loaded image */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		{ "bitmap_manual", bitmap_manual, setup_manual, fx_teardown, NULL },
		{ "bitmap_plain", bitmap_plain, setup_plain, fx_teardown, NULL },
		{ "ring", ring, setup_ring, fx_teardown, NULL },
		{ "bitmap_manual_2slots", bitmap_manual, setup_manual_2slots, fx_teardown, NULL },
		{ "bitmap_plain_2slots", bitmap_plain, setup_plain_2slots, fx_teardown, NULL },
		{ "ring_2slots", ring, setup_ring_2slots, fx_teardown, NULL },
		{ "concurrent_manual", concurrent, setup_manual, fx_teardown, NULL },
		{ "concurrent_plain", concurrent, setup_plain, fx_teardown, NULL },
		{ "concurrent_ring", concurrent, setup_ring, fx_teardown, NULL },
		{ "ring_full", ring_full, setup_ring_small, fx_teardown, NULL },
		{ "ring_sizes", ring_sizes, NULL, NULL, NULL },
		{ "populated", populated, NULL, NULL, NULL },
		{ "populated_guest", populated_guest, setup_manual_2slots, fx_teardown, NULL },
	};

	tu_require_kvm();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
