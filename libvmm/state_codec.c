/* struct vmm__machine_state <-> the vmm.state.Machine protobuf message (proto/state.proto).
 * Encoding trusts its input; decoding does not: every count, size and narrow field is checked
 * and a failure names the field, e.g. "vcpu[1].sregs.cs.type: 300 out of range". */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libvmm/error_internal.h"
#include "state.pb-c.h"
#include "libvmm/state_codec.h"
#include "vmm/vm.h"

#define STATE_MAJOR 1
#define NSREG_WORDS (sizeof(((struct kvm_sregs *)0)->interrupt_bitmap) / sizeof(uint64_t))

/* Decode limits: far above anything KVM produces, low enough to bound what a hostile buffer
 * can make us allocate. */
#define MAX_MSRS 1024
#define MAX_CPUID 256
#define MAX_DEVS 64
#define MAX_DEV_NAME 64
#define MIN_XSAVE 4096
#define MAX_XSAVE (1u << 20)

typedef Vmm__State__Machine PbMachine;
typedef Vmm__State__Vcpu PbVcpu;
typedef Vmm__State__Regs PbRegs;
typedef Vmm__State__Sregs PbSregs;
typedef Vmm__State__Segment PbSegment;
typedef Vmm__State__Dtable PbDtable;
typedef Vmm__State__VcpuEvents PbEvents;
typedef Vmm__State__Debugregs PbDebugregs;
typedef Vmm__State__Msr PbMsr;
typedef Vmm__State__Xcr PbXcr;
typedef Vmm__State__CpuidEntry PbCpuid;
typedef Vmm__State__Clock PbClock;
typedef Vmm__State__PitChannel PbPitChannel;
typedef Vmm__State__Pit PbPit;
typedef Vmm__State__VmKstate PbKstate;
typedef Vmm__State__Device PbDevice;

/* ------------------------------------------------------- encoding allocations */

/* Every allocation of one encode, freed together once the message is packed. */
struct arena {
	void **ptrs;
	size_t n, cap;
};

static void *arena_alloc(struct arena *a, size_t n, size_t size)
{
	void *p;

	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		void **ptrs = realloc(a->ptrs, cap * sizeof(*ptrs));

		if (!ptrs)
			return NULL;
		a->ptrs = ptrs;
		a->cap = cap;
	}
	p = calloc(n ? n : 1, size);
	if (p)
		a->ptrs[a->n++] = p;
	return p;
}

static void arena_free(struct arena *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->ptrs[i]);
	free(a->ptrs);
}

/* A repeated field: an array of n messages and the array of pointers to them. */
static int enc_repeated(struct arena *a, size_t n, size_t size, void **items, void ***ptrs)
{
	char *base;

	*items = NULL;
	*ptrs = NULL;
	if (!n)
		return 0;
	base = arena_alloc(a, n, size);
	*ptrs = arena_alloc(a, n, sizeof(void *));
	if (!base || !*ptrs)
		return vmm__err(VMM_ENOMEM, "encoding machine state");
	for (size_t i = 0; i < n; i++)
		(*ptrs)[i] = base + i * size;
	*items = base;
	return 0;
}

/* The fixed-size messages of one vCPU, allocated as one block. */
struct vcpu_pb {
	PbVcpu vcpu;
	PbRegs regs;
	PbSregs sregs;
	PbSegment seg[8];
	PbDtable gdt, idt;
	PbEvents events;
	PbDebugregs dbg;
};

/* ------------------------------------------------------- decoding errors */

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return vmm__err(VMM_ESTATEDATA, "%s", msg);
}

/* Narrows a wire value into a KVM field of `max`, or fails naming it. */
static int narrow(uint64_t v, uint64_t max, const char *where, const char *field, uint64_t *out)
{
	if (v > max)
		return bad("%s.%s: %llu out of range", where, field, (unsigned long long)v);
	*out = v;
	return 0;
}

#define NARROW(dst, src, max, where, field)                              \
	do {                                                             \
		uint64_t v_ = 0;                                         \
		int r_ = narrow((src), (max), (where), (field), &v_);   \
		if (r_)                                                  \
			return r_;                                       \
		(dst) = v_;                                              \
	} while (0)

/* Sets an optional scalar and its presence flag. */
#define PUT(m, f, v)               \
	do {                       \
		(m)->has_##f = 1;  \
		(m)->f = (v);      \
	} while (0)

