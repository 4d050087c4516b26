/* CPU models and the compatibility check, both on the CPUID feature words below: the
 * registers whose bits say "this instruction set extension or CPU facility exists". A model
 * is which bits of each word it needs from the host and which it may pass on; the
 * check compares a saved guest's words with the host's. Modelled on QEMU's named CPU models
 * and Cloud Hypervisor's check_cpuid_compatibility. */
#include <stdio.h>
#include <string.h>

#include "libvmm/cpu_model.h"
#include "libvmm/error_internal.h"

#define BIT(n) (1u << (n))
#define IDX KVM_CPUID_FLAG_SIGNIFCANT_INDEX

enum { EAX, EBX, ECX, EDX };

/* The feature words. */
enum {
	W1_ECX,
	W1_EDX,
	W7_EBX,
	W7_ECX,
	W7_EDX,
	W7_1_EAX,
	WD_EAX,   /* XCR0 state components (low half) */
	WD_1_EAX, /* XSAVE instructions */
	W81_ECX,
	W81_EDX,
	W87_EDX,
	W88_EBX,
	NWORDS
};

struct word {
	uint32_t leaf, sub;
	int reg;
	const char *label;     /* for bits without a name: label[bit] */
	uint32_t dynamic;      /* set at run time by KVM or libvmm: not a host feature */
	const char *names[32];
};

