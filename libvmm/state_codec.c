/* struct vmm__machine_state <-> the vmm.state.Machine protobuf message (proto/state.proto).
 * Encoding trusts its input; decoding does not: every count, size and narrow field is checked
 * and a failure names the field, e.g. "vcpu[1].sregs.cs.type: 300 out of range". */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "state.pb-c.h"
#include "state_codec.h"
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

/* Sets an optional scalar and its presence flag. */
#define PUT(m, f, v)               \
	do {                       \
		(m)->has_##f = 1;  \
		(m)->f = (v);      \
	} while (0)

/* ---------------------------------------------------------------- encoding */

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

static void enc_regs(const struct kvm_regs *r, PbRegs *m)
{
	vmm__state__regs__init(m);
	PUT(m, rax, r->rax);
	PUT(m, rbx, r->rbx);
	PUT(m, rcx, r->rcx);
	PUT(m, rdx, r->rdx);
	PUT(m, rsi, r->rsi);
	PUT(m, rdi, r->rdi);
	PUT(m, rsp, r->rsp);
	PUT(m, rbp, r->rbp);
	PUT(m, r8, r->r8);
	PUT(m, r9, r->r9);
	PUT(m, r10, r->r10);
	PUT(m, r11, r->r11);
	PUT(m, r12, r->r12);
	PUT(m, r13, r->r13);
	PUT(m, r14, r->r14);
	PUT(m, r15, r->r15);
	PUT(m, rip, r->rip);
	PUT(m, rflags, r->rflags);
}

static PbSegment *enc_segment(const struct kvm_segment *s, PbSegment *m)
{
	vmm__state__segment__init(m);
	PUT(m, base_addr, s->base);
	PUT(m, limit, s->limit);
	PUT(m, selector, s->selector);
	PUT(m, type, s->type);
	PUT(m, present, s->present);
	PUT(m, dpl, s->dpl);
	PUT(m, db, s->db);
	PUT(m, s, s->s);
	PUT(m, l, s->l);
	PUT(m, g, s->g);
	PUT(m, avl, s->avl);
	PUT(m, unusable, s->unusable);
	return m;
}

static PbDtable *enc_dtable(const struct kvm_dtable *d, PbDtable *m)
{
	vmm__state__dtable__init(m);
	PUT(m, base_addr, d->base);
	PUT(m, limit, d->limit);
	return m;
}

static void enc_sregs(const struct kvm_sregs *s, struct vcpu_pb *v)
{
	PbSregs *m = &v->sregs;

	vmm__state__sregs__init(m);
	m->cs = enc_segment(&s->cs, &v->seg[0]);
	m->ds = enc_segment(&s->ds, &v->seg[1]);
	m->es = enc_segment(&s->es, &v->seg[2]);
	m->fs = enc_segment(&s->fs, &v->seg[3]);
	m->gs = enc_segment(&s->gs, &v->seg[4]);
	m->ss = enc_segment(&s->ss, &v->seg[5]);
	m->tr = enc_segment(&s->tr, &v->seg[6]);
	m->ldt = enc_segment(&s->ldt, &v->seg[7]);
	m->gdt = enc_dtable(&s->gdt, &v->gdt);
	m->idt = enc_dtable(&s->idt, &v->idt);
	PUT(m, cr0, s->cr0);
	PUT(m, cr2, s->cr2);
	PUT(m, cr3, s->cr3);
	PUT(m, cr4, s->cr4);
	PUT(m, cr8, s->cr8);
	PUT(m, efer, s->efer);
	PUT(m, apic_base, s->apic_base);
	/* Points into the caller's state, which outlives the pack. */
	m->n_interrupt_bitmap = NSREG_WORDS;
	m->interrupt_bitmap = (uint64_t *)s->interrupt_bitmap;
}

static void enc_events(const struct kvm_vcpu_events *e, PbEvents *m)
{
	vmm__state__vcpu_events__init(m);
	PUT(m, flags, e->flags);
	PUT(m, exception_injected, e->exception.injected);
	PUT(m, exception_nr, e->exception.nr);
	PUT(m, exception_has_error_code, e->exception.has_error_code);
	PUT(m, exception_pending, e->exception.pending);
	PUT(m, exception_error_code, e->exception.error_code);
	PUT(m, interrupt_injected, e->interrupt.injected);
	PUT(m, interrupt_nr, e->interrupt.nr);
	PUT(m, interrupt_soft, e->interrupt.soft);
	PUT(m, interrupt_shadow, e->interrupt.shadow);
	PUT(m, nmi_injected, e->nmi.injected);
	PUT(m, nmi_pending, e->nmi.pending);
	PUT(m, nmi_masked, e->nmi.masked);
	PUT(m, sipi_vector, e->sipi_vector);
	PUT(m, smi_smm, e->smi.smm);
	PUT(m, smi_pending, e->smi.pending);
	PUT(m, smi_smm_inside_nmi, e->smi.smm_inside_nmi);
	PUT(m, smi_latched_init, e->smi.latched_init);
	PUT(m, triple_fault_pending, e->triple_fault.pending);
	PUT(m, exception_has_payload, e->exception_has_payload);
	PUT(m, exception_payload, e->exception_payload);
}