/* ------------------------------------------------------- the flat field lists
 * Each names a structure's fields once, for both directions: C(wire, kvm) for a field the
 * wire holds at KVM's width, N(wire, kvm, max) for one KVM keeps narrower, which decoding
 * checks against max and names as "<where>.<wire>" when it does not fit. */

#define REGS_FIELDS(C, N)                                                        \
	C(rax, rax) C(rbx, rbx) C(rcx, rcx) C(rdx, rdx) C(rsi, rsi) C(rdi, rdi)     \
	C(rsp, rsp) C(rbp, rbp) C(r8, r8) C(r9, r9) C(r10, r10) C(r11, r11)         \
	C(r12, r12) C(r13, r13) C(r14, r14) C(r15, r15) C(rip, rip) C(rflags, rflags)

#define SEGMENT_FIELDS(C, N)                                                      \
	C(base_addr, base) C(limit, limit) N(selector, selector, UINT16_MAX)         \
	N(type, type, UINT8_MAX) N(present, present, UINT8_MAX) N(dpl, dpl, UINT8_MAX) \
	N(db, db, UINT8_MAX) N(s, s, UINT8_MAX) N(l, l, UINT8_MAX) N(g, g, UINT8_MAX)  \
	N(avl, avl, UINT8_MAX) N(unusable, unusable, UINT8_MAX)

#define DTABLE_FIELDS(C, N) C(base_addr, base) N(limit, limit, UINT16_MAX)

/* The scalars of struct kvm_sregs; segments, tables and the bitmap are coded apart. */
#define SREGS_FIELDS(C, N)                                                        \
	C(cr0, cr0) C(cr2, cr2) C(cr3, cr3) C(cr4, cr4) C(cr8, cr8) C(efer, efer)    \
	C(apic_base, apic_base)

#define EVENTS_FIELDS(C, N)                                                       \
	C(flags, flags)                                                              \
	N(exception_injected, exception.injected, UINT8_MAX)                         \
	N(exception_nr, exception.nr, UINT8_MAX)                                     \
	N(exception_has_error_code, exception.has_error_code, UINT8_MAX)             \
	N(exception_pending, exception.pending, UINT8_MAX)                           \
	C(exception_error_code, exception.error_code)                                \
	N(interrupt_injected, interrupt.injected, UINT8_MAX)                         \
	N(interrupt_nr, interrupt.nr, UINT8_MAX)                                     \
	N(interrupt_soft, interrupt.soft, UINT8_MAX)                                 \
	N(interrupt_shadow, interrupt.shadow, UINT8_MAX)                             \
	N(nmi_injected, nmi.injected, UINT8_MAX)                                     \
	N(nmi_pending, nmi.pending, UINT8_MAX)                                       \
	N(nmi_masked, nmi.masked, UINT8_MAX)                                         \
	C(sipi_vector, sipi_vector)                                                  \
	N(smi_smm, smi.smm, UINT8_MAX)                                               \
	N(smi_pending, smi.pending, UINT8_MAX)                                       \
	N(smi_smm_inside_nmi, smi.smm_inside_nmi, UINT8_MAX)                         \
	N(smi_latched_init, smi.latched_init, UINT8_MAX)                             \
	N(triple_fault_pending, triple_fault.pending, UINT8_MAX)                     \
	N(exception_has_payload, exception_has_payload, UINT8_MAX)                   \
	C(exception_payload, exception_payload)

/* The scalars of struct kvm_debugregs; db[4] is coded apart. */
#define DEBUGREGS_FIELDS(C, N) C(dr6, dr6) C(dr7, dr7) C(flags, flags)

#define MSR_FIELDS(C, N) C(index, index) C(value, data)

#define XCR_FIELDS(C, N) C(xcr, xcr) C(value, value)

#define CPUID_FIELDS(C, N)                                                        \
	C(function, function) C(index, index) C(flags, flags) C(eax, eax) C(ebx, ebx) \
	C(ecx, ecx) C(edx, edx)

#define CLOCK_FIELDS(C, N) C(clock, clock) C(flags, flags) C(realtime, realtime) C(host_tsc, host_tsc)

