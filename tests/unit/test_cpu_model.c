/* CPU models and CPU compatibility, on the fake kernel (whose host CPUID has AVX-512, SHA,
 * GFNI, VAES, VMX and SVM): each model gives the vCPUs what it should and hides nested
 * virtualization; a snapshot or migration whose guest saw a feature this host lacks, or
 * ran at a TSC rate this host cannot give, is refused with VMM_ECPU naming the cause,
 * unless the caller allows the mismatch. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "migrate_util.h"
#include "libvmm/state_codec.h"

#define BIT(n) (1u << (n))

static struct kvm_cpuid_entry2 leaf(uint32_t fn, uint32_t sub)
{
	struct kvm_cpuid_entry2 e;

	memset(&e, 0, sizeof(e));
	if (fake_kvm_vcpu_cpuid(0, fn, sub, &e))
		fail_msg("vCPU 0 has no CPUID leaf 0x%x.%u", fn, sub);
	return e;
}

static struct vmm_vm *vm_with_model(const char *model, int *err)
{
	struct vmm_vm_config cfg;
	struct vmm_vm *vm = NULL;

	fake_kvm_install();
	vmm_vm_config_init(&cfg);
	cfg.mem_size = 16 << 20;
	cfg.cpu_model = model;
	*err = vmm_vm_create(&cfg, &vm);
	return vm;
}

/* host: everything the host has, but neither VMX nor SVM (nested state is not saved). */
static void host_model_hides_nested(void **state)
{
	int err;
	struct vmm_vm *vm = vm_with_model(NULL, &err);

	(void)state;
	assert_int_equal(err, 0);
	assert_int_equal(leaf(1, 0).ecx & BIT(5), 0);          /* VMX */
	assert_int_equal(leaf(0x80000001, 0).ecx & BIT(2), 0); /* SVM */
	assert_true(leaf(7, 0).ebx & BIT(16));                  /* AVX-512F stays */
	assert_true(leaf(7, 0).ebx & BIT(29));                  /* SHA stays */
	assert_string_equal(vmm_vm_cpu_model(vm), "host");
	vmm_vm_destroy(vm);
	vm = vm_with_model("host", &err);
	assert_int_equal(err, 0);
	assert_int_equal(leaf(1, 0).ecx & BIT(5), 0);
	vmm_vm_destroy(vm);
}

static void v2_has_no_avx(void **state)
{
	int err;
	struct vmm_vm *vm = vm_with_model("x86-64-v2", &err);
	struct kvm_cpuid_entry2 e;

	(void)state;
	assert_int_equal(err, 0);
	e = leaf(1, 0);
	assert_true(e.ecx & BIT(20));         /* SSE4.2 */
	assert_true(e.ecx & BIT(23));         /* POPCNT */
	assert_true(e.ecx & BIT(13));         /* CMPXCHG16B */
	assert_int_equal(e.ecx & BIT(28), 0); /* AVX */
	assert_int_equal(e.ecx & BIT(26), 0); /* XSAVE */
	assert_int_equal(e.ecx & BIT(25), 0); /* AES: not in the level */
	assert_int_equal(e.ecx & BIT(5), 0);  /* VMX */
	assert_int_equal(e.eax, 0x00a20f12);  /* family, model, stepping kept */
	assert_int_equal(leaf(0, 0).ebx, 0x68747541); /* vendor kept */
	assert_int_equal(leaf(7, 0).ebx, 0);
	assert_int_equal(leaf(7, 0).ecx, 0);
	assert_int_equal(leaf(7, 1).eax, 0);
	assert_int_equal(leaf(0xd, 0).eax, 3); /* x87 and SSE state only */
	assert_int_equal(fake_kvm_vcpu_cpuid(0, 0xd, 2, &e), -1); /* no AVX state leaf */
	e = leaf(0x80000001, 0);
	assert_true(e.ecx & BIT(0));          /* LAHF/SAHF */
	assert_int_equal(e.ecx & BIT(5), 0);  /* LZCNT: v3 */
	assert_int_equal(e.ecx & BIT(2), 0);  /* SVM */
	assert_true(e.edx & BIT(29));         /* long mode */
	assert_true(e.edx & BIT(20));         /* NX */
	assert_true(leaf(0x40000001, 0).eax != 0); /* KVM's paravirtual features kept */
	assert_string_equal(vmm_vm_cpu_model(vm), "x86-64-v2");
	vmm_vm_destroy(vm);
}

