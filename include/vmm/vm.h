/* The VM: create, load a guest, start, pause, resume, wait, destroy; guest memory access,
 * device handlers and state capture for embedders.
 *
 * Thread rule: a struct vmm_vm is used by one controlling thread at a time, except
 * vmm_vm_pause(), vmm_vm_resume(), vmm_vm_stop(), vmm_vm_run_state() and
 * vmm_vm_serial_input(), which any thread may call at any time.
 *
 * Callbacks (serial sink, device handlers, log) run with no libvmm lock held, so they may
 * call back into the library: a serial sink may answer with vmm_vm_serial_input(), a log
 * callback may look at the VM. The serial sink and device handlers run on the VM's own
 * vCPU threads, and from there must not call vmm_vm_pause() or vmm_vm_destroy() on the
 * same VM (the pause would wait for the very vCPU that calls it).
 *
 * Jobs: while vmm_migrate_send(_to), vmm_snapshot_save() or vmm_vm_state_save() works on
 * a VM, that call owns it: vmm_vm_pause(), vmm_vm_resume(), vmm_vm_state_save(),
 * vmm_vm_state_load(), vmm_snapshot_save() and vmm_migrate_send(_to) on the same VM
 * return VMM_EJOB until it returns, so nothing resumes a guest the job relies on being
 * paused. The owner is the VM, not a thread: calls from the job's own callbacks (a
 * migration's progress callback) are refused too. vmm_vm_stop() is never refused; the
 * job then fails (a migration or snapshot of a stopped guest is not taken).
 *
 * The kick signal: to make a vCPU thread leave KVM_RUN (pause, stop, auto-converge),
 * libvmm sends it a signal, SIGRTMIN+6 unless vmm_kick_signal_set() chose another. When
 * the first VM is created, libvmm installs a handler for that signal, process-wide
 * (SA_RESTART), and keeps the one it replaces: a handler the embedder had installed is
 * called from libvmm's for every arrival of the signal, libvmm's kicks included. vCPU
 * threads block every other signal but synchronous faults. Do not change the signal's
 * disposition while a VM exists. */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/export.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vmm_vm;

/* The VM's lifecycle, as vmm_vm_run_state() reports it. */
enum vmm_vm_run_state {
	VMM_VM_CREATED = 1, /* built, guest may be loaded, no vCPU has run */
	VMM_VM_RUNNING = 2,
	VMM_VM_PAUSED = 3,  /* every vCPU parked outside KVM_RUN; state can be captured */
	VMM_VM_STOPPED = 4, /* guest exited, shut down or failed; see vmm_vm_wait() */
};

enum vmm_log_level { VMM_LOG_ERROR = 0, VMM_LOG_WARN = 1, VMM_LOG_INFO = 2, VMM_LOG_DEBUG = 3 };

/* Bytes the guest wrote to COM1. Runs on a vCPU thread with no lock held (it may call
 * vmm_vm_serial_input()); keep it short: the vCPU waits for it. */
typedef void (*vmm_serial_fn)(void *opaque, const uint8_t *buf, size_t len);
typedef void (*vmm_log_fn)(void *opaque, int level, const char *msg);

/* Limits enforced by vmm_vm_create(). */
#define VMM_MEM_MIN (1ull << 20)
#define VMM_MEM_MAX (1ull << 40)
#define VMM_VCPUS_MAX 64