/* count is 1..65536 on a real PIT; the wire allows what KVM's __u32 holds. */
#define PIT_CHANNEL_FIELDS(C, N)                                                  \
	C(count, count) N(latched_count, latched_count, UINT16_MAX)                  \
	N(count_latched, count_latched, UINT8_MAX)                                   \
	N(status_latched, status_latched, UINT8_MAX) N(status, status, UINT8_MAX)    \
	N(read_state, read_state, UINT8_MAX) N(write_state, write_state, UINT8_MAX)  \
	N(write_latch, write_latch, UINT8_MAX) N(rw_mode, rw_mode, UINT8_MAX)        \
	N(mode, mode, UINT8_MAX) N(bcd, bcd, UINT8_MAX) N(gate, gate, UINT8_MAX)     \
	C(count_load_time, count_load_time)

/* The two directions of a list, over `k` (the KVM struct), `m` (the message) and, when
 * decoding, `w` (where the struct is, for the error). */
#define ENC_C(pb, kvm) PUT(m, pb, k->kvm);
#define ENC_N(pb, kvm, max) PUT(m, pb, k->kvm);
#define DEC_C(pb, kvm) k->kvm = m->pb;
#define DEC_N(pb, kvm, max) NARROW(k->kvm, m->pb, max, w, #pb);
#define ENCODE(LIST) LIST(ENC_C, ENC_N)
#define DECODE(LIST) LIST(DEC_C, DEC_N)

/* ------------------------------------------------------- registers */

static void enc_regs(const struct kvm_regs *k, PbRegs *m)
{
	vmm__state__regs__init(m);
	ENCODE(REGS_FIELDS)
}

static int dec_regs(const PbRegs *m, struct kvm_regs *k, const char *where)
{
	if (!m)
		return bad("%s: regs missing", where);
	DECODE(REGS_FIELDS)
	return 0;
}

static PbSegment *enc_segment(const struct kvm_segment *k, PbSegment *m)
{
	vmm__state__segment__init(m);
	ENCODE(SEGMENT_FIELDS)
	return m;
}

static int dec_segment(const PbSegment *m, struct kvm_segment *k, const char *where,
		       const char *name)
{
	char w[64];

	snprintf(w, sizeof(w), "%s.sregs.%s", where, name);
	if (!m)
		return bad("%s missing", w);
	DECODE(SEGMENT_FIELDS)
	return 0;
}

static PbDtable *enc_dtable(const struct kvm_dtable *k, PbDtable *m)
{
	vmm__state__dtable__init(m);
	ENCODE(DTABLE_FIELDS)
	return m;
}

static int dec_dtable(const PbDtable *m, struct kvm_dtable *k, const char *where,
		      const char *name)
{
	char w[64];

	snprintf(w, sizeof(w), "%s.sregs.%s", where, name);
	if (!m)
		return bad("%s missing", w);
	DECODE(DTABLE_FIELDS)
	return 0;
}

/* The segment and table messages live in v, next to the sregs message. */
static void enc_sregs(const struct kvm_sregs *k, struct vcpu_pb *v)
{
	PbSregs *m = &v->sregs;

	vmm__state__sregs__init(m);
	m->cs = enc_segment(&k->cs, &v->seg[0]);
	m->ds = enc_segment(&k->ds, &v->seg[1]);
	m->es = enc_segment(&k->es, &v->seg[2]);
	m->fs = enc_segment(&k->fs, &v->seg[3]);
	m->gs = enc_segment(&k->gs, &v->seg[4]);
	m->ss = enc_segment(&k->ss, &v->seg[5]);
	m->tr = enc_segment(&k->tr, &v->seg[6]);
	m->ldt = enc_segment(&k->ldt, &v->seg[7]);
	m->gdt = enc_dtable(&k->gdt, &v->gdt);
	m->idt = enc_dtable(&k->idt, &v->idt);
	ENCODE(SREGS_FIELDS)
	/* Points into the caller's state, which outlives the pack. */
	m->n_interrupt_bitmap = NSREG_WORDS;
	m->interrupt_bitmap = (uint64_t *)k->interrupt_bitmap;
}