/* Names as Linux's /proc/cpuinfo spells them, where it has one. */
static const struct word words[NWORDS] = {
	[W1_ECX] = { 1, 0, ECX, "0x1.ecx",
		     BIT(24) | BIT(27) | BIT(31), /* TSC deadline (KVM_CAP), OSXSAVE, hypervisor */
		     { [0] = "sse3", [1] = "pclmulqdq", [3] = "monitor", [5] = "vmx",
		       [9] = "ssse3", [12] = "fma", [13] = "cx16", [15] = "pdcm", [17] = "pcid",
		       [19] = "sse4_1", [20] = "sse4_2", [21] = "x2apic", [22] = "movbe",
		       [23] = "popcnt", [24] = "tsc_deadline_timer", [25] = "aes",
		       [26] = "xsave", [27] = "osxsave", [28] = "avx", [29] = "f16c",
		       [30] = "rdrand", [31] = "hypervisor" } },
	[W1_EDX] = { 1, 0, EDX, "0x1.edx", BIT(28), /* HTT: topology, not a feature */
		     { [0] = "fpu", [1] = "vme", [2] = "de", [3] = "pse", [4] = "tsc",
		       [5] = "msr", [6] = "pae", [7] = "mce", [8] = "cx8", [9] = "apic",
		       [11] = "sep", [12] = "mtrr", [13] = "pge", [14] = "mca", [15] = "cmov",
		       [16] = "pat", [17] = "pse36", [19] = "clflush", [23] = "mmx",
		       [24] = "fxsr", [25] = "sse", [26] = "sse2", [27] = "ss", [28] = "ht" } },
	[W7_EBX] = { 7, 0, EBX, "0x7.0.ebx", 0,
		     { [0] = "fsgsbase", [1] = "tsc_adjust", [2] = "sgx", [3] = "bmi1",
		       [4] = "hle", [5] = "avx2", [6] = "fdp_excptn_only", [7] = "smep",
		       [8] = "bmi2", [9] = "erms", [10] = "invpcid", [11] = "rtm",
		       [12] = "cqm", [13] = "zero_fcs_fds", [14] = "mpx", [15] = "rdt_a",
		       [16] = "avx512f", [17] = "avx512dq", [18] = "rdseed", [19] = "adx",
		       [20] = "smap", [21] = "avx512ifma", [23] = "clflushopt", [24] = "clwb",
		       [25] = "intel_pt", [26] = "avx512pf", [27] = "avx512er",
		       [28] = "avx512cd", [29] = "sha", [30] = "avx512bw", [31] = "avx512vl" } },
	[W7_ECX] = { 7, 0, ECX, "0x7.0.ecx", BIT(4), /* OSPKE */
		     { [0] = "prefetchwt1", [1] = "avx512vbmi", [2] = "umip", [3] = "pku",
		       [4] = "ospke", [5] = "waitpkg", [6] = "avx512_vbmi2", [7] = "shstk",
		       [8] = "gfni", [9] = "vaes", [10] = "vpclmulqdq", [11] = "avx512_vnni",
		       [12] = "avx512_bitalg", [13] = "tme", [14] = "avx512_vpopcntdq",
		       [16] = "la57", [22] = "rdpid", [24] = "bus_lock_detect",
		       [25] = "cldemote", [27] = "movdiri", [28] = "movdir64b",
		       [29] = "enqcmd", [30] = "sgx_lc", [31] = "pks" } },
	[W7_EDX] = { 7, 0, EDX, "0x7.0.edx", 0,
		     { [2] = "avx512_4vnniw", [3] = "avx512_4fmaps", [4] = "fsrm",
		       [8] = "avx512_vp2intersect", [10] = "md_clear", [14] = "serialize",
		       [15] = "hybrid_cpu", [16] = "tsxldtrk", [18] = "pconfig",
		       [19] = "arch_lbr", [20] = "ibt", [22] = "amx_bf16",
		       [23] = "avx512_fp16", [24] = "amx_tile", [25] = "amx_int8",
		       [26] = "spec_ctrl", [27] = "intel_stibp", [28] = "flush_l1d",
		       [29] = "arch_capabilities", [30] = "core_capabilities",
		       [31] = "spec_ctrl_ssbd" } },
	[W7_1_EAX] = { 7, 1, EAX, "0x7.1.eax", 0,
		       { [0] = "sha512", [1] = "sm3", [2] = "sm4", [4] = "avx_vnni",
			 [5] = "avx512_bf16", [7] = "cmpccxadd", [10] = "fzrm", [11] = "fsrs",
			 [12] = "fsrc", [21] = "amx_fp16", [23] = "avx_ifma", [26] = "lam" } },
	[WD_EAX] = { 0xd, 0, EAX, "0xd.0.eax", 0,
		     { [0] = "xstate_x87", [1] = "xstate_sse", [2] = "xstate_avx",
		       [3] = "xstate_bndregs", [4] = "xstate_bndcsr", [5] = "xstate_opmask",
		       [6] = "xstate_zmm_hi256", [7] = "xstate_hi16_zmm", [9] = "xstate_pkru",
		       [17] = "xstate_amx_tilecfg", [18] = "xstate_amx_tiledata" } },
	[WD_1_EAX] = { 0xd, 1, EAX, "0xd.1.eax", 0,
		       { [0] = "xsaveopt", [1] = "xsavec", [2] = "xgetbv1", [3] = "xsaves",
			 [4] = "xfd" } },
	[W81_ECX] = { 0x80000001, 0, ECX, "0x80000001.ecx", 0,
		      { [0] = "lahf_lm", [1] = "cmp_legacy", [2] = "svm", [3] = "extapic",
			[4] = "cr8_legacy", [5] = "abm", [6] = "sse4a", [7] = "misalignsse",
			[8] = "3dnowprefetch", [9] = "osvw", [10] = "ibs", [11] = "xop",
			[12] = "skinit", [13] = "wdt", [15] = "lwp", [16] = "fma4",
			[17] = "tce", [19] = "nodeid_msr", [21] = "tbm", [22] = "topoext",
			[23] = "perfctr_core", [24] = "perfctr_nb", [26] = "bpext",
			[27] = "ptsc", [28] = "perfctr_llc", [29] = "mwaitx" } },
	/* AMD repeats leaf 1's EDX bits 0-9, 12-17, 23 and 24 here. */
	[W81_EDX] = { 0x80000001, 0, EDX, "0x80000001.edx", 0,
		      { [0] = "fpu", [1] = "vme", [2] = "de", [3] = "pse", [4] = "tsc",
			[5] = "msr", [6] = "pae", [7] = "mce", [8] = "cx8", [9] = "apic",
			[11] = "syscall", [12] = "mtrr", [13] = "pge", [14] = "mca",
			[15] = "cmov", [16] = "pat", [17] = "pse36", [20] = "nx",
			[22] = "mmxext", [23] = "mmx", [24] = "fxsr", [25] = "fxsr_opt",
			[26] = "pdpe1gb", [27] = "rdtscp", [29] = "lm", [30] = "3dnowext",
			[31] = "3dnow" } },
	[W87_EDX] = { 0x80000007, 0, EDX, "0x80000007.edx", 0,
		      { [8] = "invtsc" } },
	[W88_EBX] = { 0x80000008, 0, EBX, "0x80000008.ebx", 0,
		      { [0] = "clzero", [1] = "irperf", [2] = "xsaveerptr", [4] = "rdpru",
			[9] = "wbnoinvd", [12] = "amd_ibpb", [14] = "amd_ibrs",
			[15] = "amd_stibp", [24] = "amd_ssbd", [25] = "virt_ssbd",
			[26] = "amd_ssb_no" } },
};