static void enc_debugregs(const struct kvm_debugregs *d, PbDebugregs *m)
{
	vmm__state__debugregs__init(m);
	m->n_db = 4;
	m->db = (uint64_t *)d->db;
	PUT(m, dr6, d->dr6);
	PUT(m, dr7, d->dr7);
	PUT(m, flags, d->flags);
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

static int enc_msrs(struct arena *a, const struct vmm__cpu_state *st, PbVcpu *m)
{
	PbMsr *items;
	int r = enc_repeated(a, st->nmsrs, sizeof(*items), (void **)&items, (void ***)&m->msrs);

	if (r)
		return r;
	m->n_msrs = st->nmsrs;
	for (uint32_t i = 0; i < st->nmsrs; i++) {
		vmm__state__msr__init(&items[i]);
		PUT(&items[i], index, st->msrs[i].index);
		PUT(&items[i], value, st->msrs[i].data);
	}
	return 0;
}

static int enc_xcrs(struct arena *a, const struct kvm_xcrs *x, PbVcpu *m)
{
	uint32_t n = x->nr_xcrs < KVM_MAX_XCRS ? x->nr_xcrs : KVM_MAX_XCRS;
	PbXcr *items;
	int r = enc_repeated(a, n, sizeof(*items), (void **)&items, (void ***)&m->xcrs);

	if (r)
		return r;
	m->n_xcrs = n;
	for (uint32_t i = 0; i < n; i++) {
		vmm__state__xcr__init(&items[i]);
		PUT(&items[i], xcr, x->xcrs[i].xcr);
		PUT(&items[i], value, x->xcrs[i].value);
	}
	PUT(m, xcrs_flags, x->flags);
	return 0;
}

static int enc_cpuid(struct arena *a, const struct vmm__cpu_state *st, PbVcpu *m)
{
	PbCpuid *items;
	int r = enc_repeated(a, st->ncpuid, sizeof(*items), (void **)&items, (void ***)&m->cpuid);

	if (r)
		return r;
	m->n_cpuid = st->ncpuid;
	for (uint32_t i = 0; i < st->ncpuid; i++) {
		const struct kvm_cpuid_entry2 *e = &st->cpuid[i];

		vmm__state__cpuid_entry__init(&items[i]);
		PUT(&items[i], function, e->function);
		PUT(&items[i], index, e->index);
		PUT(&items[i], flags, e->flags);
		PUT(&items[i], eax, e->eax);
		PUT(&items[i], ebx, e->ebx);
		PUT(&items[i], ecx, e->ecx);
		PUT(&items[i], edx, e->edx);
	}
	return 0;
}

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

static PbPitChannel *enc_pit_channel(const struct kvm_pit_channel_state *c, PbPitChannel *m)
{
	vmm__state__pit_channel__init(m);
	PUT(m, count, c->count);
	PUT(m, latched_count, c->latched_count);
	PUT(m, count_latched, c->count_latched);
	PUT(m, status_latched, c->status_latched);
	PUT(m, status, c->status);
	PUT(m, read_state, c->read_state);
	PUT(m, write_state, c->write_state);
	PUT(m, write_latch, c->write_latch);
	PUT(m, rw_mode, c->rw_mode);
	PUT(m, mode, c->mode);
	PUT(m, bcd, c->bcd);
	PUT(m, gate, c->gate);
	PUT(m, count_load_time, c->count_load_time);
	return m;
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
	vmm__state__clock__init(&k->clock);
	PUT(&k->clock, clock, ks->clock.clock);
	PUT(&k->clock, flags, ks->clock.flags);
	PUT(&k->clock, realtime, ks->clock.realtime);
	PUT(&k->clock, host_tsc, ks->clock.host_tsc);
	k->ks.clock = &k->clock;
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

static int enc_machine(struct arena *a, const struct vmm__machine_state *ms, PbMachine *m)
{
	int r;

	vmm__state__machine__init(m);
	PUT(m, major, STATE_MAJOR);
	PUT(m, mem_size, ms->mem_size);
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

/* ---------------------------------------------------------------- decoding */

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
#define U8(dst, m, f, where) NARROW(dst, (m)->f, UINT8_MAX, where, #f)

static int dec_regs(const PbRegs *m, struct kvm_regs *r, const char *where)
{
	if (!m)
		return bad("%s: regs missing", where);
	r->rax = m->rax;
	r->rbx = m->rbx;
	r->rcx = m->rcx;
	r->rdx = m->rdx;
	r->rsi = m->rsi;
	r->rdi = m->rdi;
	r->rsp = m->rsp;
	r->rbp = m->rbp;
	r->r8 = m->r8;
	r->r9 = m->r9;
	r->r10 = m->r10;
	r->r11 = m->r11;
	r->r12 = m->r12;
	r->r13 = m->r13;
	r->r14 = m->r14;
	r->r15 = m->r15;
	r->rip = m->rip;
	r->rflags = m->rflags;
	return 0;
}

static int dec_segment(const PbSegment *m, struct kvm_segment *s, const char *where,
		       const char *name)
{
	char w[64];

	snprintf(w, sizeof(w), "%s.sregs.%s", where, name);
	if (!m)
		return bad("%s missing", w);
	s->base = m->base_addr;
	s->limit = m->limit;
	NARROW(s->selector, m->selector, UINT16_MAX, w, "selector");
	U8(s->type, m, type, w);
	U8(s->present, m, present, w);
	U8(s->dpl, m, dpl, w);
	U8(s->db, m, db, w);
	U8(s->s, m, s, w);
	U8(s->l, m, l, w);
	U8(s->g, m, g, w);
	U8(s->avl, m, avl, w);
	U8(s->unusable, m, unusable, w);
	return 0;
}

static int dec_dtable(const PbDtable *m, struct kvm_dtable *d, const char *where,
		      const char *name)
{
	char w[64];

	snprintf(w, sizeof(w), "%s.sregs.%s", where, name);
	if (!m)
		return bad("%s missing", w);
	d->base = m->base_addr;
	NARROW(d->limit, m->limit, UINT16_MAX, w, "limit");
	return 0;
}

static int dec_sregs(const PbSregs *m, struct kvm_sregs *s, const char *where)
{
	int r;

	if (!m)
		return bad("%s: sregs missing", where);
	if ((r = dec_segment(m->cs, &s->cs, where, "cs")) ||
	    (r = dec_segment(m->ds, &s->ds, where, "ds")) ||
	    (r = dec_segment(m->es, &s->es, where, "es")) ||
	    (r = dec_segment(m->fs, &s->fs, where, "fs")) ||
	    (r = dec_segment(m->gs, &s->gs, where, "gs")) ||
	    (r = dec_segment(m->ss, &s->ss, where, "ss")) ||
	    (r = dec_segment(m->tr, &s->tr, where, "tr")) ||
	    (r = dec_segment(m->ldt, &s->ldt, where, "ldt")) ||
	    (r = dec_dtable(m->gdt, &s->gdt, where, "gdt")) ||
	    (r = dec_dtable(m->idt, &s->idt, where, "idt")))
		return r;
	s->cr0 = m->cr0;
	s->cr2 = m->cr2;
	s->cr3 = m->cr3;
	s->cr4 = m->cr4;
	s->cr8 = m->cr8;
	s->efer = m->efer;
	s->apic_base = m->apic_base;
	if (m->n_interrupt_bitmap > NSREG_WORDS)
		return bad("%s.sregs.interrupt_bitmap: %zu words, at most %zu", where,
			   m->n_interrupt_bitmap, NSREG_WORDS);
	if (m->n_interrupt_bitmap) /* an empty repeated field has a NULL array */
		memcpy(s->interrupt_bitmap, m->interrupt_bitmap,
		       m->n_interrupt_bitmap * sizeof(uint64_t));
	return 0;
}

static int dec_events(const PbEvents *m, struct kvm_vcpu_events *e, const char *where)
{
	char w[64];

	if (!m)
		return bad("%s: events missing", where);
	snprintf(w, sizeof(w), "%s.events", where);
	e->flags = m->flags;
	U8(e->exception.injected, m, exception_injected, w);
	U8(e->exception.nr, m, exception_nr, w);
	U8(e->exception.has_error_code, m, exception_has_error_code, w);
	U8(e->exception.pending, m, exception_pending, w);
	e->exception.error_code = m->exception_error_code;
	U8(e->interrupt.injected, m, interrupt_injected, w);
	U8(e->interrupt.nr, m, interrupt_nr, w);
	U8(e->interrupt.soft, m, interrupt_soft, w);
	U8(e->interrupt.shadow, m, interrupt_shadow, w);
	U8(e->nmi.injected, m, nmi_injected, w);
	U8(e->nmi.pending, m, nmi_pending, w);
	U8(e->nmi.masked, m, nmi_masked, w);
	e->sipi_vector = m->sipi_vector;
	U8(e->smi.smm, m, smi_smm, w);
	U8(e->smi.pending, m, smi_pending, w);
	U8(e->smi.smm_inside_nmi, m, smi_smm_inside_nmi, w);
	U8(e->smi.latched_init, m, smi_latched_init, w);
	U8(e->triple_fault.pending, m, triple_fault_pending, w);
	U8(e->exception_has_payload, m, exception_has_payload, w);
	e->exception_payload = m->exception_payload;
	return 0;
}

static int dec_debugregs(const PbDebugregs *m, struct kvm_debugregs *d, const char *where)
{
	if (!m)
		return bad("%s: debugregs missing", where);
	if (m->n_db > 4)
		return bad("%s.debugregs.db: %zu registers, at most 4", where, m->n_db);
	if (m->n_db) /* an empty repeated field has a NULL array */
		memcpy(d->db, m->db, m->n_db * sizeof(uint64_t));
	d->dr6 = m->dr6;
	d->dr7 = m->dr7;
	d->flags = m->flags;
	return 0;
}

static int dec_xcrs(const PbVcpu *m, struct kvm_xcrs *x, const char *where)
{
	if (m->n_xcrs > KVM_MAX_XCRS)
		return bad("%s.xcrs: %zu entries, at most %d", where, m->n_xcrs, KVM_MAX_XCRS);
	x->nr_xcrs = m->n_xcrs;
	x->flags = m->xcrs_flags;
	for (size_t i = 0; i < m->n_xcrs; i++) {
		x->xcrs[i].xcr = m->xcrs[i]->xcr;
		x->xcrs[i].value = m->xcrs[i]->value;
	}
	return 0;
}

static int dec_msrs(const PbVcpu *m, struct vmm__cpu_state *st, const char *where)
{
	if (m->n_msrs > MAX_MSRS)
		return bad("%s.msrs: %zu entries, at most %d", where, m->n_msrs, MAX_MSRS);
	if (!m->n_msrs)
		return 0;
	st->msrs = calloc(m->n_msrs, sizeof(*st->msrs));
	if (!st->msrs)
		return vmm__err(VMM_ENOMEM, "%s.msrs", where);
	st->nmsrs = m->n_msrs;
	for (size_t i = 0; i < m->n_msrs; i++) {
		st->msrs[i].index = m->msrs[i]->index;
		st->msrs[i].data = m->msrs[i]->value;
	}
	return 0;
}

static int dec_cpuid(const PbVcpu *m, struct vmm__cpu_state *st, const char *where)
{
	if (!m->n_cpuid)
		return bad("%s: cpuid missing", where);
	if (m->n_cpuid > MAX_CPUID)
		return bad("%s.cpuid: %zu entries, at most %d", where, m->n_cpuid, MAX_CPUID);
	st->cpuid = calloc(m->n_cpuid, sizeof(*st->cpuid));
	if (!st->cpuid)
		return vmm__err(VMM_ENOMEM, "%s.cpuid", where);
	st->ncpuid = m->n_cpuid;
	for (size_t i = 0; i < m->n_cpuid; i++) {
		const PbCpuid *c = m->cpuid[i];

		st->cpuid[i] = (struct kvm_cpuid_entry2){
			.function = c->function,
			.index = c->index,
			.flags = c->flags,
			.eax = c->eax,
			.ebx = c->ebx,
			.ecx = c->ecx,
			.edx = c->edx,
		};
	}
	return 0;
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

static int dec_pit_channel(const PbPitChannel *m, struct kvm_pit_channel_state *c, int i)
{
	char w[32];

	snprintf(w, sizeof(w), "kstate.pit.channel[%d]", i);
	/* count is 1..65536 on a real PIT; the wire allows what KVM's __u32 holds. */
	c->count = m->count;
	NARROW(c->latched_count, m->latched_count, UINT16_MAX, w, "latched_count");
	U8(c->count_latched, m, count_latched, w);
	U8(c->status_latched, m, status_latched, w);
	U8(c->status, m, status, w);
	U8(c->read_state, m, read_state, w);
	U8(c->write_state, m, write_state, w);
	U8(c->write_latch, m, write_latch, w);
	U8(c->rw_mode, m, rw_mode, w);
	U8(c->mode, m, mode, w);
	U8(c->bcd, m, bcd, w);
	U8(c->gate, m, gate, w);
	c->count_load_time = m->count_load_time;
	return 0;
}

static int dec_kstate(const PbKstate *m, struct vmm__vm_kstate *ks)
{
	int r;

	if (!m)
		return bad("kstate missing");
	if (!m->clock)
		return bad("kstate.clock missing");
	ks->clock.clock = m->clock->clock;
	ks->clock.flags = m->clock->flags;
	ks->clock.realtime = m->clock->realtime;
	ks->clock.host_tsc = m->clock->host_tsc;
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
	if ((r = dec_vcpus(m, ms)) || (r = dec_kstate(m->kstate, &ms->kstate)))
		return r;
	return dec_devices(m, ms);
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