static int dec_sregs(const PbSregs *m, struct kvm_sregs *k, const char *where)
{
	int r;

	if (!m)
		return bad("%s: sregs missing", where);
	if ((r = dec_segment(m->cs, &k->cs, where, "cs")) ||
	    (r = dec_segment(m->ds, &k->ds, where, "ds")) ||
	    (r = dec_segment(m->es, &k->es, where, "es")) ||
	    (r = dec_segment(m->fs, &k->fs, where, "fs")) ||
	    (r = dec_segment(m->gs, &k->gs, where, "gs")) ||
	    (r = dec_segment(m->ss, &k->ss, where, "ss")) ||
	    (r = dec_segment(m->tr, &k->tr, where, "tr")) ||
	    (r = dec_segment(m->ldt, &k->ldt, where, "ldt")) ||
	    (r = dec_dtable(m->gdt, &k->gdt, where, "gdt")) ||
	    (r = dec_dtable(m->idt, &k->idt, where, "idt")))
		return r;
	DECODE(SREGS_FIELDS)
	if (m->n_interrupt_bitmap > NSREG_WORDS)
		return bad("%s.sregs.interrupt_bitmap: %zu words, at most %zu", where,
			   m->n_interrupt_bitmap, NSREG_WORDS);
	if (m->n_interrupt_bitmap) /* an empty repeated field has a NULL array */
		memcpy(k->interrupt_bitmap, m->interrupt_bitmap,
		       m->n_interrupt_bitmap * sizeof(uint64_t));
	return 0;
}

static void enc_events(const struct kvm_vcpu_events *k, PbEvents *m)
{
	vmm__state__vcpu_events__init(m);
	ENCODE(EVENTS_FIELDS)
}

static int dec_events(const PbEvents *m, struct kvm_vcpu_events *k, const char *where)
{
	char w[64];

	if (!m)
		return bad("%s: events missing", where);
	snprintf(w, sizeof(w), "%s.events", where);
	DECODE(EVENTS_FIELDS)
	return 0;
}

static void enc_debugregs(const struct kvm_debugregs *k, PbDebugregs *m)
{
	vmm__state__debugregs__init(m);
	m->n_db = 4;
	m->db = (uint64_t *)k->db;
	ENCODE(DEBUGREGS_FIELDS)
}

static int dec_debugregs(const PbDebugregs *m, struct kvm_debugregs *k, const char *where)
{
	if (!m)
		return bad("%s: debugregs missing", where);
	if (m->n_db > 4)
		return bad("%s.debugregs.db: %zu registers, at most 4", where, m->n_db);
	if (m->n_db) /* an empty repeated field has a NULL array */
		memcpy(k->db, m->db, m->n_db * sizeof(uint64_t));
	DECODE(DEBUGREGS_FIELDS)
	return 0;
}

/* ------------------------------------------------------- MSRs, XCRs, CPUID */

static int enc_msrs(struct arena *a, const struct vmm__cpu_state *st, PbVcpu *v)
{
	PbMsr *items;
	int r = enc_repeated(a, st->nmsrs, sizeof(*items), (void **)&items, (void ***)&v->msrs);

	if (r)
		return r;
	v->n_msrs = st->nmsrs;
	for (uint32_t i = 0; i < st->nmsrs; i++) {
		const struct kvm_msr_entry *k = &st->msrs[i];
		PbMsr *m = &items[i];

		vmm__state__msr__init(m);
		ENCODE(MSR_FIELDS)
	}
	return 0;
}

static int dec_msrs(const PbVcpu *v, struct vmm__cpu_state *st, const char *where)
{
	if (v->n_msrs > MAX_MSRS)
		return bad("%s.msrs: %zu entries, at most %d", where, v->n_msrs, MAX_MSRS);
	if (!v->n_msrs)
		return 0;
	st->msrs = calloc(v->n_msrs, sizeof(*st->msrs));
	if (!st->msrs)
		return vmm__err(VMM_ENOMEM, "%s.msrs", where);
	st->nmsrs = v->n_msrs;
	for (size_t i = 0; i < v->n_msrs; i++) {
		struct kvm_msr_entry *k = &st->msrs[i];
		const PbMsr *m = v->msrs[i];

		DECODE(MSR_FIELDS)
	}
	return 0;
}

static int enc_xcrs(struct arena *a, const struct kvm_xcrs *x, PbVcpu *v)
{
	uint32_t n = x->nr_xcrs < KVM_MAX_XCRS ? x->nr_xcrs : KVM_MAX_XCRS;
	PbXcr *items;
	int r = enc_repeated(a, n, sizeof(*items), (void **)&items, (void ***)&v->xcrs);

	if (r)
		return r;
	v->n_xcrs = n;
	for (uint32_t i = 0; i < n; i++) {
		const struct kvm_xcr *k = &x->xcrs[i];
		PbXcr *m = &items[i];

		vmm__state__xcr__init(m);
		ENCODE(XCR_FIELDS)
	}
	PUT(v, xcrs_flags, x->flags);
	return 0;
}

