/* vCPU and in-kernel device state against real KVM, with raw ioctls (no libvmm VM): a tiny
 * protected-mode program runs to an OUT exit, its state moves into fresh VMs directly and
 * through encode/decode, the copies compare equal field by field and then run on to the
 * same next exit; refused MSRs reach the skip callback. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testutil.h"

#include "libvmm/cpu_state.h"
#include "libvmm/kvm.h"
#include "libvmm/state_codec.h"

#define MEM_SIZE (1u << 20)
#define CODE 0x1000
#define DATA 0x2000
#define IDTR 0x3000
#define MSR_TSC 0x10
#define MSR_SYSENTER_ESP 0x175
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_PAT 0x277
#define MSR_HV_VP_RUNTIME 0x40000010
#define MSR_HV_TIME_REF_COUNT 0x40000020
#define APIC_TPR 0x80
#define APIC_SVR 0xf0
#define APIC_TMICT 0x380
#define APIC_TMCCT 0x390
#define XMM_OFF 160 /* XMM0 in the legacy XSAVE region */
#define XSTATE_BV_OFF 512
#define YMMH_OFF 576 /* upper halves of YMM0-15, standard format */

/* 32-bit flat protected mode, CPL 0 (so KVM-PVM emulates each instruction; all of these
 * are in KVM's emulator). Part 1 leaves state in many places, then OUTs 0x42 to port 0x80. */
static const uint8_t part1[] = {
	0xbc, 0x00, 0x80, 0x00, 0x00,             /* mov esp, 0x8000 */
	0x0f, 0x01, 0x1d, 0x00, 0x30, 0x00, 0x00, /* lidt [0x3000] */
	0xb9, 0x75, 0x01, 0x00, 0x00,             /* mov ecx, 0x175 (SYSENTER_ESP) */
	0xb8, 0xee, 0xff, 0xc0, 0x00,             /* mov eax, 0xc0ffee */
	0x31, 0xd2,                               /* xor edx, edx */
	0x0f, 0x30,                               /* wrmsr */
	0xb8, 0x78, 0x56, 0x34, 0x12,             /* mov eax, 0x12345678 */
	0x0f, 0x23, 0xc8,                         /* mov dr1, eax */
	0xc7, 0x05, 0x80, 0x00, 0xe0, 0xfe,       /* mov dword [0xfee00080], 0x20 (LAPIC TPR) */
	0x20, 0x00, 0x00, 0x00,
	0xc7, 0x05, 0xf0, 0x00, 0xe0, 0xfe,       /* mov dword [0xfee000f0], 0x1ff (SVR: enable) */
	0xff, 0x01, 0x00, 0x00,
	0xc7, 0x05, 0x20, 0x03, 0xe0, 0xfe,       /* mov dword [0xfee00320], 0x10040 LVTT masked */
	0x40, 0x00, 0x01, 0x00,
	0xc7, 0x05, 0x80, 0x03, 0xe0, 0xfe,       /* mov dword [0xfee00380], 0x7fffffff (TMICT) */
	0xff, 0xff, 0xff, 0x7f,
	0xf3, 0x0f, 0x6f, 0x15, 0x00, 0x20, 0x00, 0x00, /* movdqu xmm2, [0x2000] */
	0xbb, 0xa5, 0x00, 0x00, 0x00,             /* mov ebx, 0xa5 */
	0xbe, 0x5e, 0x5e, 0x5e, 0x5e,             /* mov esi, 0x5e5e5e5e */
	0xbf, 0xd1, 0xd1, 0xd1, 0xd1,             /* mov edi, 0xd1d1d1d1 */
	0xb0, 0x42,                               /* mov al, 0x42 */
	0xe6, 0x80,                               /* out 0x80, al */
};
/* Part 2 is where a restored vCPU continues: it OUTs bl + 1 to port 0x81, so the next exit
 * proves the registers came along. */
static const uint8_t part2[] = {
	0x88, 0xd8, /* mov al, bl */
	0x04, 0x01, /* add al, 1 */
	0xe6, 0x81, /* out 0x81, al */
	0xeb, 0xfe, /* jmp $ */
};
#define RESUME_RIP (CODE + sizeof(part1))

static const uint8_t xmm2_pattern[16] = { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
					  0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff };

struct tvm {
	int fd, vcpu;
	struct kvm_run *run;
	uint8_t *mem;
};

static struct vmm__kvm *kvm;

static void xioctl(int fd, unsigned long req, void *arg, const char *what)
{
	if (vmm__ioctl(fd, req, arg) < 0)
		fail_msg("%s: %s", what, strerror(errno));
}

static void set_cpuid(int vcpu)
{
	xioctl(vcpu, KVM_SET_CPUID2, kvm->cpuid, "KVM_SET_CPUID2");
}

/* A VM as libvmm builds one: in-kernel irqchip and PIT, RAM at 0, one vCPU. */
static void tvm_create(struct tvm *vm, int with_cpuid)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	struct kvm_userspace_memory_region region;

	vm->fd = ioctl(kvm->fd, KVM_CREATE_VM, 0);
	assert_true(vm->fd >= 0);
	xioctl(vm->fd, KVM_SET_TSS_ADDR, (void *)0xfffbd000ul, "KVM_SET_TSS_ADDR");
	xioctl(vm->fd, KVM_CREATE_IRQCHIP, NULL, "KVM_CREATE_IRQCHIP");
	xioctl(vm->fd, KVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2");
	vm->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(vm->mem != MAP_FAILED);
	region = (struct kvm_userspace_memory_region){
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = MEM_SIZE,
		.userspace_addr = (uintptr_t)vm->mem,
	};
	xioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");
	vm->vcpu = ioctl(vm->fd, KVM_CREATE_VCPU, 0);
	assert_true(vm->vcpu >= 0);
	vm->run = mmap(NULL, kvm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu, 0);
	assert_true(vm->run != MAP_FAILED);
	if (with_cpuid)
		set_cpuid(vm->vcpu);
}

static void tvm_destroy(struct tvm *vm)
{
	munmap(vm->run, kvm->vcpu_mmap_size);
	munmap(vm->mem, MEM_SIZE);
	close(vm->vcpu);
	close(vm->fd);
}

static const struct kvm_cpuid_entry2 *cpuid_leaf(uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < kvm->cpuid->nent; i++)
		if (kvm->cpuid->entries[i].function == fn && kvm->cpuid->entries[i].index == idx)
			return &kvm->cpuid->entries[i];
	return NULL;
}

static int has_xsave(void)
{
	const struct kvm_cpuid_entry2 *e = cpuid_leaf(1, 0);

	return e && (e->ecx & (1u << 26));
}

static int has_avx(void)
{
	const struct kvm_cpuid_entry2 *e = cpuid_leaf(0xd, 0);

	return has_xsave() && e && (e->eax & 4);
}

static void flat(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
	*s = (struct kvm_segment){ .base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
				   .present = 1, .db = 1, .s = 1, .g = 1 };
}

/* Entry state set from outside, where the program cannot reach: flat segments, SSE and
 * XSAVE enabled, XCR0, x87/SSE/AVX register contents, debug registers, a few MSRs. */