static void v3_has_avx2_not_avx512(void **state)
{
	int err;
	struct vmm_vm *vm = vm_with_model("x86-64-v3", &err);
	struct kvm_cpuid_entry2 e;

	(void)state;
	assert_int_equal(err, 0);
	e = leaf(1, 0);
	assert_true(e.ecx & BIT(28));         /* AVX */
	assert_true(e.ecx & BIT(12));         /* FMA */
	assert_true(e.ecx & BIT(26));         /* XSAVE */
	assert_int_equal(e.ecx & BIT(5), 0);
	e = leaf(7, 0);
	assert_int_equal(e.ebx, BIT(3) | BIT(5) | BIT(8)); /* BMI1, AVX2, BMI2 */
	assert_int_equal(e.ecx, 0);                        /* no GFNI, VAES */
	e = leaf(0xd, 0);
	assert_int_equal(e.eax, 7);                        /* x87, SSE, AVX */
	assert_int_equal(e.ecx, 576 + 256);                /* XSAVE area for those */
	assert_int_equal(leaf(0xd, 2).eax, 256);
	assert_int_equal(fake_kvm_vcpu_cpuid(0, 0xd, 5, &e), -1);
	assert_true(leaf(0x80000001, 0).ecx & BIT(5));     /* LZCNT */
	vmm_vm_destroy(vm);
	vm = vm_with_model("x86-64-v4", &err);
	assert_int_equal(err, 0);
	assert_true(leaf(7, 0).ebx & BIT(16));             /* AVX-512F */
	assert_int_equal(leaf(7, 0).ebx & BIT(29), 0);     /* SHA: no level has it */
	assert_int_equal(leaf(0xd, 0).eax, 0xe7);
	vmm_vm_destroy(vm);
}

static void unknown_model_einval(void **state)
{
	int err;

	(void)state;
	assert_null(vm_with_model("pentium", &err));
	assert_int_equal(err, VMM_EINVAL);
	assert_non_null(strstr(vmm_last_error(), "pentium"));
	assert_string_equal(vmm_cpu_model_name(0), "host");
	for (unsigned i = 0; vmm_cpu_model_name(i); i++)
		assert_true(i < 16);
}

/* A model this host cannot give is refused when the VM is created, naming what lacks. */
static void model_host_lacks(void **state)
{
	struct vmm_vm_config cfg;
	struct vmm_vm *vm = NULL;

	(void)state;
	fake_kvm_install();
	fake_kvm_cpuid_clear(7, 0, FAKE_EBX, 5); /* AVX2 */
	fake_kvm_cpuid_clear(7, 0, FAKE_EBX, 8); /* BMI2 */
	vmm_vm_config_init(&cfg);
	cfg.mem_size = 16 << 20;
	cfg.cpu_model = "x86-64-v3";
	assert_int_equal(vmm_vm_create(&cfg, &vm), VMM_ECPU);
	assert_null(vm);
	assert_non_null(strstr(vmm_last_error(), "avx2"));
	assert_non_null(strstr(vmm_last_error(), "bmi2"));
	cfg.cpu_model = "x86-64-v2";
	assert_int_equal(vmm_vm_create(&cfg, &vm), 0);
	vmm_vm_destroy(vm);
	/* kvm_amd on the emulated SVM host lists no VME: a system bit, not required. */
	fake_kvm_install();
	fake_kvm_cpuid_clear(1, 0, FAKE_EDX, 1);
	assert_int_equal(vmm_vm_create(&cfg, &vm), 0);
	vmm_vm_destroy(vm);
}

/* ---------------------------------------------------------------- snapshots */

static char dir[256];

static void make_snapshot(const char *path, const char *model)
{
	struct vmm_snapshot_opts o;
	struct vmm_vm_config cfg;
	struct vmm_vm *vm = NULL;
	static const uint8_t hlt_loop[] = { 0xf4, 0xeb, 0xfd };
	static uint8_t img[8192];
	size_t len = fake_elf64(img, 0x100000, 0x100000, hlt_loop, sizeof(hlt_loop));

	fake_kvm_install();
	vmm_vm_config_init(&cfg);
	cfg.mem_size = 16 << 20;
	cfg.cpu_model = model;
	assert_int_equal(vmm_vm_create(&cfg, &vm), 0);
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), 0);
	assert_int_equal(vmm_vm_start(vm), 0);
	vmm_snapshot_opts_init(&o);
	o.flags = VMM_SNAPSHOT_STOP;
	assert_int_equal(vmm_snapshot_save(vm, path, &o, NULL), 0);
	vmm_vm_destroy(vm);
}

struct logbuf {
	char text[4096];
};

static void log_to(void *opaque, int level, const char *msg)
{
	struct logbuf *b = opaque;
	size_t n = strlen(b->text);

	(void)level;
	snprintf(b->text + n, sizeof(b->text) - n, "%s\n", msg);
}

static int restore(const char *path, int allow, struct logbuf *log, struct vmm_vm **vm)
{
	struct vmm_restore_opts o;

	vmm_restore_opts_init(&o);
	o.allow_cpu_mismatch = allow;
	if (log) {
		o.log = log_to;
		o.log_opaque = log;
	}
	*vm = (void *)1;
	return vmm_snapshot_restore(path, &o, vm);
}

