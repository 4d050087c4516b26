/* Snapshots: a VM saved to a file and brought back, in this or another process.
 *
 * A snapshot file holds the VM's shape, its complete machine state and its RAM. RAM is
 * either an image at a page-aligned offset (the default: never-touched and zero pages are
 * holes in a sparse file, and a lazy restore maps it copy-on-write) or zstd batches
 * (VMM_SNAPSHOT_COMPRESS: smaller, not mappable). An incremental snapshot holds only the
 * pages dirtied since its parent. Files are written under a temporary name and renamed
 * only when complete and synced.
 *
 * Thread rule: one call at a time per VM, from its controlling thread. */
#ifndef VMM_SNAPSHOT_H
#define VMM_SNAPSHOT_H

#include <stdint.h>

#include "vmm/export.h"
#include "vmm/vm.h"

#ifdef __cplusplus
extern "C" {
#endif

enum vmm_snapshot_flags {
	VMM_SNAPSHOT_COMPRESS = 1u << 0,    /* RAM as zstd batches */
	VMM_SNAPSHOT_LIVE = 1u << 1,        /* write RAM while the guest runs, pause at the end */
	VMM_SNAPSHOT_INCREMENTAL = 1u << 2, /* only pages dirtied since the parent snapshot */
	VMM_SNAPSHOT_STOP = 1u << 3,        /* leave the VM STOPPED afterwards */
	VMM_SNAPSHOT_TRACK = 1u << 4,       /* keep dirty tracking on, for a later incremental */
};

struct vmm_snapshot_opts {
	uint32_t size;         /* sizeof, set by vmm_snapshot_opts_init() */
	uint32_t flags;        /* enum vmm_snapshot_flags */
	/* VMM_SNAPSHOT_INCREMENTAL: the previous snapshot in the chain, a path like `path`
	 * (relative to the cwd). The file records it relative to its own directory (an
	 * absolute one stays absolute), so a restore finds it from any cwd, and a chain
	 * whose files move together keeps working. */
	const char *parent;
	int compress_level;    /* zstd level (default 1) */
	uint32_t live_max_rounds;  /* default 8 */
	uint64_t live_target_pause_ns; /* stop the rounds when the rest fits (default 20 ms) */
	/* Permission bits of the new file (0: 0600, owner only: it holds guest memory). The
	 * process's umask applies, as to any file it creates; bits outside 0777 are
	 * VMM_EINVAL. The file has these from its creation, under its temporary name. */
	uint32_t file_mode;
	uint32_t reserved_pad;
	/* Encryption at rest: a 32-byte AES-256 key (key_len 32), or NULL and 0 for a plain
	 * file. The whole file (RAM, machine state, metadata) is sealed with AES-256-GCM in
	 * 1 MiB chunks under a key derived from this one and a random per-file salt; restore
	 * needs the same key. Compressed files can be encrypted (compress, then encrypt);
	 * incremental ones cannot (VMM_EINVAL). The plain file is built in memory (a memfd,
	 * never on disk) and encrypted after the guest is resumed: the save needs memory for
	 * it (up to the snapshot's size, less for zero pages). The key is read during the
	 * call only. */
	const void *key;
	size_t key_len;
	/* 1: the file carries every virtio disk's image too (its allocated blocks, written
	 * with the guest paused, after RAM), so that one file restores the whole machine; a
	 * restore writes it, in place, into the image the restored VM's disk names (same
	 * size, else VMM_ESHAPE): the section is checked whole first, so a damaged one is
	 * refused (VMM_ECORRUPT) before a byte is written; an I/O error while writing leaves
	 * the image partly written. Written with the guest paused, after RAM. Not with
	 * VMM_SNAPSHOT_INCREMENTAL (VMM_EINVAL). 0: the disks are not in the file (copy the
	 * images beside it). */
	uint32_t disks;
	uint32_t disks_pad;
	uint64_t reserved[4];
};

struct vmm_snapshot_stats {
	uint64_t total_ns;      /* the whole call */
	uint64_t pause_ns;      /* how long the guest was paused */
	uint64_t file_bytes;    /* bytes of the finished file (logical size) */
	uint64_t ram_bytes;     /* RAM payload written, all rounds */
	uint64_t pages_written;
	uint64_t zero_pages;    /* skipped: never touched or all zeros */
	uint32_t rounds;        /* live: RAM passes, the last one paused */
	uint64_t reserved[8];
};

VMM_EXPORT void vmm_snapshot_opts_init(struct vmm_snapshot_opts *opts);

/* Saves a RUNNING or PAUSED VM to path. Without VMM_SNAPSHOT_LIVE the VM is paused for the
 * whole save. Afterwards it is back in the state it was in (or STOPPED with
 * VMM_SNAPSHOT_STOP). On any failure nothing exists under path, the VM is as it was, and
 * the error says why (VMM_ENOSPC, VMM_EIO, ...). stats may be NULL. */
VMM_EXPORT int vmm_snapshot_save(struct vmm_vm *vm, const char *path,
				 const struct vmm_snapshot_opts *opts,
				 struct vmm_snapshot_stats *stats);

enum vmm_restore_mode {
	VMM_RESTORE_EAGER = 0, /* read RAM into fresh memory */
	VMM_RESTORE_LAZY = 1,  /* map the file's RAM copy-on-write; pages load on first touch */
	VMM_RESTORE_UFFD = 2,  /* fresh RAM filled on first touch through userfaultfd, each
				* page checked against the file's page hash first */
};
/* VMM_RESTORE_UFFD: RAM is fresh memory (as eager) registered with userfaultfd; a thread
 * of the VM's (joined by vmm_vm_destroy) reads each page the guest or the library first
 * touches from the file, checks its XXH3 hash against the file's table, and only then
 * gives it to the guest. A page that fails (damaged: VMM_ECORRUPT; the file cut short
 * since: VMM_ETRUNCATED; a read error: VMM_EIO) never reaches the guest: the VM stops
 * (vmm_vm_wait reports VMM_EXIT_ERROR with that code as status and the page in detail;
 * a VM not yet started is STOPPED and cannot start), vmm_vm_mem_read/write over that page
 * return the error, and vmm_snapshot_save / vmm_migrate_send refuse the VM. Other pages
 * read as they should. No thread is left waiting: the faulting vCPU is released only
 * after its stop is signalled, and leaves KVM_RUN before running on the page. A snapshot
 * or migration of such a VM first loads every page still missing, in file order. The
 * file is held open (a duplicate descriptor) until the VM is destroyed; it must not be
 * changed meanwhile (changes show as failed pages, not as a SIGBUS). Needs userfaultfd
 * (root, access to /dev/userfaultfd, or vm.unprivileged_userfaultfd=1): without it the
 * restore falls back to eager with a warning through log. Files without page hashes
 * (compressed, or an increment's base that is one) and encrypted files restore eagerly,
 * as with VMM_RESTORE_LAZY. The increments of a chain are applied through the pager. */
/* A lazily restored VM reads its snapshot file for as long as it lives: the file must not
 * be written, truncated or copied over until the VM is destroyed (deleting it, or renaming
 * another file over its name, is fine: the VM keeps the file it opened). libvmm takes a
 * read lease on it where the file system and the process's rights allow (F_SETLEASE: an
 * open for writing then waits up to /proc/sys/fs/lease-break-time; the lease has no
 * owner, so its break sends the process no SIGIO) and remembers its size and mtime. A
 * change it sees makes the library's own reads of guest RAM fail instead of returning
 * other pages or raising SIGBUS: vmm_vm_mem_read/write, vmm_snapshot_save and
 * vmm_migrate_send return VMM_ETRUNCATED (the file got shorter) or VMM_ECORRUPT (written,
 * or opened for writing). The guest itself cannot be protected: a page it has not touched
 * yet comes from the file as it is then, and one past a truncated end stops its vCPU with
 * a KVM error. Guest RAM is never inherited by a child the embedder forks
 * (MADV_DONTFORK), lazily restored or not. */

struct vmm_restore_opts {
	uint32_t size;
	enum vmm_restore_mode mode;
	vmm_serial_fn serial_out; /* as in struct vmm_vm_config */
	void *serial_opaque;
	vmm_log_fn log;
	void *log_opaque;
	/* Called once the VM is built and before its state is loaded, on the restoring
	 * thread: register the embedder's devices and their state hooks here. Non-zero fails
	 * the restore. Without it, a snapshot carrying an embedder device's state is refused
	 * with VMM_ESTATEDATA naming the device. */
	vmm_prepare_fn prepare;
	void *prepare_opaque;
	/* 0 (default): refuse with VMM_ECPU a snapshot whose guest saw CPU features this
	 * host cannot give it (naming them), a TSC rate this host cannot run it at, or a
	 * guest using nested virtualization, whose state is not saved. 1: restore anyway,
	 * with a warning through log (the guest may then fault on a missing instruction). */
	int allow_cpu_mismatch;
	/* The key an encrypted snapshot was saved with (32 bytes), else NULL and 0. An
	 * encrypted file without it, or with another key, is VMM_EKEY; a plain file given a
	 * key is VMM_EKEY too (it cannot be the file the caller encrypted: a swapped file is
	 * refused, not run). Every chunk is authenticated before anything is restored, so a
	 * damaged or altered file is VMM_ECORRUPT with nothing built. An encrypted file is
	 * always restored eagerly (VMM_RESTORE_LAZY falls back to eager): it is decrypted into
	 * memory first, and mapping that would save nothing. */
	const void *key;
	size_t key_len;
	/* Working set (VMM_RESTORE_UFFD only; ignored otherwise). The set file is
	 * "<path>.wset" beside the snapshot given to the restore.
	 * wset_record_ms > 0: unless a valid set file was prefetched, record the pages the VM
	 * faults in from the restore until this long after vmm_vm_start (or until destroy,
	 * if sooner); vmm_vm_destroy writes them to the set file (temporary name, then
	 * renamed), so that the pager never makes faults wait on that write.
	 * wset_prefetch 1: if a set file exists, load its pages in one ascending pass
	 * before the restore returns (each still checked against its hash). A set file that
	 * is damaged or was recorded on another snapshot is ignored with a warning through
	 * log, never trusted. */
	uint32_t wset_record_ms;
	uint32_t wset_prefetch;
	uint64_t reserved[2];
};

VMM_EXPORT void vmm_restore_opts_init(struct vmm_restore_opts *opts);

/* Builds a VM from a snapshot (following an incremental chain to its base), calls
 * opts->prepare on it, then loads its state. The VM is CREATED with everything loaded:
 * vmm_vm_start() continues the guest where it was saved.
 * On bad input (VMM_EMAGIC, VMM_EVERSION, VMM_EFEATURE, VMM_ECORRUPT, VMM_ETRUNCATED,
 * VMM_ESHAPE), or a guest this host cannot run as it ran (VMM_ECPU, see
 * allow_cpu_mismatch), nothing is left behind and *out is NULL. */
VMM_EXPORT int vmm_snapshot_restore(const char *path, const struct vmm_restore_opts *opts,
				    struct vmm_vm **out);

struct vmm_snapshot_info {
	uint32_t size;           /* set by the caller: sizeof(struct vmm_snapshot_info) */
	uint32_t format_major, format_minor;
	uint64_t required_features, optional_features;
	uint64_t mem_size;
	uint32_t vcpus;
	uint32_t flags;          /* enum vmm_snapshot_flags it was written with */
	uint64_t file_bytes;     /* logical size */
	uint64_t disk_bytes;     /* allocated on disk (sparse files use less) */
	uint64_t created_unix_ms;
	char parent[256];        /* incremental: the parent's path as recorded (relative to
				  * this file's directory, or absolute), else "" */
	char library_version[32];
	int verified;            /* 1: every checksum matched (only when asked to verify) */
	uint64_t reserved[8];
};

/* Reads a snapshot's metadata without restoring it; with verify, also checks every
 * checksum (RAM included). An encrypted snapshot is VMM_EKEY: its metadata needs the key. The caller sets info->size (VMM_EINVAL if it is too small for
 * the fields before reserved); only that many bytes are written. Returns 0, or the reason
 * the file is unusable. */
VMM_EXPORT int vmm_snapshot_info(const char *path, int verify, struct vmm_snapshot_info *info);

#ifdef __cplusplus
}
#endif
#endif