struct vmm_vm_config {
	uint32_t size;        /* sizeof(struct vmm_vm_config), set by vmm_vm_config_init() */
	uint64_t mem_size;    /* guest RAM in bytes, multiple of 4 KiB (default 128 MiB) */
	uint32_t vcpus;       /* default 1 */
	const char *cmdline;  /* guest command line, copied (default "") */
	vmm_serial_fn serial_out; /* COM1 output sink; NULL discards */
	void *serial_opaque;
	vmm_log_fn log;       /* diagnostics (unknown port accesses, skipped MSRs); NULL: none */
	void *log_opaque;
	/* Dirty-page tracking backend for live migration and live/incremental snapshots:
	 * 0 uses KVM's dirty bitmap; a power of two (e.g. 4096) uses a per-vCPU dirty ring
	 * of that many entries (it must be chosen before the vCPUs exist). */
	uint32_t dirty_ring_entries;
	/* The CPU the guest sees, by name (vmm_cpu_model_name() lists them): "host" (the
	 * default, also NULL) is everything this host's KVM supports; "x86-64-v2",
	 * "x86-64-v3" and "x86-64-v4" are the x86-64 psABI levels, for guests that must move
	 * between hosts of different CPU generations. Every model hides nested virtualization
	 * (VMX, SVM): its state would not be saved. An unknown name is VMM_EINVAL, a model
	 * this host cannot give VMM_ECPU. */
	const char *cpu_model;
	uint64_t reserved[8];
};

/* Fills cfg with defaults. Always call it first: fields added later get defaults too. */
VMM_EXPORT void vmm_vm_config_init(struct vmm_vm_config *cfg);

/* Creates a VM in state CREATED: KVM VM, in-kernel irqchip and PIT, guest RAM (memfd),
 * vCPUs (threads start at vmm_vm_start()), COM1 and the exit port at 0xf4.
 * Returns 0 and *out, or VMM_EINVAL (bad size/vCPU count), VMM_ENOKVM, VMM_EKVM, VMM_ENOMEM. */
VMM_EXPORT int vmm_vm_create(const struct vmm_vm_config *cfg, struct vmm_vm **out);

/* Stops the vCPU threads if running and frees everything. NULL is a no-op. */
VMM_EXPORT void vmm_vm_destroy(struct vmm_vm *vm);

/* Loads a kernel into a CREATED VM and sets the boot vCPU's entry state. The format is
 * detected: Linux bzImage (boot protocol >= 2.06, 64-bit entry), multiboot v1 ELF32,
 * or ELF64 (entered in long mode with RSI = Linux boot_params, as vmlinux is).
 * initrd may be NULL. Returns VMM_ENOENT, VMM_EFORMAT, VMM_ETOOBIG, VMM_ESTATE. */
VMM_EXPORT int vmm_vm_load_kernel(struct vmm_vm *vm, const char *kernel_path,
				  const char *initrd_path);
/* The same from memory buffers (initrd may be NULL with initrd_len 0). */
VMM_EXPORT int vmm_vm_load_kernel_image(struct vmm_vm *vm, const void *kernel,
					size_t kernel_len, const void *initrd,
					size_t initrd_len);

/* CREATED -> RUNNING: starts one thread per vCPU. */
VMM_EXPORT int vmm_vm_start(struct vmm_vm *vm);
/* RUNNING -> PAUSED: kicks every vCPU out of KVM_RUN and returns when all are parked with
 * their last I/O completed. Any thread. PAUSED already: 0. VMM_EJOB while a job owns the
 * VM (see "Jobs" above). */
VMM_EXPORT int vmm_vm_pause(struct vmm_vm *vm);
/* PAUSED -> RUNNING. Any thread. RUNNING already: 0. VMM_EJOB while a job owns the VM;
 * VMM_ESTATE once it was migrated away. */
VMM_EXPORT int vmm_vm_resume(struct vmm_vm *vm);
/* Any state but CREATED -> STOPPED with reason VMM_EXIT_HOST (a VM stopped already keeps
 * its first reason). Any thread, also after vmm_vm_wait(). */
VMM_EXPORT int vmm_vm_stop(struct vmm_vm *vm);
/* Where the VM is in its lifecycle (CREATED, RUNNING, PAUSED, STOPPED). Not to be confused
 * with the machine state (registers, devices) of vmm_vm_state_save(). Any thread. */
VMM_EXPORT enum vmm_vm_run_state vmm_vm_run_state(const struct vmm_vm *vm);
VMM_EXPORT const char *vmm_vm_run_state_name(enum vmm_vm_run_state st);
/* The VM's shape as created (or restored, or received). Any thread. */
VMM_EXPORT uint32_t vmm_vm_vcpus(const struct vmm_vm *vm);
/* The guest command line; valid while the VM lives. Any thread. */
VMM_EXPORT const char *vmm_vm_cmdline(const struct vmm_vm *vm);
/* The VM's CPU model ("host", "x86-64-v3", ...): as configured, or as saved in the
 * snapshot or migration it was restored or received from. Valid while the VM lives. Any
 * thread. */