/* A model: the bits it needs from the host (VM creation fails without them) and the bits
 * it passes on when the host has them. "host" passes everything. */
struct vmm__cpu_model {
	const char *name;
	int baseline; /* a psABI level: also clears the feature leaves the words do not cover */
	uint32_t need[NWORDS];
	uint32_t also[NWORDS];
};

/* The psABI baseline in leaf 1 EDX: FPU, CX8, CMOV, MMX, FXSR, SSE, SSE2. The system
 * facilities every x86-64 CPU has (TSC, MSR, PAE, PGE, APIC, PAT, ...) are passed on but
 * not required: KVM does not always list them (kvm_amd on an emulated SVM host leaves VME
 * out, which a 64-bit guest never uses). */
#define V1_1_EDX (BIT(0) | BIT(8) | BIT(15) | BIT(23) | BIT(24) | BIT(25) | BIT(26))
#define SYS_1_EDX 0x078bfbffu
#define V1_81_EDX (BIT(11) | BIT(20) | BIT(29)) /* syscall, nx, lm */
/* What KVM gives every guest whatever the CPU (x2APIC, TSC deadline: emulated), the
 * run-time bits, and AMD's copies of leaf 1 EDX in 0x80000001 (Intel leaves them 0). */
#define ALSO_1_ECX (BIT(21) | BIT(24) | BIT(27) | BIT(31))
#define ALSO_81_EDX 0x0183f3ffu
#define V2_1_ECX (BIT(0) | BIT(9) | BIT(13) | BIT(19) | BIT(20) | BIT(23))
#define V3_1_ECX (BIT(12) | BIT(22) | BIT(26) | BIT(28) | BIT(29))
#define V3_7_EBX (BIT(3) | BIT(5) | BIT(8))
#define V4_7_EBX (BIT(16) | BIT(17) | BIT(28) | BIT(30) | BIT(31))
#define XCR0_V3 0x7u   /* x87, SSE, AVX */
#define XCR0_V4 0xe7u  /* + opmask, ZMM_Hi256, Hi16_ZMM */