static int dec_xcrs(const PbVcpu *v, struct kvm_xcrs *x, const char *where)
{
	if (v->n_xcrs > KVM_MAX_XCRS)
		return bad("%s.xcrs: %zu entries, at most %d", where, v->n_xcrs, KVM_MAX_XCRS);
	x->nr_xcrs = v->n_xcrs;
	x->flags = v->xcrs_flags;
	for (size_t i = 0; i < v->n_xcrs; i++) {
		struct kvm_xcr *k = &x->xcrs[i];
		const PbXcr *m = v->xcrs[i];

		DECODE(XCR_FIELDS)
	}
	return 0;
}

static int enc_cpuid(struct arena *a, const struct vmm__cpu_state *st, PbVcpu *v)
{
	PbCpuid *items;
	int r = enc_repeated(a, st->ncpuid, sizeof(*items), (void **)&items, (void ***)&v->cpuid);

	if (r)
		return r;
	v->n_cpuid = st->ncpuid;
	for (uint32_t i = 0; i < st->ncpuid; i++) {
		const struct kvm_cpuid_entry2 *k = &st->cpuid[i];
		PbCpuid *m = &items[i];

		vmm__state__cpuid_entry__init(m);
		ENCODE(CPUID_FIELDS)
	}
	return 0;
}

static int dec_cpuid(const PbVcpu *v, struct vmm__cpu_state *st, const char *where)
{
	if (!v->n_cpuid)
		return bad("%s: cpuid missing", where);
	if (v->n_cpuid > MAX_CPUID)
		return bad("%s.cpuid: %zu entries, at most %d", where, v->n_cpuid, MAX_CPUID);
	st->cpuid = calloc(v->n_cpuid, sizeof(*st->cpuid));
	if (!st->cpuid)
		return vmm__err(VMM_ENOMEM, "%s.cpuid", where);
	st->ncpuid = v->n_cpuid;
	for (size_t i = 0; i < v->n_cpuid; i++) {
		struct kvm_cpuid_entry2 *k = &st->cpuid[i];
		const PbCpuid *m = v->cpuid[i];

		DECODE(CPUID_FIELDS)
	}
	return 0;
}

/* ------------------------------------------------------- one vCPU */

static int enc_vcpu(struct arena *a, const struct vmm__cpu_state *st, PbVcpu **out)
{
	struct vcpu_pb *v = arena_alloc(a, 1, sizeof(*v));
	PbVcpu *m;
	int r;

	if (!v)
		return vmm__err(VMM_ENOMEM, "encoding machine state");
	m = &v->vcpu;
	vmm__state__vcpu__init(m);
	PUT(m, id, st->id);
	enc_regs(&st->regs, &v->regs);
	m->regs = &v->regs;
	enc_sregs(&st->sregs, v);
	m->sregs = &v->sregs;
	if (st->xsave) {
		m->has_xsave = 1;
		m->xsave.data = st->xsave;
		m->xsave.len = st->xsave_size;
	}
	m->has_lapic = 1;
	m->lapic.data = (uint8_t *)st->lapic.regs;
	m->lapic.len = sizeof(st->lapic.regs);
	enc_events(&st->events, &v->events);
	m->events = &v->events;
	PUT(m, mp_state, st->mp_state.mp_state);
	enc_debugregs(&st->debugregs, &v->dbg);
	m->debugregs = &v->dbg;
	PUT(m, tsc_khz, st->tsc_khz);
	r = enc_msrs(a, st, m);
	if (!r)
		r = enc_xcrs(a, &st->xcrs, m);
	if (!r)
		r = enc_cpuid(a, st, m);
	*out = m;
	return r;
}

static int dec_blobs(const PbVcpu *m, struct vmm__cpu_state *st, const char *where)
{
	if (!m->has_xsave)
		return bad("%s: xsave missing", where);
	if (m->xsave.len < MIN_XSAVE || m->xsave.len > MAX_XSAVE)
		return bad("%s.xsave: %zu bytes, not within [%u, %u]", where, m->xsave.len,
			   MIN_XSAVE, MAX_XSAVE);
	if (!m->has_lapic)
		return bad("%s: lapic missing", where);
	if (m->lapic.len != sizeof(st->lapic.regs))
		return bad("%s.lapic: %zu bytes, not %zu", where, m->lapic.len,
			   sizeof(st->lapic.regs));
	memcpy(st->lapic.regs, m->lapic.data, sizeof(st->lapic.regs));
	st->xsave = malloc(m->xsave.len);
	if (!st->xsave)
		return vmm__err(VMM_ENOMEM, "%s.xsave", where);
	memcpy(st->xsave, m->xsave.data, m->xsave.len);
	st->xsave_size = m->xsave.len;
	return 0;
}

