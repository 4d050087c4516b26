/* The machine-state codec without KVM: a fully populated random state survives
 * encode -> decode field for field, and hostile input (truncated, garbage, bit-flipped,
 * wrong section sizes, counts over the limits) is refused with VMM_ESTATEDATA, never a crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "state.pb-c.h"
#include "libvmm/state_codec.h"

/* What the codec of format 1 writes for test_wire_pinned's state. */
#define WIRE_LEN 47780
#define WIRE_FNV 0x6b36eb33156517edull

/* ---------------------------------------------------------------- random states */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	/* xorshift64*: deterministic, so a failure replays. */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static uint32_t rnd_below(uint32_t n)
{
	return n ? (uint32_t)(rnd() % n) : 0;
}

static void rnd_fill(void *p, size_t n)
{
	uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)rnd();
}

/* Random values in every field the codec carries; zero in the padding it does not, so that
 * a memcmp of two structs compares exactly the carried fields. */
static void rnd_segment(struct kvm_segment *s)
{
	rnd_fill(s, sizeof(*s));
	s->padding = 0;
}

static void rnd_sregs(struct kvm_sregs *s)
{
	rnd_fill(s, sizeof(*s));
	rnd_segment(&s->cs);
	rnd_segment(&s->ds);
	rnd_segment(&s->es);
	rnd_segment(&s->fs);
	rnd_segment(&s->gs);
	rnd_segment(&s->ss);
	rnd_segment(&s->tr);
	rnd_segment(&s->ldt);
	memset(s->gdt.padding, 0, sizeof(s->gdt.padding));
	memset(s->idt.padding, 0, sizeof(s->idt.padding));
}

static void rnd_events(struct kvm_vcpu_events *e)
{
	rnd_fill(e, sizeof(*e));
	e->nmi.pad = 0;
	memset(e->reserved, 0, sizeof(e->reserved));
}

static void rnd_xcrs(struct kvm_xcrs *x)
{
	memset(x, 0, sizeof(*x));
	x->nr_xcrs = rnd_below(KVM_MAX_XCRS + 1);
	x->flags = (uint32_t)rnd();
	for (uint32_t i = 0; i < x->nr_xcrs; i++) {
		x->xcrs[i].xcr = (uint32_t)rnd();
		x->xcrs[i].value = rnd();
	}
}

static void rnd_cpu(struct vmm__cpu_state *st, uint32_t id, int big)
{
	memset(st, 0, sizeof(*st));
	st->id = id;
	rnd_fill(&st->regs, sizeof(st->regs));
	rnd_sregs(&st->sregs);
	st->xsave_size = big ? (1u << 20) : 4096 + rnd_below(8192);
	st->xsave = malloc(st->xsave_size);
	assert_non_null(st->xsave);
	rnd_fill(st->xsave, st->xsave_size);
	rnd_xcrs(&st->xcrs);
	st->nmsrs = big ? 1024 : rnd_below(300);
	st->msrs = calloc(st->nmsrs + 1, sizeof(*st->msrs));
	assert_non_null(st->msrs);
	for (uint32_t i = 0; i < st->nmsrs; i++) {
		st->msrs[i].index = (uint32_t)rnd();
		st->msrs[i].data = rnd();
	}
	rnd_fill(&st->lapic, sizeof(st->lapic));
	rnd_events(&st->events);
	st->mp_state.mp_state = (uint32_t)rnd();
	rnd_fill(&st->debugregs, sizeof(st->debugregs));
	memset(st->debugregs.reserved, 0, sizeof(st->debugregs.reserved));
	st->ncpuid = big ? 256 : 1 + rnd_below(256);
	st->cpuid = calloc(st->ncpuid, sizeof(*st->cpuid));
	assert_non_null(st->cpuid);
	for (uint32_t i = 0; i < st->ncpuid; i++) {
		rnd_fill(&st->cpuid[i], sizeof(st->cpuid[i]));
		memset(st->cpuid[i].padding, 0, sizeof(st->cpuid[i].padding));
	}
	st->tsc_khz = (uint32_t)rnd();
}