static const struct vmm__cpu_model models[] = {
	{ .name = "host" },
	{ .name = "x86-64-v2", .baseline = 1,
	  .need = { [W1_ECX] = V2_1_ECX, [W1_EDX] = V1_1_EDX, [W81_ECX] = BIT(0),
		    [W81_EDX] = V1_81_EDX },
	  /* No XSAVE at this level (Nehalem): x87 and SSE state through FXSAVE only. */
	  .also = { [W1_ECX] = ALSO_1_ECX & ~BIT(27), [W1_EDX] = SYS_1_EDX,
		    [W81_EDX] = ALSO_81_EDX, [WD_EAX] = 0x3 } },
	{ .name = "x86-64-v3", .baseline = 1,
	  .need = { [W1_ECX] = V2_1_ECX | V3_1_ECX, [W1_EDX] = V1_1_EDX, [W7_EBX] = V3_7_EBX,
		    [WD_EAX] = XCR0_V3, [W81_ECX] = BIT(0) | BIT(5), [W81_EDX] = V1_81_EDX },
	  .also = { [W1_ECX] = ALSO_1_ECX, [W1_EDX] = SYS_1_EDX, [W81_EDX] = ALSO_81_EDX } },
	{ .name = "x86-64-v4", .baseline = 1,
	  .need = { [W1_ECX] = V2_1_ECX | V3_1_ECX, [W1_EDX] = V1_1_EDX,
		    [W7_EBX] = V3_7_EBX | V4_7_EBX, [WD_EAX] = XCR0_V4,
		    [W81_ECX] = BIT(0) | BIT(5), [W81_EDX] = V1_81_EDX },
	  .also = { [W1_ECX] = ALSO_1_ECX, [W1_EDX] = SYS_1_EDX, [W81_EDX] = ALSO_81_EDX } },
};
#define NMODELS (sizeof(models) / sizeof(models[0]))

const struct vmm__cpu_model *vmm__cpu_model_find(const char *name)
{
	if (!name || !*name)
		return &models[0];
	for (size_t i = 0; i < NMODELS; i++)
		if (!strcmp(models[i].name, name))
			return &models[i];
	return NULL;
}

const char *vmm__cpu_model_name(const struct vmm__cpu_model *m)
{
	return m->name;
}

const char *vmm__cpu_model_nth(unsigned i)
{
	return i < NMODELS ? models[i].name : NULL;
}

/* ---------------------------------------------------------------- tables */

static uint32_t *reg_of(struct kvm_cpuid_entry2 *e, int reg)
{
	return reg == EAX ? &e->eax : reg == EBX ? &e->ebx : reg == ECX ? &e->ecx : &e->edx;
}

/* Entry (leaf, sub) of a table; sub counts only where KVM says the index matters. */
static const struct kvm_cpuid_entry2 *find(const struct kvm_cpuid_entry2 *e, uint32_t n,
					   uint32_t leaf, uint32_t sub)
{
	for (uint32_t i = 0; i < n; i++)
		if (e[i].function == leaf && (!(e[i].flags & IDX) || e[i].index == sub))
			return &e[i];
	return NULL;
}

static uint32_t word_of(const struct kvm_cpuid_entry2 *e, uint32_t n, int w)
{
	const struct kvm_cpuid_entry2 *x = find(e, n, words[w].leaf, words[w].sub);

	return x ? *reg_of((struct kvm_cpuid_entry2 *)x, words[w].reg) : 0;
}

/* Appends the names of miss[]'s bits to why; returns how many. */
static unsigned format(const uint32_t miss[NWORDS], char *why, size_t len)
{
	unsigned count = 0;
	size_t at = 0;

	if (len)
		why[0] = 0;
	for (int w = 0; w < NWORDS; w++)
		for (int b = 0; b < 32; b++) {
			char one[48];
			int k;

			if (!(miss[w] & BIT(b)))
				continue;
			if (words[w].names[b])
				snprintf(one, sizeof(one), "%s", words[w].names[b]);
			else
				snprintf(one, sizeof(one), "%s[%d]", words[w].label, b);
			k = snprintf(why + at, at < len ? len - at : 0, "%s%s", count ? ", " : "", one);
			if (k > 0 && at + (size_t)k < len)
				at += (size_t)k;
			else if (len)
				at = len - 1; /* truncated: keep what fits */
			count++;
		}
	return count;
}

int vmm__cpu_model_check_host(const struct vmm__cpu_model *m, const struct kvm_cpuid2 *sup)
{
	uint32_t miss[NWORDS];
	char why[512];

	for (int w = 0; w < NWORDS; w++)
		miss[w] = m->need[w] & ~word_of(sup->entries, sup->nent, w);
	if (!format(miss, why, sizeof(why)))
		return 0;
	return vmm__err(VMM_ECPU, "CPU model %s: this host lacks %s", m->name, why);
}