/* The source host had BMI2, SHA and GFNI, this one has none of them. */
static void hide_three(void)
{
	fake_kvm_cpuid_clear(7, 0, FAKE_EBX, 8);
	fake_kvm_cpuid_clear(7, 0, FAKE_EBX, 29);
	fake_kvm_cpuid_clear(7, 0, FAKE_ECX, 8);
}

static void restore_missing_features_ecpu(void **state)
{
	char path[512];
	struct vmm_vm *vm;
	struct logbuf log = { "" };
	const char *e;

	(void)state;
	snprintf(path, sizeof(path), "%s/host.snap", dir);
	make_snapshot(path, NULL);
	fake_kvm_install();
	hide_three();
	assert_int_equal(restore(path, 0, NULL, &vm), VMM_ECPU);
	assert_null(vm);
	e = vmm_last_error();
	assert_non_null(strstr(e, "bmi2"));
	assert_non_null(strstr(e, "sha"));
	assert_non_null(strstr(e, "gfni"));
	assert_null(strstr(e, "avx2")); /* still there */
	/* The caller may take the risk: restored, with the features in a warning. */
	assert_int_equal(restore(path, 1, &log, &vm), 0);
	assert_non_null(vm);
	assert_non_null(strstr(log.text, "bmi2"));
	vmm_vm_destroy(vm);
	/* The same file on the host it came from restores. */
	fake_kvm_install();
	assert_int_equal(restore(path, 0, NULL, &vm), 0);
	vmm_vm_destroy(vm);
}

/* A v2 guest never saw BMI2, SHA or GFNI: it moves to a host without them. And a bit
 * without a name is named by its place. */
static void model_makes_guest_portable(void **state)
{
	char path[512];
	struct vmm_vm *vm;

	(void)state;
	snprintf(path, sizeof(path), "%s/v2.snap", dir);
	make_snapshot(path, "x86-64-v2");
	fake_kvm_install();
	hide_three();
	fake_kvm_cpuid_clear(1, 0, FAKE_ECX, 28); /* AVX too */
	assert_int_equal(restore(path, 0, NULL, &vm), 0);
	assert_string_equal(vmm_vm_cpu_model(vm), "x86-64-v2");
	vmm_vm_destroy(vm);
	fake_kvm_install();
	fake_kvm_cpuid_clear(1, 0, FAKE_ECX, 20); /* SSE4.2: the level needs it */
	assert_int_equal(restore(path, 0, NULL, &vm), VMM_ECPU);
	assert_non_null(strstr(vmm_last_error(), "sse4_2"));
}

static void unnamed_bit_by_place(void **state)
{
	char path[512];
	struct vmm_vm *vm;

	(void)state;
	snprintf(path, sizeof(path), "%s/host3.snap", dir);
	make_snapshot(path, NULL);
	fake_kvm_install();
	fake_kvm_cpuid_clear(0x80000008, 0, FAKE_EBX, 24); /* named: amd_ssbd */
	fake_kvm_cpuid_clear(0x80000008, 0, FAKE_EBX, 30); /* no name */
	fake_kvm_cpuid_clear(7, 0, FAKE_EDX, 4);           /* fsrm */
	fake_kvm_cpuid_clear(7, 1, FAKE_EAX, 5);           /* avx512_bf16 */
	assert_int_equal(restore(path, 0, NULL, &vm), VMM_ECPU);
	assert_non_null(strstr(vmm_last_error(), "amd_ssbd"));
	assert_non_null(strstr(vmm_last_error(), "0x80000008.ebx[30]"));
	assert_non_null(strstr(vmm_last_error(), "fsrm"));
	assert_non_null(strstr(vmm_last_error(), "avx512_bf16"));
}

/* The guest's TSC ran at 2 GHz; this host runs at 2.5 GHz and cannot scale. */
static void restore_tsc_refused_ecpu(void **state)
{
	char path[512];
	struct vmm_vm *vm;
	struct logbuf log = { "" };

	(void)state;
	snprintf(path, sizeof(path), "%s/tsc.snap", dir);
	make_snapshot(path, NULL);
	fake_kvm_install();
	fake_kvm_no_tsc_scaling(2500000);
	assert_int_equal(restore(path, 0, NULL, &vm), VMM_ECPU);
	assert_null(vm);
	assert_non_null(strstr(vmm_last_error(), "TSC"));
	assert_non_null(strstr(vmm_last_error(), "2000000"));
	assert_int_equal(restore(path, 1, &log, &vm), 0);
	assert_non_null(strstr(log.text, "TSC"));
	vmm_vm_destroy(vm);
	/* With scaling, the guest keeps its rate. */
	fake_kvm_install();
	fake_kvm_set_host_tsc_khz(2500000);
	assert_int_equal(restore(path, 0, NULL, &vm), 0);
	assert_int_equal(fake_kvm_vcpu(0)->tsc_khz, 2000000);
	vmm_vm_destroy(vm);
	/* Without scaling but at the same rate (within 250 ppm): nothing to scale. */
	fake_kvm_install();
	fake_kvm_no_tsc_scaling(2000100);
	assert_int_equal(restore(path, 0, NULL, &vm), 0);
	vmm_vm_destroy(vm);
}