static void setup_guest(struct tvm *vm)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = CODE, .rflags = 0x2, .rsp = 0x8000, .rbp = 0x1bad1bad,
				 .rcx = 0x0c0c0c0c, .rdx = 0x0d0d0d0d };
	struct kvm_xcrs xcrs = { .nr_xcrs = 1, .xcrs = { { .xcr = 0, .value = 3 } } };
	struct kvm_debugregs dbg = { .db = { 0x1111, 0, 0x3333, 0x4444 }, .dr6 = 0xffff0ff0,
				     .dr7 = 0x400 };
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[3];
	} msrs = { .hdr.nmsrs = 3,
		   .e = { { .index = MSR_STAR, .data = 0x0023001000000000ull },
			  { .index = MSR_LSTAR, .data = 0xffffffff81000000ull },
			  { .index = MSR_TSC, .data = 1ull << 40 } } };
	uint32_t xs = kvm->has_xsave2 ? (uint32_t)kvm->xsave_size : 4096;
	uint8_t *xsave = calloc(1, xs);
	uint64_t bv;
	uint16_t idtr[3] = { 0xff, 0x3100, 0 };
	uint32_t mxcsr = 0x9f80;

	memcpy(vm->mem + CODE, part1, sizeof(part1));
	memcpy(vm->mem + CODE + sizeof(part1), part2, sizeof(part2));
	memcpy(vm->mem + DATA, xmm2_pattern, sizeof(xmm2_pattern));
	memcpy(vm->mem + IDTR, idtr, sizeof(idtr));

	xioctl(vm->vcpu, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
	flat(&sregs.cs, 0x08, 11);
	flat(&sregs.ds, 0x10, 3);
	flat(&sregs.es, 0x10, 3);
	flat(&sregs.fs, 0x10, 3);
	flat(&sregs.gs, 0x10, 3);
	flat(&sregs.ss, 0x10, 3);
	sregs.gdt.base = 0x3800;
	sregs.gdt.limit = 0x17;
	sregs.cr0 = 0x33; /* PE MP ET NE */
	/* OSFXSR, OSXMMEXCPT, OSXSAVE */
	sregs.cr4 = (1u << 9) | (1u << 10) | (has_xsave() ? 1u << 18 : 0);
	xioctl(vm->vcpu, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
	xioctl(vm->vcpu, KVM_SET_REGS, &regs, "KVM_SET_REGS");
	if (has_xsave()) {
		if (has_avx())
			xcrs.xcrs[0].value |= 4;
		xioctl(vm->vcpu, KVM_SET_XCRS, &xcrs, "KVM_SET_XCRS");
	}
	assert_non_null(xsave);
	xioctl(vm->vcpu, kvm->has_xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, xsave, "KVM_GET_XSAVE");
	memcpy(xsave + 24, &mxcsr, sizeof(mxcsr));
	memset(xsave + XMM_OFF, 0x5a, 16);        /* XMM0 */
	memset(xsave + XMM_OFF + 15 * 16, 0xa5, 16); /* XMM15 */
	memcpy(&bv, xsave + XSTATE_BV_OFF, sizeof(bv));
	bv |= 2;
	if (has_avx()) {
		memset(xsave + YMMH_OFF, 0x3c, 16); /* YMM0[255:128] */
		bv |= 4;
	}
	memcpy(xsave + XSTATE_BV_OFF, &bv, sizeof(bv));
	xioctl(vm->vcpu, KVM_SET_XSAVE, xsave, "KVM_SET_XSAVE");
	free(xsave);
	xioctl(vm->vcpu, KVM_SET_DEBUGREGS, &dbg, "KVM_SET_DEBUGREGS");
	assert_int_equal(ioctl(vm->vcpu, KVM_SET_MSRS, &msrs), 3);
}

/* Runs to the next exit, which must be OUT of `val` to `port`. */
static void run_to_out(struct tvm *vm, uint16_t port, uint8_t val)
{
	struct kvm_run *run = vm->run;

	xioctl(vm->vcpu, KVM_RUN, NULL, "KVM_RUN");
	if (run->exit_reason != KVM_EXIT_IO)
		fail_msg("exit %u (internal error suberror %u), expected KVM_EXIT_IO",
			 run->exit_reason,
			 run->exit_reason == KVM_EXIT_INTERNAL_ERROR ? run->internal.suberror : 0);
	assert_int_equal(run->io.direction, KVM_EXIT_IO_OUT);
	assert_int_equal(run->io.port, port);
	assert_int_equal(run->io.size, 1);
	assert_int_equal(((uint8_t *)run)[run->io.data_offset], val);
}

/* KVM finishes an exit's I/O (and moves RIP past the OUT) only on the next KVM_RUN. A VMM
 * parks a vCPU for a state capture with immediate_exit set, which completes the I/O and
 * returns EINTR without running guest code: do the same, or the saved RIP is the OUT. */
static void park(struct tvm *vm)
{
	vm->run->immediate_exit = 1;
	assert_int_equal(ioctl(vm->vcpu, KVM_RUN, NULL), -1);
	assert_int_equal(errno, EINTR);
	vm->run->immediate_exit = 0;
}

/* ---------------------------------------------------------------- comparison */

struct refused {
	uint32_t n;
	uint32_t idx[64];
};

static void on_skip(void *opaque, uint32_t index, const char *why)
{
	struct refused *r = opaque;

	print_message("  MSR 0x%x skipped: %s\n", index, why);
	if (r->n < 64)
		r->idx[r->n++] = index;
}

static int was_refused(const struct refused *r, uint32_t index)
{
	for (uint32_t i = 0; i < r->n; i++)
		if (r->idx[i] == index)
			return 1;
	return 0;
}

static const struct kvm_msr_entry *find_msr(const struct vmm__cpu_state *st, uint32_t index)
{
	for (uint32_t i = 0; i < st->nmsrs; i++)
		if (st->msrs[i].index == index)
			return &st->msrs[i];
	return NULL;
}

/* a: the saved state; b: read back from the vCPU it was set into. Equal field by field,
 * except where the value legitimately moved on:
 *  - MSR_IA32_TSC and Hyper-V's vCPU runtime and reference counters (100 ns units, listed
 *    where KVM offers Hyper-V emulation) count on between the set and the read: b >= a, by
 *    less than 10 s.
 *  - an MSR KVM refused on set (reported through the skip callback) keeps the new vCPU's own
 *    value.
 *  - the LAPIC's current-count register (TMCCT) is computed at the instant of the read. */
static void cmp_cpu(const struct vmm__cpu_state *a, const struct vmm__cpu_state *b,
		    const struct refused *refused)
{
	uint64_t ten_s = (uint64_t)a->tsc_khz * 1000 * 10;

	assert_memory_equal(&a->regs, &b->regs, sizeof(a->regs));
	assert_memory_equal(&a->sregs, &b->sregs, sizeof(a->sregs));
	assert_int_equal(a->xsave_size, b->xsave_size);
	assert_memory_equal(a->xsave, b->xsave, a->xsave_size);
	assert_memory_equal(&a->xcrs, &b->xcrs, sizeof(a->xcrs));
	assert_memory_equal(a->lapic.regs, b->lapic.regs, APIC_TMCCT);
	assert_memory_equal(a->lapic.regs + APIC_TMCCT + 4, b->lapic.regs + APIC_TMCCT + 4,
			    sizeof(a->lapic.regs) - APIC_TMCCT - 4);
	assert_memory_equal(&a->events, &b->events, sizeof(a->events));
	assert_int_equal(a->mp_state.mp_state, b->mp_state.mp_state);
	assert_memory_equal(&a->debugregs, &b->debugregs, sizeof(a->debugregs));
	assert_int_equal(a->ncpuid, b->ncpuid);
	assert_memory_equal(a->cpuid, b->cpuid, a->ncpuid * sizeof(*a->cpuid));
	assert_int_equal(a->tsc_khz, b->tsc_khz);
	assert_int_equal(a->nmsrs, b->nmsrs);
	for (uint32_t i = 0; i < a->nmsrs; i++) {
		const struct kvm_msr_entry *ea = &a->msrs[i], *eb = find_msr(b, ea->index);

		assert_non_null(eb);
		if (was_refused(refused, ea->index))
			continue;
		if (ea->index == MSR_TSC || ea->index == MSR_HV_VP_RUNTIME ||
		    ea->index == MSR_HV_TIME_REF_COUNT) {
			uint64_t limit = ea->index == MSR_TSC ? ten_s : 100000000ull;

			if (eb->data < ea->data || eb->data - ea->data >= limit)
				fail_msg("MSR 0x%x: saved 0x%llx, restored 0x%llx: not a counter that went on",
					 ea->index, (unsigned long long)ea->data,
					 (unsigned long long)eb->data);
			continue;
		}
		if (ea->data != eb->data)
			fail_msg("MSR 0x%x: saved 0x%llx, restored 0x%llx", ea->index,
				 (unsigned long long)ea->data, (unsigned long long)eb->data);
	}
}

/* VM-wide state, equal except:
 *  - kvmclock counts on between KVM_SET_CLOCK and KVM_GET_CLOCK (b >= a, by less than 10 s);
 *    flags, realtime and host_tsc are the new VM's own reading.
 *  - each PIT channel's count_load_time is the host time at which KVM_SET_PIT2 reloaded it. */
static void cmp_kstate(const struct vmm__vm_kstate *a, const struct vmm__vm_kstate *b)
{
	struct kvm_pit_state2 pa = a->pit, pb = b->pit;

	assert_true(b->clock.clock >= a->clock.clock);
	assert_true(b->clock.clock - a->clock.clock < 10ull * 1000 * 1000 * 1000);
	assert_memory_equal(&a->pic_master, &b->pic_master, sizeof(a->pic_master));
	assert_memory_equal(&a->pic_slave, &b->pic_slave, sizeof(a->pic_slave));
	assert_memory_equal(&a->ioapic, &b->ioapic, sizeof(a->ioapic));
	for (int i = 0; i < 3; i++)
		pa.channels[i].count_load_time = pb.channels[i].count_load_time = 0;
	assert_memory_equal(&pa, &pb, sizeof(pa));
}

/* ---------------------------------------------------------------- the scenario */

struct saved {
	struct vmm__cpu_state cpu;
	struct vmm__vm_kstate ks;
	uint8_t *mem;
};

static struct saved snap;
static struct tvm src;

/* AVX state survives: XCR0 set through KVM_SET_XCRS keeps the AVX bit, and YMM0's upper
 * half, set through KVM_SET_XSAVE, reads back through KVM_GET_XSAVE (a KVM that loses the
 * guest's XCR0 across KVM_RUN, or a restore that writes XSAVE before the XCR0 allowing it,
 * drops it). */
static void check_ymm0_upper(const struct vmm__cpu_state *st, const char *when)
{
	uint8_t want[16];
	uint64_t bv;

	if (!has_avx())
		return;
	memset(want, 0x3c, sizeof(want));
	memcpy(&bv, st->xsave + XSTATE_BV_OFF, sizeof(bv));
	if (st->xcrs.nr_xcrs < 1 || !(st->xcrs.xcrs[0].value & 4) || !(bv & 4) ||
	    memcmp(st->xsave + YMMH_OFF, want, sizeof(want)))
		fail_msg("%s: AVX state lost (XCR0 %#llx, XSTATE_BV %#llx, YMM0[255:128] %02x..)",
			 when, (unsigned long long)st->xcrs.xcrs[0].value, (unsigned long long)bv,
			 st->xsave[YMMH_OFF]);
}

/* The source: run part 1 to its OUT, park, capture. Shared by the tests below. */
static int setup(void **unused)
{
	struct kvm_vcpu_events ev;
	uint32_t reg;
	uint64_t bv;

	assert_int_equal(vmm__kvm_open(&kvm), 0);
	tvm_create(&src, 1);
	setup_guest(&src);
	run_to_out(&src, 0x80, 0x42);
	park(&src);
	/* A pending NMI, held back because NMIs are masked: event state worth carrying that
	 * part 2 does not disturb. */
	xioctl(src.vcpu, KVM_GET_VCPU_EVENTS, &ev, "KVM_GET_VCPU_EVENTS");
	ev.nmi.pending = 1;
	ev.nmi.masked = 1;
	ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING;
	xioctl(src.vcpu, KVM_SET_VCPU_EVENTS, &ev, "KVM_SET_VCPU_EVENTS");
	assert_int_equal(vmm__cpu_state_get(kvm, src.vcpu, &snap.cpu), 0);
	assert_int_equal(vmm__vm_kstate_get(src.fd, &snap.ks), 0);
	snap.mem = malloc(MEM_SIZE);
	memcpy(snap.mem, src.mem, MEM_SIZE);

	/* The program ran and the state is not a reset vCPU's. */
	assert_int_equal(snap.cpu.regs.rip, RESUME_RIP);
	assert_int_equal(snap.cpu.regs.rbx, 0xa5);
	assert_int_equal(snap.cpu.regs.rbp, 0x1bad1bad);
	assert_int_equal(snap.cpu.debugregs.db[1], 0x12345678);
	assert_int_equal(snap.cpu.debugregs.db[3], 0x4444);
	assert_int_equal(snap.cpu.sregs.idt.base, 0x3100);
	assert_int_equal(snap.cpu.lapic.regs[APIC_TPR], 0x20);
	memcpy(&reg, snap.cpu.lapic.regs + APIC_SVR, 4);
	assert_int_equal(reg, 0x1ff);
	memcpy(&reg, snap.cpu.lapic.regs + APIC_TMICT, 4);
	assert_int_equal(reg, 0x7fffffff);
	memcpy(&reg, snap.cpu.lapic.regs + APIC_TMCCT, 4);
	assert_true(reg > 0 && reg < 0x7fffffff); /* the timer counts */
	assert_int_equal(snap.cpu.events.nmi.pending, 1);
	assert_int_equal(snap.cpu.events.nmi.masked, 1);
	assert_memory_equal(snap.cpu.xsave + XMM_OFF + 2 * 16, xmm2_pattern, 16);
	memcpy(&bv, snap.cpu.xsave + XSTATE_BV_OFF, sizeof(bv));
	assert_true(bv & 2);
	assert_int_equal(find_msr(&snap.cpu, MSR_SYSENTER_ESP)->data, 0xc0ffee);
	assert_int_equal(find_msr(&snap.cpu, MSR_LSTAR)->data, 0xffffffff81000000ull);
	assert_true(find_msr(&snap.cpu, MSR_TSC)->data >= 1ull << 40);
	if (has_xsave())
		assert_int_equal(snap.cpu.xcrs.xcrs[0].value, has_avx() ? 7 : 3);
	check_ymm0_upper(&snap.cpu, "after the guest ran");
	assert_true(snap.cpu.ncpuid > 0);
	print_message("captured: %u MSRs, %u CPUID leaves, XSAVE %u bytes, TSC %u kHz\n",
		      snap.cpu.nmsrs, snap.cpu.ncpuid, snap.cpu.xsave_size, snap.cpu.tsc_khz);
	return 0;
}

static int teardown(void **unused)
{
	vmm__cpu_state_free(&snap.cpu);
	free(snap.mem);
	tvm_destroy(&src);
	vmm__kvm_close(kvm);
	return 0;
}

/* Builds a fresh VM from (cpu, ks) and the saved RAM, compares it with the snapshot and
 * runs it on to part 2's OUT. */
static void restore_check_run(const struct vmm__cpu_state *cpu, const struct vmm__vm_kstate *ks)
{
	struct vmm__cpu_state back = { 0 };
	struct vmm__vm_kstate ks_back;
	struct refused refused = { 0 };
	struct tvm dst;

	/* No CPUID beforehand: the state brings its own. */
	tvm_create(&dst, 0);
	memcpy(dst.mem, snap.mem, MEM_SIZE);
	assert_int_equal(vmm__cpu_state_set(kvm, dst.vcpu, cpu, on_skip, &refused), 0);
	assert_int_equal(vmm__vm_kstate_set(dst.fd, ks), 0);
	assert_int_equal(vmm__cpu_state_get(kvm, dst.vcpu, &back), 0);
	assert_int_equal(vmm__vm_kstate_get(dst.fd, &ks_back), 0);
	check_ymm0_upper(&back, "after the round trip");
	cmp_cpu(&snap.cpu, &back, &refused);
	cmp_kstate(&snap.ks, &ks_back);
	print_message("restored: %u of %u MSRs refused by this host's KVM_SET_MSRS\n", refused.n,
		      cpu->nmsrs);
	run_to_out(&dst, 0x81, 0xa6);
	vmm__cpu_state_free(&back);
	tvm_destroy(&dst);
}

static void test_direct(void **unused)
{
	restore_check_run(&snap.cpu, &snap.ks);
}

static void test_encoded(void **unused)
{
	struct vmm__machine_state ms = { .mem_size = MEM_SIZE, .ncpus = 1, .cpus = &snap.cpu,
					 .kstate = snap.ks };
	struct vmm__machine_state out;
	uint8_t *buf;
	size_t len;

	assert_int_equal(vmm__machine_state_encode(&ms, &buf, &len), 0);
	assert_int_equal(vmm__machine_state_decode(buf, len, &out), 0);
	free(buf);
	assert_int_equal(out.ncpus, 1);
	restore_check_run(&out.cpus[0], &out.kstate);
	vmm__machine_state_free(&out);
}

/* The source itself runs on to part 2, then takes its saved state back: KVM_SET_CPUID2 on a
 * vCPU that has run accepts only an identical table, which is what it gets. It then repeats
 * part 2. */
static void test_back_into_source(void **unused)
{
	struct refused refused = { 0 };

	run_to_out(&src, 0x81, 0xa6);
	park(&src);
	memcpy(src.mem, snap.mem, MEM_SIZE);
	assert_int_equal(vmm__cpu_state_set(kvm, src.vcpu, &snap.cpu, on_skip, &refused), 0);
	run_to_out(&src, 0x81, 0xa6);
	park(&src);
}

/* Two MSRs KVM refuses: one it does not know, placed before SYSENTER_ESP, and IA32_PAT
 * (0x277) holding memory type 2, which is reserved (every KVM checks a PAT it is given).
 * Both are reported through the callback and skipped, and every other MSR is still
 * written. (IA32_ARCH_CAPABILITIES with every bit set served here once; Linux 6.1 takes any
 * value a VMM writes there, later kernels refuse unsupported bits.) */
static void test_skip_refused_msrs(void **unused)
{
	struct vmm__cpu_state st = snap.cpu, back = { 0 };
	struct refused refused = { 0 };
	uint32_t at = 0, n = 0;
	struct tvm dst;

	while (at < snap.cpu.nmsrs && snap.cpu.msrs[at].index != MSR_SYSENTER_ESP)
		at++;
	assert_true(at < snap.cpu.nmsrs);
	st.msrs = calloc(snap.cpu.nmsrs + 1, sizeof(*st.msrs));
	for (uint32_t i = 0; i < snap.cpu.nmsrs; i++) {
		if (i == at)
			st.msrs[n++] = (struct kvm_msr_entry){ .index = 0xdeadbeef, .data = 1 };
		st.msrs[n++] = snap.cpu.msrs[i];
	}
	st.nmsrs = n;
	for (uint32_t i = 0; i < n; i++)
		if (st.msrs[i].index == MSR_PAT)
			st.msrs[i].data = 0x0202020202020202ull;

	tvm_create(&dst, 0);
	memcpy(dst.mem, snap.mem, MEM_SIZE);
	assert_int_equal(vmm__cpu_state_set(kvm, dst.vcpu, &st, on_skip, &refused), 0);
	assert_true(was_refused(&refused, 0xdeadbeef));
	if (find_msr(&snap.cpu, MSR_PAT))
		assert_true(was_refused(&refused, MSR_PAT));
	assert_int_equal(vmm__vm_kstate_set(dst.fd, &snap.ks), 0); /* the clocks counters follow */
	assert_int_equal(vmm__cpu_state_get(kvm, dst.vcpu, &back), 0);
	assert_int_equal(find_msr(&back, MSR_SYSENTER_ESP)->data, 0xc0ffee);
	cmp_cpu(&snap.cpu, &back, &refused);
	/* A NULL callback skips silently. */
	assert_int_equal(vmm__cpu_state_set(kvm, dst.vcpu, &st, NULL, NULL), 0);
	run_to_out(&dst, 0x81, 0xa6);
	vmm__cpu_state_free(&back);
	free(st.msrs);
	tvm_destroy(&dst);
}

/* A failing ioctl is an error naming it, and the state stays freeable. */
static void test_errors(void **unused)
{
	struct vmm__cpu_state st = { 0 }, bad = snap.cpu;
	struct tvm dst;

	assert_int_equal(vmm__cpu_state_get(kvm, -1, &st), VMM_EKVM);
	assert_non_null(strstr(vmm_last_error(), "KVM_GET_MP_STATE"));
	vmm__cpu_state_free(&st);
	vmm__cpu_state_free(&st);

	tvm_create(&dst, 0);
	bad.sregs.cr4 |= 1ull << 40; /* reserved */
	assert_int_equal(vmm__cpu_state_set(kvm, dst.vcpu, &bad, NULL, NULL), VMM_EKVM);
	assert_non_null(strstr(vmm_last_error(), "KVM_SET_SREGS"));
	bad = snap.cpu;
	bad.xsave = NULL;
	assert_int_equal(vmm__cpu_state_set(kvm, dst.vcpu, &bad, NULL, NULL), VMM_EINVAL);
	assert_int_equal(vmm__vm_kstate_get(-1, &(struct vmm__vm_kstate){ 0 }), VMM_EKVM);
	tvm_destroy(&dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_direct),
		cmocka_unit_test(test_encoded),
		cmocka_unit_test(test_skip_refused_msrs),
		cmocka_unit_test(test_back_into_source),
		cmocka_unit_test(test_errors),
	};

	tu_require_kvm();
	return cmocka_run_group_tests(tests, setup, teardown);
}