static void rnd_chip(struct kvm_irqchip *c, uint32_t id, size_t used)
{
	memset(c, 0, sizeof(*c));
	c->chip_id = id;
	rnd_fill(&c->chip, used);
}

static void rnd_kstate(struct vmm__vm_kstate *ks)
{
	memset(ks, 0, sizeof(*ks));
	ks->clock.clock = rnd();
	ks->clock.flags = (uint32_t)rnd();
	ks->clock.realtime = rnd();
	ks->clock.host_tsc = rnd();
	rnd_chip(&ks->pic_master, KVM_IRQCHIP_PIC_MASTER, sizeof(struct kvm_pic_state));
	rnd_chip(&ks->pic_slave, KVM_IRQCHIP_PIC_SLAVE, sizeof(struct kvm_pic_state));
	rnd_chip(&ks->ioapic, KVM_IRQCHIP_IOAPIC, sizeof(struct kvm_ioapic_state));
	rnd_fill(ks->pit.channels, sizeof(ks->pit.channels));
	ks->pit.flags = (uint32_t)rnd();
}

static void rnd_devs(struct vmm__machine_state *ms, uint32_t n)
{
	ms->ndevs = n;
	ms->devs = calloc(n + 1, sizeof(*ms->devs));
	assert_non_null(ms->devs);
	for (uint32_t i = 0; i < n; i++) {
		struct vmm__dev_blob *d = &ms->devs[i];
		size_t len = 1 + rnd_below(64);

		d->name = calloc(1, len + 1);
		assert_non_null(d->name);
		/* Unique: the index first, then random printable characters. */
		snprintf(d->name, len + 1, "%u", i);
		for (size_t j = strlen(d->name); j < len; j++)
			d->name[j] = (char)('!' + rnd_below(94));
		d->len = rnd_below(3) ? rnd_below(2000) : 0;
		d->data = d->len ? malloc(d->len) : NULL;
		rnd_fill(d->data, d->len);
	}
}

static void rnd_machine(struct vmm__machine_state *ms, uint32_t ncpus, uint32_t ndevs)
{
	memset(ms, 0, sizeof(*ms));
	ms->mem_size = rnd();
	ms->ncpus = ncpus;
	ms->cpus = calloc(ncpus, sizeof(*ms->cpus));
	assert_non_null(ms->cpus);
	for (uint32_t i = 0; i < ncpus; i++)
		rnd_cpu(&ms->cpus[i], i * 7 + rnd_below(7), 0);
	rnd_kstate(&ms->kstate);
	rnd_devs(ms, ndevs);
}

/* ---------------------------------------------------------------- comparison */

static void cmp_cpu(const struct vmm__cpu_state *a, const struct vmm__cpu_state *b)
{
	assert_int_equal(a->id, b->id);
	assert_memory_equal(&a->regs, &b->regs, sizeof(a->regs));
	assert_memory_equal(&a->sregs, &b->sregs, sizeof(a->sregs));
	assert_int_equal(a->xsave_size, b->xsave_size);
	assert_memory_equal(a->xsave, b->xsave, a->xsave_size);
	assert_memory_equal(&a->xcrs, &b->xcrs, sizeof(a->xcrs));
	assert_int_equal(a->nmsrs, b->nmsrs);
	for (uint32_t i = 0; i < a->nmsrs; i++) {
		assert_int_equal(a->msrs[i].index, b->msrs[i].index);
		assert_int_equal(a->msrs[i].data, b->msrs[i].data);
	}
	assert_memory_equal(&a->lapic, &b->lapic, sizeof(a->lapic));
	assert_memory_equal(&a->events, &b->events, sizeof(a->events));
	assert_int_equal(a->mp_state.mp_state, b->mp_state.mp_state);
	assert_memory_equal(&a->debugregs, &b->debugregs, sizeof(a->debugregs));
	assert_int_equal(a->ncpuid, b->ncpuid);
	assert_memory_equal(a->cpuid, b->cpuid, a->ncpuid * sizeof(*a->cpuid));
	assert_int_equal(a->tsc_khz, b->tsc_khz);
}