static int dec_vcpu(const PbVcpu *m, struct vmm__cpu_state *st, uint32_t i)
{
	char where[32];
	int r;

	snprintf(where, sizeof(where), "vcpu[%u]", i);
	if (!m->has_id)
		return bad("%s: id missing", where);
	st->id = m->id;
	if (!m->has_mp_state)
		return bad("%s: mp_state missing", where);
	st->mp_state.mp_state = m->mp_state;
	st->tsc_khz = m->tsc_khz;
	if ((r = dec_regs(m->regs, &st->regs, where)) ||
	    (r = dec_sregs(m->sregs, &st->sregs, where)) ||
	    (r = dec_events(m->events, &st->events, where)) ||
	    (r = dec_debugregs(m->debugregs, &st->debugregs, where)) ||
	    (r = dec_xcrs(m, &st->xcrs, where)) || (r = dec_blobs(m, st, where)) ||
	    (r = dec_msrs(m, st, where)))
		return r;
	return dec_cpuid(m, st, where);
}

static int dec_vcpus(const PbMachine *m, struct vmm__machine_state *ms)
{
	int r;

	if (!m->n_vcpus)
		return bad("vcpus missing");
	if (m->n_vcpus > VMM_VCPUS_MAX)
		return bad("vcpus: %zu, at most %d", m->n_vcpus, VMM_VCPUS_MAX);
	ms->cpus = calloc(m->n_vcpus, sizeof(*ms->cpus));
	if (!ms->cpus)
		return vmm__err(VMM_ENOMEM, "vcpus");
	ms->ncpus = m->n_vcpus;
	for (uint32_t i = 0; i < ms->ncpus; i++) {
		r = dec_vcpu(m->vcpus[i], &ms->cpus[i], i);
		if (r)
			return r;
		for (uint32_t j = 0; j < i; j++)
			if (ms->cpus[j].id == ms->cpus[i].id)
				return bad("vcpu[%u]: id %u repeated", i, ms->cpus[i].id);
	}
	return 0;
}

/* ------------------------------------------------------- VM-wide state */

static PbPitChannel *enc_pit_channel(const struct kvm_pit_channel_state *k, PbPitChannel *m)
{
	vmm__state__pit_channel__init(m);
	ENCODE(PIT_CHANNEL_FIELDS)
	return m;
}

static int dec_pit_channel(const PbPitChannel *m, struct kvm_pit_channel_state *k, int i)
{
	char w[32];

	snprintf(w, sizeof(w), "kstate.pit.channel[%d]", i);
	DECODE(PIT_CHANNEL_FIELDS)
	return 0;
}

static PbClock *enc_clock(const struct kvm_clock_data *k, PbClock *m)
{
	vmm__state__clock__init(m);
	ENCODE(CLOCK_FIELDS)
	return m;
}

static int dec_clock(const PbClock *m, struct kvm_clock_data *k)
{
	if (!m)
		return bad("kstate.clock missing");
	DECODE(CLOCK_FIELDS)
	return 0;
}

/* The fixed-size messages of the VM-wide state. */
struct kstate_pb {
	PbKstate ks;
	PbClock clock;
	PbPit pit;
	PbPitChannel ch[3];
	PbPitChannel *chp[3];
};

static int enc_kstate(struct arena *a, const struct vmm__vm_kstate *ks, PbKstate **out)
{
	struct kstate_pb *k = arena_alloc(a, 1, sizeof(*k));

	if (!k)
		return vmm__err(VMM_ENOMEM, "encoding machine state");
	vmm__state__vm_kstate__init(&k->ks);
	k->ks.clock = enc_clock(&ks->clock, &k->clock);
	k->ks.has_pic_master = 1;
	k->ks.pic_master.data = (uint8_t *)&ks->pic_master.chip.pic;
	k->ks.pic_master.len = sizeof(ks->pic_master.chip.pic);
	k->ks.has_pic_slave = 1;
	k->ks.pic_slave.data = (uint8_t *)&ks->pic_slave.chip.pic;
	k->ks.pic_slave.len = sizeof(ks->pic_slave.chip.pic);
	k->ks.has_ioapic = 1;
	k->ks.ioapic.data = (uint8_t *)&ks->ioapic.chip.ioapic;
	k->ks.ioapic.len = sizeof(ks->ioapic.chip.ioapic);
	vmm__state__pit__init(&k->pit);
	for (int i = 0; i < 3; i++)
		k->chp[i] = enc_pit_channel(&ks->pit.channels[i], &k->ch[i]);
	k->pit.n_channels = 3;
	k->pit.channels = k->chp;
	PUT(&k->pit, flags, ks->pit.flags);
	k->ks.pit = &k->pit;
	*out = &k->ks;
	return 0;
}

