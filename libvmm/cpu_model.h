/* Named CPU models (what CPUID a guest sees) and the CPU compatibility check of a saved
 * guest against this host: the feature words of CPUID, their names, and which bits each
 * model gives. Pure functions on CPUID tables, testable without KVM. */
#ifndef VMM_CPU_MODEL_H
#define VMM_CPU_MODEL_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "libvmm/cpu_state.h"

struct vmm__cpu_model;

/* Longest model name, NUL included. */
#define VMM__CPU_MODEL_NAME_MAX 32

/* The model called name (NULL or "" is "host"), or NULL if there is none. */
const struct vmm__cpu_model *vmm__cpu_model_find(const char *name);
const char *vmm__cpu_model_name(const struct vmm__cpu_model *m);
/* Model i's name, NULL past the last. */
const char *vmm__cpu_model_nth(unsigned i);

/* 0 if the host (its KVM_GET_SUPPORTED_CPUID) has every feature model m requires, else
 * VMM_ECPU naming the missing ones. */
int vmm__cpu_model_check_host(const struct vmm__cpu_model *m, const struct kvm_cpuid2 *sup);

/* Masks c, a copy of the supported table, down to model m: feature bits outside the model
 * cleared, leaves describing features it lacks removed or cleared (c->nent may shrink).
 * Vendor, family and model, caches, topology, address sizes and KVM's own leaves are kept.
 * Nested virtualization (VMX, SVM) is hidden in every model. */
void vmm__cpu_model_apply(const struct vmm__cpu_model *m, struct kvm_cpuid2 *c);

/* Writes into why (NUL-terminated, truncated to len) the features that any of the n saved
 * vCPU states' CPUID has and sup lacks, as "bmi2, sha, 0x80000008.ebx[30]"; returns how
 * many. Bits KVM or libvmm set at run time (OSXSAVE, OSPKE, the hypervisor bit) are not
 * features of the host and are left out. */
unsigned vmm__cpu_missing_features(const struct vmm__cpu_state *cpus, uint32_t n,
				   const struct kvm_cpuid2 *sup, char *why, size_t len);

/* 1 if the vCPU is running a nested hypervisor (EFER.SVME or CR4.VMXE): its nested state
 * (KVM_GET_NESTED_STATE) is not saved by libvmm, so it must not be moved. */
int vmm__cpu_nested_in_use(const struct vmm__cpu_state *st);

#endif