static void cmp_machine(const struct vmm__machine_state *a, const struct vmm__machine_state *b)
{
	assert_int_equal(a->mem_size, b->mem_size);
	assert_string_equal(a->cpu_model, b->cpu_model);
	assert_int_equal(a->ncpus, b->ncpus);
	for (uint32_t i = 0; i < a->ncpus; i++)
		cmp_cpu(&a->cpus[i], &b->cpus[i]);
	assert_memory_equal(&a->kstate.clock, &b->kstate.clock, sizeof(a->kstate.clock));
	assert_memory_equal(&a->kstate.pic_master, &b->kstate.pic_master,
			    sizeof(a->kstate.pic_master));
	assert_memory_equal(&a->kstate.pic_slave, &b->kstate.pic_slave,
			    sizeof(a->kstate.pic_slave));
	assert_memory_equal(&a->kstate.ioapic, &b->kstate.ioapic, sizeof(a->kstate.ioapic));
	assert_memory_equal(&a->kstate.pit, &b->kstate.pit, sizeof(a->kstate.pit));
	assert_int_equal(a->ndevs, b->ndevs);
	for (uint32_t i = 0; i < a->ndevs; i++) {
		assert_string_equal(a->devs[i].name, b->devs[i].name);
		assert_int_equal(a->devs[i].len, b->devs[i].len);
		if (a->devs[i].len)
			assert_memory_equal(a->devs[i].data, b->devs[i].data, a->devs[i].len);
	}
}

static void roundtrip(const struct vmm__machine_state *ms)
{
	struct vmm__machine_state out;
	uint8_t *buf;
	size_t len;

	assert_int_equal(vmm__machine_state_encode(ms, &buf, &len), 0);
	assert_true(len > 0);
	assert_int_equal(vmm__machine_state_decode(buf, len, &out), 0);
	cmp_machine(ms, &out);
	vmm__machine_state_free(&out);
	free(buf);
}

/* ---------------------------------------------------------------- tests */

static void test_roundtrip_random(void **unused)
{
	for (int iter = 0; iter < 50; iter++) {
		struct vmm__machine_state ms;

		rnd_machine(&ms, 1 + rnd_below(8), rnd_below(8));
		if (iter % 2) /* the CPU model, and its absence (states of older versions) */
			snprintf(ms.cpu_model, sizeof(ms.cpu_model), "x86-64-v%d", 2 + iter % 3);
		roundtrip(&ms);
		vmm__machine_state_free(&ms);
	}
}

/* Every limit at its maximum: 64 vCPUs, 1024 MSRs, 256 CPUID leaves, 16 XCRs, a 1 MiB XSAVE
 * area, 64 devices with 64-character names. */
static void test_roundtrip_limits(void **unused)
{
	struct vmm__machine_state ms;

	rnd_machine(&ms, 1, 64);
	vmm__cpu_state_free(&ms.cpus[0]);
	free(ms.cpus);
	ms.ncpus = VMM_VCPUS_MAX;
	ms.cpus = calloc(ms.ncpus, sizeof(*ms.cpus));
	assert_non_null(ms.cpus);
	for (uint32_t i = 0; i < ms.ncpus; i++)
		rnd_cpu(&ms.cpus[i], i, i == 0);
	ms.cpus[1].xcrs.nr_xcrs = KVM_MAX_XCRS;
	for (uint32_t i = 0; i < ms.ndevs; i++) {
		char *n = realloc(ms.devs[i].name, 65);

		assert_non_null(n);
		memset(n, 'a' + i % 26, 64);
		snprintf(n, 65, "%02u", i);
		n[2] = 'x';
		n[64] = '\0';
		ms.devs[i].name = n;
	}
	roundtrip(&ms);
	vmm__machine_state_free(&ms);
}