/* A guest inside its own hypervisor (EFER.SVME, CR4.VMXE) has nested state that libvmm
 * does not save: saving it is refused, and so is loading a state saved with it (by a
 * libvmm that passed VMX/SVM to guests). */
static void nested_in_use_refused(void **state)
{
	char path[512];
	struct vmm_snapshot_opts o;
	struct vmm__machine_state ms;
	struct vmm_vm *vm = fake_vm_new_loaded(16, 1, NULL, NULL), *dst;
	void *buf;
	uint8_t *bad;
	size_t len, badlen;

	(void)state;
	assert_non_null(vm);
	snprintf(path, sizeof(path), "%s/nested.snap", dir);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_pause(vm), 0);
	assert_int_equal(vmm_vm_state_save(vm, &buf, &len), 0);
	fake_kvm_vcpu(0)->sregs.efer |= 1u << 12;
	assert_int_equal(vmm_vm_resume(vm), 0);
	vmm_snapshot_opts_init(&o);
	assert_int_equal(vmm_snapshot_save(vm, path, &o, NULL), VMM_ECPU);
	assert_non_null(strstr(vmm_last_error(), "nested"));
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_RUNNING);
	vmm_vm_destroy(vm);

	memset(&ms, 0, sizeof(ms));
	assert_int_equal(vmm__machine_state_decode(buf, len, &ms), 0);
	ms.cpus[0].sregs.cr4 |= 1u << 13; /* VMXE */
	assert_int_equal(vmm__machine_state_encode(&ms, &bad, &badlen), 0);
	vmm__machine_state_free(&ms);
	dst = fake_vm_new(16, 1, 0, NULL, NULL);
	assert_non_null(dst);
	assert_int_equal(vmm_vm_state_load(dst, bad, badlen), VMM_ECPU);
	assert_non_null(strstr(vmm_last_error(), "nested"));
	assert_int_equal(vmm_vm_state_load(dst, buf, len), 0);
	vmm_vm_destroy(dst);
	free(buf);
	free(bad);
}

/* ---------------------------------------------------------------- migration */

/* Source and destination in one process on one fake kernel: the destination's VM opens
 * KVM after the source's, so hiding features in between gives it another "host". */
static int migrate_once(int allow, struct mu_rx *x)
{
	struct vmm_migrate_opts o;
	struct vmm_vm *src;
	int r;

	fake_kvm_install();
	src = fake_vm_new_loaded(16, 1, NULL, NULL);
	assert_non_null(src);
	assert_int_equal(vmm_vm_start(src), 0);
	hide_three();
	mu_rx_init(x);
	x->o.no_start = 1;
	x->o.allow_cpu_mismatch = allow;
	mu_rx_start(x);
	vmm_migrate_opts_init(&o);
	r = vmm_migrate_send_to(src, "127.0.0.1", x->port, &o, NULL);
	mu_rx_join(x);
	if (r)
		assert_int_equal(vmm_vm_run_state(src), VMM_VM_RUNNING); /* the source runs on */
	vmm_vm_destroy(src);
	return r;
}

static void receive_missing_features_ecpu(void **state)
{
	struct mu_rx j;

	(void)state;
	assert_true(migrate_once(0, &j) != 0);
	assert_int_equal(j.r, VMM_ECPU);
	assert_null(j.vm);
	assert_non_null(strstr(j.detail, "bmi2"));
	assert_int_equal(migrate_once(1, &j), 0);
	assert_int_equal(j.r, 0);
	vmm_vm_destroy(j.vm);
}

static int setup_dir(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/vmm-cpu-model-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(host_model_hides_nested),
		cmocka_unit_test(v2_has_no_avx),
		cmocka_unit_test(v3_has_avx2_not_avx512),
		cmocka_unit_test(unknown_model_einval),
		cmocka_unit_test(model_host_lacks),
		cmocka_unit_test(restore_missing_features_ecpu),
		cmocka_unit_test(model_makes_guest_portable),
		cmocka_unit_test(unnamed_bit_by_place),
		cmocka_unit_test(restore_tsc_refused_ecpu),
		cmocka_unit_test(nested_in_use_refused),
		cmocka_unit_test(receive_missing_features_ecpu),
	};

	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