VMM_EXPORT const char *vmm_vm_cpu_model(const struct vmm_vm *vm);
/* The name of CPU model i (0, 1, ...), NULL past the last: what cpu_model accepts. */
VMM_EXPORT const char *vmm_cpu_model_name(unsigned i);

enum vmm_exit_reason {
	VMM_EXIT_NONE = 0,
	VMM_EXIT_GUEST = 1,    /* the guest wrote its status to port 0xf4 */
	VMM_EXIT_SHUTDOWN = 2, /* triple fault or reset request */
	VMM_EXIT_ERROR = 3,    /* KVM could not run the guest (emulation failure, ...) */
	VMM_EXIT_HOST = 4,     /* vmm_vm_stop() */
};

/* Filled whole by vmm_vm_wait(). Fields added later take their room from reserved, so the
 * struct keeps its size and a program built against this header keeps working. */
struct vmm_exit {
	enum vmm_exit_reason reason;
	int status;          /* VMM_EXIT_GUEST: the value written; VMM_EXIT_ERROR from a page
			      * a uffd restore could not verify: its VMM_E* code
			      * (snapshot.h); otherwise -1 */
	char detail[160];    /* human-readable: which exit, vCPU, RIP */
	uint64_t reserved[4]; /* zero */
};

/* Waits until the VM is STOPPED or timeout_ms passes (-1: forever). Returns 0 and fills
 * *ex (may be NULL), VMM_ETIMEDOUT, or VMM_ESTATE if the VM never started. */
VMM_EXPORT int vmm_vm_wait(struct vmm_vm *vm, int timeout_ms, struct vmm_exit *ex);

/* Guest RAM. gpa ranges must lie inside RAM (VMM_ERANGE otherwise). Safe while running,
 * but the guest may be changing the memory concurrently. */
VMM_EXPORT uint64_t vmm_vm_mem_size(const struct vmm_vm *vm);
VMM_EXPORT int vmm_vm_mem_read(struct vmm_vm *vm, uint64_t gpa, void *buf, size_t len);
VMM_EXPORT int vmm_vm_mem_write(struct vmm_vm *vm, uint64_t gpa, const void *buf, size_t len);

/* Bytes for the guest's COM1 receiver (raises its interrupt if enabled). Any thread.
 * Returns the number of bytes accepted (the FIFO holds 64 KiB). */
VMM_EXPORT int vmm_vm_serial_input(struct vmm_vm *vm, const void *buf, size_t len);

/* Device handlers for embedders. addr/len: port or guest-physical range. A read handler
 * fills data[0..size); a write handler consumes it. Register before vmm_vm_start().
 * Returns VMM_EBUSY if the range overlaps a registered one, VMM_ERANGE if an MMIO range
 * overlaps RAM. */
typedef void (*vmm_io_fn)(void *opaque, uint64_t addr, uint8_t *data, uint32_t size,
			  int is_write);
VMM_EXPORT int vmm_vm_register_pio(struct vmm_vm *vm, uint16_t port, uint16_t len,
				   vmm_io_fn fn, void *opaque);
VMM_EXPORT int vmm_vm_register_mmio(struct vmm_vm *vm, uint64_t gpa, uint64_t len,
				    vmm_io_fn fn, void *opaque);

/* Saved state for an embedder's device, so that snapshots and migration carry it. save
 * writes the device's state (any bytes, up to VMM_DEVICE_STATE_MAX) into buf[0..cap) and
 * sets *len to its full length; if that exceeds cap, libvmm calls it again with a buffer
 * of *len bytes. load gets back exactly what save produced, on another VM (maybe another
 * host, another version of the embedder): treat it as untrusted input. Both return 0 or a
 * negative VMM_E* code (VMM_ESTATEDATA for bytes load refuses), which fails the save or
 * load that called them. save runs with the VM paused, on the thread saving it
 * (vmm_vm_state_save, a snapshot, a migration's sender); load on the thread loading into
 * a CREATED VM (vmm_vm_state_load, a restore, a receive). libvmm holds no lock of its own
 * while it calls them. */