/* An empty buffer, a NULL one and an empty message are refused with a reason. */
/* The wire format is pinned: a fixed state encodes to exactly the bytes the codec that
 * wrote tests/golden produced (FNV-1a over the message), so a change to the codec's shape
 * cannot change the format unnoticed. */
static void test_wire_pinned(void **unused)
{
	struct vmm__machine_state ms;
	uint64_t h = 0xcbf29ce484222325ull;
	uint8_t *buf;
	size_t len;

	rng = 0x5eed5eed5eed5eedull;
	rnd_machine(&ms, 2, 3);
	assert_int_equal(vmm__machine_state_encode(&ms, &buf, &len), 0);
	for (size_t i = 0; i < len; i++)
		h = (h ^ buf[i]) * 0x100000001b3ull;
	assert_int_equal(len, WIRE_LEN);
	assert_int_equal(h, WIRE_FNV);
	free(buf);
	vmm__machine_state_free(&ms);
}

static void test_empty(void **unused)
{
	struct vmm__machine_state out;

	assert_int_equal(vmm__machine_state_decode((const uint8_t *)"", 0, &out), VMM_ESTATEDATA);
	assert_non_null(strstr(vmm_last_error(), "mem_size"));
	assert_int_equal(vmm__machine_state_decode(NULL, 0, &out), VMM_ESTATEDATA);
	assert_int_equal(vmm__machine_state_decode(NULL, 10, &out), VMM_EINVAL);
	vmm__machine_state_free(&out);
}

static void encode_small(struct vmm__machine_state *ms, uint32_t ndevs, uint8_t **buf,
			 size_t *len)
{
	rnd_machine(ms, 1 + rnd_below(2), ndevs);
	assert_int_equal(vmm__machine_state_encode(ms, buf, len), 0);
}

/* Without devices the kstate is the last field, so every strict prefix lacks part of a
 * section: each one must be refused. */
static void test_truncated(void **unused)
{
	struct vmm__machine_state ms, out;
	uint8_t *buf;
	size_t len;

	encode_small(&ms, 0, &buf, &len);
	for (size_t n = 0; n < len; n++) {
		uint8_t *copy = malloc(n ? n : 1);

		/* A copy of exactly n bytes, so ASan/valgrind catch any read past the end. */
		memcpy(copy, buf, n);
		assert_int_equal(vmm__machine_state_decode(copy, n, &out), VMM_ESTATEDATA);
		free(copy);
	}
	free(buf);
	vmm__machine_state_free(&ms);
}

static void test_garbage(void **unused)
{
	struct vmm__machine_state out;

	for (int i = 0; i < 20000; i++) {
		size_t n = rnd_below(i < 10000 ? 64 : 4096);
		uint8_t *b = malloc(n ? n : 1);
		int r;

		rnd_fill(b, n);
		r = vmm__machine_state_decode(b, n, &out);
		/* A short buffer can parse, e.g. 08 05 is "major = 5": VMM_EVERSION. */
		if (r != VMM_ESTATEDATA && r != VMM_EVERSION)
			fail_msg("garbage %d (%zu bytes): %s", i, n, vmm_err_name(r));
		free(b);
	}
}

/* Flipped bits, overwritten, inserted and deleted bytes. A mutation may land in a value
 * (a register, a byte of the LAPIC page) and leave a valid state, so success is allowed;
 * a failure must be VMM_ESTATEDATA, or VMM_EVERSION when the mutation hit the major version. */