static int dec_chip(const ProtobufCBinaryData *b, int has, void *dst, size_t size,
		    const char *name)
{
	if (!has)
		return bad("kstate.%s missing", name);
	if (b->len != size)
		return bad("kstate.%s: %zu bytes, not %zu", name, b->len, size);
	memcpy(dst, b->data, size);
	return 0;
}

static int dec_kstate(const PbKstate *m, struct vmm__vm_kstate *ks)
{
	int r;

	if (!m)
		return bad("kstate missing");
	if ((r = dec_clock(m->clock, &ks->clock)))
		return r;
	ks->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	ks->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	ks->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	if ((r = dec_chip(&m->pic_master, m->has_pic_master, &ks->pic_master.chip.pic,
			  sizeof(ks->pic_master.chip.pic), "pic_master")) ||
	    (r = dec_chip(&m->pic_slave, m->has_pic_slave, &ks->pic_slave.chip.pic,
			  sizeof(ks->pic_slave.chip.pic), "pic_slave")) ||
	    (r = dec_chip(&m->ioapic, m->has_ioapic, &ks->ioapic.chip.ioapic,
			  sizeof(ks->ioapic.chip.ioapic), "ioapic")))
		return r;
	if (!m->pit)
		return bad("kstate.pit missing");
	if (m->pit->n_channels != 3)
		return bad("kstate.pit: %zu channels, not 3", m->pit->n_channels);
	for (int i = 0; i < 3; i++)
		if ((r = dec_pit_channel(m->pit->channels[i], &ks->pit.channels[i], i)))
			return r;
	ks->pit.flags = m->pit->flags;
	return 0;
}

/* ------------------------------------------------------- emulated devices */

static int enc_devices(struct arena *a, const struct vmm__machine_state *ms, PbMachine *m)
{
	PbDevice *items;
	int r = enc_repeated(a, ms->ndevs, sizeof(*items), (void **)&items,
			     (void ***)&m->devices);

	if (r)
		return r;
	m->n_devices = ms->ndevs;
	for (uint32_t i = 0; i < ms->ndevs; i++) {
		vmm__state__device__init(&items[i]);
		items[i].name = ms->devs[i].name;
		items[i].has_data = 1;
		items[i].data.data = ms->devs[i].data;
		items[i].data.len = ms->devs[i].len;
	}
	return 0;
}

static int dec_device(const PbDevice *m, struct vmm__dev_blob *d, uint32_t i)
{
	size_t n;

	if (!m->name)
		return bad("device[%u]: name missing", i);
	n = strnlen(m->name, MAX_DEV_NAME + 1);
	if (n == 0 || n > MAX_DEV_NAME)
		return bad("device[%u]: name length %zu not within [1, %d]", i, n, MAX_DEV_NAME);
	d->name = strdup(m->name);
	if (!d->name)
		return vmm__err(VMM_ENOMEM, "device[%u]", i);
	if (m->has_data && m->data.len) {
		d->data = malloc(m->data.len);
		if (!d->data)
			return vmm__err(VMM_ENOMEM, "device %s: %zu bytes", d->name, m->data.len);
		memcpy(d->data, m->data.data, m->data.len);
		d->len = m->data.len;
	}
	return 0;
}

static int dec_devices(const PbMachine *m, struct vmm__machine_state *ms)
{
	int r;

	if (m->n_devices > MAX_DEVS)
		return bad("devices: %zu, at most %d", m->n_devices, MAX_DEVS);
	if (!m->n_devices)
		return 0;
	ms->devs = calloc(m->n_devices, sizeof(*ms->devs));
	if (!ms->devs)
		return vmm__err(VMM_ENOMEM, "devices");
	ms->ndevs = m->n_devices;
	for (uint32_t i = 0; i < ms->ndevs; i++) {
		r = dec_device(m->devices[i], &ms->devs[i], i);
		if (r)
			return r;
		for (uint32_t j = 0; j < i; j++)
			if (!strcmp(ms->devs[j].name, ms->devs[i].name))
				return bad("device[%u]: name \"%s\" repeated", i, ms->devs[i].name);
	}
	return 0;
}