typedef int (*vmm_dev_save_fn)(void *opaque, uint8_t *buf, size_t cap, size_t *len);
typedef int (*vmm_dev_load_fn)(void *opaque, const uint8_t *buf, size_t len);
#define VMM_DEVICE_NAME_MAX 48
#define VMM_DEVICE_STATE_MAX (16u << 20)

/* Registers save/load hooks under name (1..VMM_DEVICE_NAME_MAX characters of A-Z a-z 0-9
 * . _ -, unique in the VM); the state is saved under that name and loaded into the device
 * registered under the same name on the other side. Call it on a CREATED VM, with its
 * port/MMIO handlers; on a restored or received VM, from the prepare callback of
 * vmm_restore_opts / vmm_receive_opts, which runs before the state is loaded. When state
 * is loaded, a saved device that is not registered here fails the load with
 * VMM_ESTATEDATA naming it; a registered device with no saved state (it was added since)
 * is left as it is, load not called, and the log callback says so. Returns VMM_EINVAL
 * (bad name, NULL hook), VMM_EBUSY (name taken), VMM_ESTATE (VM not CREATED). One thread
 * at a time, with the other calls that set the VM up. */
VMM_EXPORT int vmm_vm_register_device_state(struct vmm_vm *vm, const char *name,
					    vmm_dev_save_fn save, vmm_dev_load_fn load,
					    void *opaque);

/* Called on a VM that libvmm builds for the embedder (a restore, a received migration)
 * before its state is loaded: the place to register devices (vmm_vm_register_*). Returns 0,
 * or a negative VMM_E* code that fails the restore or receive. */
typedef int (*vmm_prepare_fn)(void *opaque, struct vmm_vm *vm);

/* Complete machine state except RAM (every vCPU's registers, FPU/AVX, MSRs, LAPIC,
 * events, TSC; PIC, IOAPIC, PIT, kvmclock; every device), as one protobuf-encoded blob.
 * The VM must be PAUSED (or STOPPED). *buf is malloc'd; free() it. It is a job: a resume
 * from elsewhere meanwhile gets VMM_EJOB, and so does this call while another job owns the
 * VM. VMM_ECPU if a vCPU runs a nested hypervisor, whose state libvmm does not save. */
VMM_EXPORT int vmm_vm_state_save(struct vmm_vm *vm, void **buf, size_t *len);
/* Loads such a blob into a CREATED VM of the same shape (same vCPU count and memory
 * size); vmm_vm_start() then continues the guest where it was. MSRs this host refuses are
 * skipped and reported through the log callback. Embedder devices are loaded through
 * their hooks (register them first: vmm_vm_register_device_state); one saved but not
 * registered here is VMM_ESTATEDATA naming it. VMM_ESTATEDATA / VMM_ESHAPE on bad input,
 * VMM_ECPU if this host lacks CPU features the guest saw or cannot run its TSC at its rate
 * (the detail names them; snapshot restore and migration receive can allow that), leaving
 * the VM CREATED and unloaded. */
VMM_EXPORT int vmm_vm_state_load(struct vmm_vm *vm, const void *buf, size_t len);

/* Chooses the kick signal (see "The kick signal" above): SIGUSR1, SIGUSR2 or one of
 * SIGRTMIN..SIGRTMAX, else VMM_EINVAL. Process-wide; call it before the first VM is
 * created: afterwards the signal is fixed, and choosing another is VMM_ESTATE. */
VMM_EXPORT int vmm_kick_signal_set(int signo);
/* The kick signal in use, or to be used by the first VM. Any thread. */
VMM_EXPORT int vmm_kick_signal(void);

#ifdef __cplusplus
}
#endif
#endif