static uint8_t *mutate(const uint8_t *in, size_t len, size_t *out_len)
{
	size_t n = len + 16;
	uint8_t *b = malloc(n);
	int k = 1 + rnd_below(8);

	memcpy(b, in, len);
	n = len;
	while (k-- > 0 && n > 0) {
		size_t at = rnd_below(n);

		switch (rnd_below(4)) {
		case 0:
			b[at] ^= (uint8_t)(1u << rnd_below(8));
			break;
		case 1:
			b[at] = (uint8_t)rnd();
			break;
		case 2:
			if (n < len + 16) {
				memmove(b + at + 1, b + at, n - at);
				b[at] = (uint8_t)rnd();
				n++;
			}
			break;
		default:
			memmove(b + at, b + at + 1, n - at - 1);
			n--;
			break;
		}
	}
	*out_len = n;
	return b;
}

static void test_mutations(void **unused)
{
	int ok = 0, refused = 0;

	for (int round = 0; round < 10; round++) {
		struct vmm__machine_state ms, out;
		uint8_t *buf;
		size_t len;

		encode_small(&ms, rnd_below(3), &buf, &len);
		for (int i = 0; i < 2000; i++) {
			size_t n;
			uint8_t *m = mutate(buf, len, &n);
			int r = vmm__machine_state_decode(m, n, &out);

			if (r == 0) {
				ok++;
				vmm__machine_state_free(&out);
			} else {
				if (r != VMM_ESTATEDATA && r != VMM_EVERSION)
					fail_msg("mutation %d: %s (%s)", i, vmm_err_name(r),
						 vmm_last_error());
				refused++;
			}
			free(m);
		}
		free(buf);
		vmm__machine_state_free(&ms);
	}
	print_message("mutations: %d decoded, %d refused\n", ok, refused);
	assert_true(refused > 0);
}

/* ---------------------------------------------------------------- crafted bad sections */

/* Encodes ms, expects decode to refuse it with code and a detail containing what. */
static void expect_refused(const struct vmm__machine_state *ms, int code, const char *what)
{
	struct vmm__machine_state out;
	uint8_t *buf;
	size_t len;

	assert_int_equal(vmm__machine_state_encode(ms, &buf, &len), 0);
	assert_int_equal(vmm__machine_state_decode(buf, len, &out), code);
	if (!strstr(vmm_last_error(), what))
		fail_msg("detail \"%s\" does not name \"%s\"", vmm_last_error(), what);
	vmm__machine_state_free(&out);
	free(buf);
}

static void test_bad_counts(void **unused)
{
	struct vmm__machine_state ms;
	struct vmm__cpu_state *c;
	uint32_t saved;

	rnd_machine(&ms, 2, 2);
	c = &ms.cpus[0];

	saved = c->xsave_size;
	c->xsave_size = 4095;
	expect_refused(&ms, VMM_ESTATEDATA, "xsave");
	c->xsave_size = saved;

	c->xsave_size = 0;
	expect_refused(&ms, VMM_ESTATEDATA, "xsave");
	c->xsave_size = saved;
	free(c->xsave);
	c->xsave = calloc(1, (1u << 20) + 1);
	c->xsave_size = (1u << 20) + 1;
	expect_refused(&ms, VMM_ESTATEDATA, "xsave");
	c->xsave_size = saved;

	saved = c->nmsrs;
	free(c->msrs);
	c->msrs = calloc(1025, sizeof(*c->msrs));
	c->nmsrs = 1025;
	expect_refused(&ms, VMM_ESTATEDATA, "msrs");
	c->nmsrs = saved;

	saved = c->ncpuid;
	free(c->cpuid);
	c->cpuid = calloc(257, sizeof(*c->cpuid));
	c->ncpuid = 257;
	expect_refused(&ms, VMM_ESTATEDATA, "cpuid");
	c->ncpuid = 0;
	expect_refused(&ms, VMM_ESTATEDATA, "cpuid");
	c->ncpuid = saved;

	ms.cpus[1].id = ms.cpus[0].id;
	expect_refused(&ms, VMM_ESTATEDATA, "repeated");
	ms.cpus[1].id = ms.cpus[0].id + 1;

	saved = ms.ncpus;
	ms.ncpus = 0;
	expect_refused(&ms, VMM_ESTATEDATA, "vcpus");
	ms.ncpus = saved;

	vmm__machine_state_free(&ms);
}