/* ---------------------------------------------------------------- apply */

/* Leaves that describe one feature each (SGX, Intel PT, Key Locker, AMX tiles, AVX10,
 * SEV): a baseline model has none of them. */
static int feature_leaf(uint32_t leaf)
{
	switch (leaf) {
	case 0x12: case 0x14: case 0x19: case 0x1d: case 0x1e: case 0x24: case 0x8000001f:
		return 1;
	default:
		return 0;
	}
}

/* Leaf 0xD after its XCR0 word was masked: the sub-leaves of components the guest no longer
 * has go, and the largest XSAVE area (ECX of sub-leaf 0) shrinks to what is left. XSS
 * components (sub-leaf 1 ECX/EDX) go with XSAVES, which no baseline passes on. */
static void fix_xsave_leaf(struct kvm_cpuid2 *c)
{
	uint32_t xcr0 = 0, max = 512 + 64, o = 0;
	struct kvm_cpuid_entry2 *d0 = NULL;

	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == 0xd && c->entries[i].index == 0)
			d0 = &c->entries[i];
	if (!d0)
		return;
	xcr0 = d0->eax;
	d0->edx = 0;
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 e = c->entries[i];

		if (e.function == 0xd && e.index == 1)
			e.ecx = e.edx = 0;
		if (e.function == 0xd && e.index >= 2) {
			if (e.index >= 32 || !(xcr0 & BIT(e.index)))
				continue;
			if (e.ebx + e.eax > max)
				max = e.ebx + e.eax;
		}
		c->entries[o++] = e;
	}
	c->nent = o;
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == 0xd && c->entries[i].index == 0) {
			c->entries[i].ecx = max;
			/* KVM sets EBX from XCR0 at run time; until then, the legacy area. */
			c->entries[i].ebx = 512 + 64;
		}
}

void vmm__cpu_model_apply(const struct vmm__cpu_model *m, struct kvm_cpuid2 *c)
{
	uint32_t o = 0;

	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 e = c->entries[i];

		if (m->baseline && feature_leaf(e.function))
			continue;
		for (int w = 0; m->baseline && w < NWORDS; w++)
			if (e.function == words[w].leaf &&
			    (!(e.flags & IDX) || e.index == words[w].sub))
				*reg_of(&e, words[w].reg) &= m->need[w] | m->also[w];
		if (m->baseline && e.function == 7 && e.index >= 1) {
			/* sub-leaf 1's EAX is a word; its other registers and later sub-leaves
			 * hold features of newer CPUs only */
			e.ebx = e.ecx = e.edx = 0;
			if (e.index >= 2)
				e.eax = 0;
		}
		/* Nested virtualization: not offered, its state is never saved. */
		if (e.function == 1)
			e.ecx &= ~BIT(5);
		if (e.function == 0x80000001)
			e.ecx &= ~BIT(2);
		if (e.function == 0x8000000a)
			e.eax = e.ebx = e.ecx = e.edx = 0;
		c->entries[o++] = e;
	}
	c->nent = o;
	if (m->baseline)
		fix_xsave_leaf(c);
}

/* ---------------------------------------------------------------- the check */

unsigned vmm__cpu_missing_features(const struct vmm__cpu_state *cpus, uint32_t n,
				   const struct kvm_cpuid2 *sup, char *why, size_t len)
{
	uint32_t miss[NWORDS] = { 0 };

	for (uint32_t i = 0; i < n; i++)
		for (int w = 0; w < NWORDS; w++)
			miss[w] |= word_of(cpus[i].cpuid, cpus[i].ncpuid, w) &
				   ~word_of(sup->entries, sup->nent, w) & ~words[w].dynamic;
	return format(miss, why, len);
}

int vmm__cpu_nested_in_use(const struct vmm__cpu_state *st)
{
	return (st->sregs.efer & (1ull << 12)) || (st->sregs.cr4 & (1ull << 13));
}