/* ------------------------------------------------------- the machine */

static int enc_machine(struct arena *a, const struct vmm__machine_state *ms, PbMachine *m)
{
	int r;

	vmm__state__machine__init(m);
	PUT(m, major, STATE_MAJOR);
	PUT(m, mem_size, ms->mem_size);
	if (ms->cpu_model[0])
		m->cpu_model = (char *)ms->cpu_model;
	/* Each vCPU is its own block (enc_vcpu); this is only the array of pointers. */
	m->vcpus = arena_alloc(a, ms->ncpus, sizeof(*m->vcpus));
	if (!m->vcpus)
		return vmm__err(VMM_ENOMEM, "encoding machine state");
	m->n_vcpus = ms->ncpus;
	r = 0;
	for (uint32_t i = 0; !r && i < ms->ncpus; i++)
		r = enc_vcpu(a, &ms->cpus[i], &m->vcpus[i]);
	if (!r)
		r = enc_kstate(a, &ms->kstate, &m->kstate);
	if (!r)
		r = enc_devices(a, ms, m);
	return r;
}

static int dec_machine(const PbMachine *m, struct vmm__machine_state *ms)
{
	int r;

	if (m->has_major && m->major != STATE_MAJOR)
		return vmm__err(VMM_EVERSION,
				"machine state major version %u, this reader knows %d", m->major,
				STATE_MAJOR);
	if (!m->has_mem_size)
		return bad("mem_size missing");
	ms->mem_size = m->mem_size;
	if (m->cpu_model) {
		size_t n = strlen(m->cpu_model);

		if (n >= sizeof(ms->cpu_model))
			return bad("cpu_model of %zu bytes", n);
		for (size_t i = 0; i < n; i++)
			if (!isalnum((unsigned char)m->cpu_model[i]) && !strchr("-_.", m->cpu_model[i]))
				return bad("cpu_model: byte 0x%02x", (unsigned char)m->cpu_model[i]);
		memcpy(ms->cpu_model, m->cpu_model, n + 1);
	}
	if ((r = dec_vcpus(m, ms)) || (r = dec_kstate(m->kstate, &ms->kstate)))
		return r;
	return dec_devices(m, ms);
}

int vmm__machine_state_encode(const struct vmm__machine_state *ms, uint8_t **buf, size_t *len)
{
	struct arena a = { 0 };
	PbMachine m;
	size_t size;
	int r;

	*buf = NULL;
	*len = 0;
	r = enc_machine(&a, ms, &m);
	if (!r) {
		size = vmm__state__machine__get_packed_size(&m);
		*buf = malloc(size ? size : 1);
		if (*buf)
			*len = vmm__state__machine__pack(&m, *buf);
		else
			r = vmm__err(VMM_ENOMEM, "encoding machine state: %zu bytes", size);
	}
	arena_free(&a);
	return r;
}

int vmm__machine_state_decode(const uint8_t *buf, size_t len, struct vmm__machine_state *ms)
{
	PbMachine *m;
	int r;

	memset(ms, 0, sizeof(*ms));
	if (!buf && len)
		return vmm__err(VMM_EINVAL, "machine state: NULL buffer");
	m = vmm__state__machine__unpack(NULL, len, buf);
	if (!m)
		return bad("machine state: not a valid protobuf Machine message (%zu bytes)", len);
	r = dec_machine(m, ms);
	vmm__state__machine__free_unpacked(m, NULL);
	if (r)
		vmm__machine_state_free(ms);
	return r;
}

void vmm__machine_state_free(struct vmm__machine_state *ms)
{
	if (!ms)
		return;
	for (uint32_t i = 0; ms->cpus && i < ms->ncpus; i++)
		vmm__cpu_state_free(&ms->cpus[i]);
	free(ms->cpus);
	for (uint32_t i = 0; ms->devs && i < ms->ndevs; i++) {
		free(ms->devs[i].name);
		free(ms->devs[i].data);
	}
	free(ms->devs);
	memset(ms, 0, sizeof(*ms));
}