static void test_bad_devices(void **unused)
{
	struct vmm__machine_state ms;
	char *name;

	rnd_machine(&ms, 1, 65);
	expect_refused(&ms, VMM_ESTATEDATA, "devices");
	ms.ndevs = 2;

	name = ms.devs[1].name;
	ms.devs[1].name = (char *)"";
	expect_refused(&ms, VMM_ESTATEDATA, "device[1]: name");
	ms.devs[1].name = (char *)"1234567890123456789012345678901234567890"
				  "1234567890123456789012345"; /* 65 */
	expect_refused(&ms, VMM_ESTATEDATA, "device[1]: name");
	ms.devs[1].name = NULL;
	expect_refused(&ms, VMM_ESTATEDATA, "device[1]: name missing");
	ms.devs[1].name = ms.devs[0].name;
	expect_refused(&ms, VMM_ESTATEDATA, "repeated");
	ms.devs[1].name = name;
	ms.ndevs = 65;
	vmm__machine_state_free(&ms);

	rnd_machine(&ms, 65, 0);
	expect_refused(&ms, VMM_ESTATEDATA, "vcpus");
	vmm__machine_state_free(&ms);
}

/* Edits the protobuf message itself, for what struct vmm__machine_state cannot express:
 * blob sizes, missing sections, out-of-range narrow fields, another major version. */
typedef void (*edit_fn)(Vmm__State__Machine *m, void *scratch);

static void expect_edit_refused(edit_fn edit, int code, const char *what)
{
	struct vmm__machine_state ms, out;
	static uint8_t scratch[4096];
	Vmm__State__Machine *m, m0;
	Vmm__State__Vcpu *v, v0;
	Vmm__State__Sregs *s, s0;
	Vmm__State__VmKstate *k, k0;
	Vmm__State__Pit *p, p0;
	uint8_t *buf, *buf2;
	size_t len, len2;

	rnd_machine(&ms, 2, 1);
	assert_int_equal(vmm__machine_state_encode(&ms, &buf, &len), 0);
	m = vmm__state__machine__unpack(NULL, len, buf);
	assert_non_null(m);
	/* The edits change values and pointers inside these messages only; put them back
	 * before free_unpacked so that it frees exactly what unpack allocated. */
	v = m->vcpus[0];
	s = v->sregs;
	k = m->kstate;
	p = k->pit;
	m0 = *m;
	v0 = *v;
	s0 = *s;
	k0 = *k;
	p0 = *p;
	edit(m, scratch);
	buf2 = malloc(vmm__state__machine__get_packed_size(m));
	len2 = vmm__state__machine__pack(m, buf2);
	*p = p0;
	*k = k0;
	*s = s0;
	*v = v0;
	*m = m0;
	vmm__state__machine__free_unpacked(m, NULL);

	assert_int_equal(vmm__machine_state_decode(buf2, len2, &out), code);
	if (!strstr(vmm_last_error(), what))
		fail_msg("detail \"%s\" does not name \"%s\"", vmm_last_error(), what);
	free(buf2);
	free(buf);
	vmm__machine_state_free(&ms);
}

static void e_lapic_short(Vmm__State__Machine *m, void *s) { m->vcpus[0]->lapic.len = 1023; }
static void e_lapic_long(Vmm__State__Machine *m, void *s)
{
	m->vcpus[0]->lapic.data = s;
	m->vcpus[0]->lapic.len = 1025;
}
static void e_lapic_none(Vmm__State__Machine *m, void *s) { m->vcpus[0]->has_lapic = 0; }
static void e_pic_short(Vmm__State__Machine *m, void *s) { m->kstate->pic_master.len = 15; }
static void e_pic_long(Vmm__State__Machine *m, void *s)
{
	m->kstate->pic_slave.data = s;
	m->kstate->pic_slave.len = 17;
}
static void e_ioapic_long(Vmm__State__Machine *m, void *s)
{
	m->kstate->ioapic.data = s;
	m->kstate->ioapic.len = sizeof(struct kvm_ioapic_state) + 1;
}
static void e_ioapic_none(Vmm__State__Machine *m, void *s) { m->kstate->has_ioapic = 0; }
static void e_pit_channels(Vmm__State__Machine *m, void *s) { m->kstate->pit->n_channels = 2; }
static void e_no_pit(Vmm__State__Machine *m, void *s) { m->kstate->pit = NULL; }
static void e_no_clock(Vmm__State__Machine *m, void *s) { m->kstate->clock = NULL; }
static void e_no_kstate(Vmm__State__Machine *m, void *s) { m->kstate = NULL; }
static void e_no_regs(Vmm__State__Machine *m, void *s) { m->vcpus[0]->regs = NULL; }
static void e_no_sregs(Vmm__State__Machine *m, void *s) { m->vcpus[0]->sregs = NULL; }
static void e_no_events(Vmm__State__Machine *m, void *s) { m->vcpus[0]->events = NULL; }
static void e_no_dbg(Vmm__State__Machine *m, void *s) { m->vcpus[0]->debugregs = NULL; }
static void e_no_mp(Vmm__State__Machine *m, void *s) { m->vcpus[0]->has_mp_state = 0; }
static void e_no_id(Vmm__State__Machine *m, void *s) { m->vcpus[0]->has_id = 0; }
static void e_no_mem(Vmm__State__Machine *m, void *s) { m->has_mem_size = 0; }
static void e_xcrs(Vmm__State__Machine *m, void *s)
{
	static Vmm__State__Xcr x = VMM__STATE__XCR__INIT, *xp[17];

	for (int i = 0; i < 17; i++)
		xp[i] = &x;
	m->vcpus[0]->n_xcrs = 17;
	m->vcpus[0]->xcrs = xp;
}
static void e_bitmap(Vmm__State__Machine *m, void *s)
{
	static uint64_t words[5];

	m->vcpus[0]->sregs->n_interrupt_bitmap = 5;
	m->vcpus[0]->sregs->interrupt_bitmap = words;
}
static void e_seg_type(Vmm__State__Machine *m, void *s) { m->vcpus[0]->sregs->cs->type = 256; }
static void e_selector(Vmm__State__Machine *m, void *s)
{
	m->vcpus[0]->sregs->tr->selector = 0x10000;
}
static void e_gdt_limit(Vmm__State__Machine *m, void *s)
{
	m->vcpus[0]->sregs->gdt->limit = 0x10000;
}
static void e_event(Vmm__State__Machine *m, void *s) { m->vcpus[0]->events->nmi_pending = 300; }
static void e_pit_mode(Vmm__State__Machine *m, void *s) { m->kstate->pit->channels[2]->mode = 256; }
static void e_major(Vmm__State__Machine *m, void *s) { m->major = 2; }
static void e_model_long(Vmm__State__Machine *m, void *s)
{
	m->cpu_model = "x86-64-v3-with-a-name-longer-than-31";
}
static void e_model_bad(Vmm__State__Machine *m, void *s) { m->cpu_model = "host\n"; }

static void test_bad_sections(void **unused)
{
	expect_edit_refused(e_lapic_short, VMM_ESTATEDATA, "vcpu[0].lapic: 1023 bytes");
	expect_edit_refused(e_model_long, VMM_ESTATEDATA, "cpu_model of 36 bytes");
	expect_edit_refused(e_model_bad, VMM_ESTATEDATA, "cpu_model: byte 0x0a");
	expect_edit_refused(e_lapic_long, VMM_ESTATEDATA, "vcpu[0].lapic: 1025 bytes");
	expect_edit_refused(e_lapic_none, VMM_ESTATEDATA, "lapic missing");
	expect_edit_refused(e_pic_short, VMM_ESTATEDATA, "pic_master: 15 bytes");
	expect_edit_refused(e_pic_long, VMM_ESTATEDATA, "pic_slave: 17 bytes");
	expect_edit_refused(e_ioapic_long, VMM_ESTATEDATA, "ioapic: 217 bytes");
	expect_edit_refused(e_ioapic_none, VMM_ESTATEDATA, "ioapic missing");
	expect_edit_refused(e_pit_channels, VMM_ESTATEDATA, "2 channels");
	expect_edit_refused(e_no_pit, VMM_ESTATEDATA, "pit missing");
	expect_edit_refused(e_no_clock, VMM_ESTATEDATA, "clock missing");
	expect_edit_refused(e_no_kstate, VMM_ESTATEDATA, "kstate missing");
	expect_edit_refused(e_no_regs, VMM_ESTATEDATA, "regs missing");
	expect_edit_refused(e_no_sregs, VMM_ESTATEDATA, "sregs missing");
	expect_edit_refused(e_no_events, VMM_ESTATEDATA, "events missing");
	expect_edit_refused(e_no_dbg, VMM_ESTATEDATA, "debugregs missing");
	expect_edit_refused(e_no_mp, VMM_ESTATEDATA, "mp_state missing");
	expect_edit_refused(e_no_id, VMM_ESTATEDATA, "id missing");
	expect_edit_refused(e_no_mem, VMM_ESTATEDATA, "mem_size missing");
	expect_edit_refused(e_xcrs, VMM_ESTATEDATA, "xcrs: 17");
	expect_edit_refused(e_bitmap, VMM_ESTATEDATA, "interrupt_bitmap");
	expect_edit_refused(e_seg_type, VMM_ESTATEDATA, "vcpu[0].sregs.cs.type: 256");
	expect_edit_refused(e_selector, VMM_ESTATEDATA, "sregs.tr.selector");
	expect_edit_refused(e_gdt_limit, VMM_ESTATEDATA, "sregs.gdt.limit");
	expect_edit_refused(e_event, VMM_ESTATEDATA, "events.nmi_pending: 300");
	expect_edit_refused(e_pit_mode, VMM_ESTATEDATA, "channel[2].mode");
	expect_edit_refused(e_major, VMM_EVERSION, "major version 2");
}

/* A reader skips fields it does not know: a field number from the future decodes fine. */
static void test_unknown_field(void **unused)
{
	struct vmm__machine_state ms, out;
	uint8_t *buf, *big;
	size_t len;
	/* field 100, wire type 2 (length-delimited), 3 bytes; then field 101 varint 7 */
	static const uint8_t extra[] = { 0xa2, 0x06, 0x03, 'n', 'e', 'w', 0xa8, 0x06, 0x07 };

	rnd_machine(&ms, 1, 1);
	assert_int_equal(vmm__machine_state_encode(&ms, &buf, &len), 0);
	big = malloc(len + sizeof(extra));
	memcpy(big, buf, len);
	memcpy(big + len, extra, sizeof(extra));
	assert_int_equal(vmm__machine_state_decode(big, len + sizeof(extra), &out), 0);
	cmp_machine(&ms, &out);
	vmm__machine_state_free(&out);
	free(big);
	free(buf);
	vmm__machine_state_free(&ms);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wire_pinned),
		cmocka_unit_test(test_roundtrip_random),
		cmocka_unit_test(test_roundtrip_limits),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_mutations),
		cmocka_unit_test(test_bad_counts),
		cmocka_unit_test(test_bad_devices),
		cmocka_unit_test(test_bad_sections),
		cmocka_unit_test(test_unknown_field),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
