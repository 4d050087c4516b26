/* Live migration: move a running VM to another process or host over TCP with iterative
 * pre-copy. RAM is copied while the guest runs, then what it dirtied, round after round;
 * when the rest fits the downtime limit the guest is paused and the last pages and the
 * machine state follow. Then a hand-over in which at most one side ever runs the guest
 * (migrate/protocol.h): the destination checks and loads everything and says READY
 * (paused); the source answers GO, its last word; only then does the destination start
 * the guest and say STARTED.
 *
 * Outcomes, on each side:
 * - Any failure before the source wrote GO (refused, peer gone, timeout, bad record,
 *   cancel): the source resumes exactly where it was; the destination discards what it
 *   built (it never started).
 * - STARTED arrived: the VM is gone from the source (it stays PAUSED, vmm_vm_migrated()).
 * - The destination's start failed after GO: it discards its copy and says so in
 *   STARTED; the source resumes and returns the destination's error.
 * - Otherwise the outcome is unknown (GO sent but no STARTED; READY sent but neither GO
 *   nor an ERROR came): that side returns VMM_EINDOUBT, keeps the guest paused (source:
 *   PAUSED; destination: loaded, never started) and vmm_vm_in_doubt() is 1. It never
 *   decides alone, since the other side may already run the guest or may be about to.
 *   Whoever drives both sides (the embedder, an operator) finds out where the guest runs
 *   and calls vmm_migrate_resolve(): RUN on exactly one side, DISCARD on the other.
 *   libvirt's Begin/Prepare/Perform/Finish/Confirm leaves an unclear outcome paused on
 *   both sides the same way.
 *
 * Thread rule: a send runs on the calling thread (plus one thread per extra connection,
 * which it owns and joins); vmm_migrate_cancel() may be called from any thread;
 * vmm_migrate_resolve() from any thread once the send or receive has returned. */
#ifndef VMM_MIGRATE_H
#define VMM_MIGRATE_H

#include <stdint.h>

#include "vmm/export.h"
#include "vmm/vm.h"

#ifdef __cplusplus
extern "C" {
#endif

enum vmm_migrate_compress {
	VMM_MIGRATE_COMPRESS_OFF = 0,  /* raw pages, straight from guest RAM to the socket */
	VMM_MIGRATE_COMPRESS_ZSTD = 1, /* every batch zstd-compressed */
	VMM_MIGRATE_COMPRESS_AUTO = 2, /* compressed only where it shrinks the batch */
};

/* One pre-copy round (the last one, final = 1, ran with the guest paused). */
struct vmm_migrate_round {
	uint32_t round;
	int final;
	uint64_t pages;          /* pages sent this round (zero pages included) */
	uint64_t zero_pages;
	uint64_t raw_bytes;      /* page data before compression */
	uint64_t wire_bytes;     /* bytes written to the sockets */
	uint64_t duration_ns;
	double bandwidth_mbps;   /* wire MB/s (10^6) this round */
	double dirty_rate_mbps;  /* MB/s the guest dirtied during the round */
	uint64_t remaining_bytes; /* dirty after the round: what the next one must send */
	uint64_t expected_downtime_ns; /* remaining_bytes at this round's bandwidth */
	uint32_t throttle_pct;   /* vCPU throttle during the round (auto-converge) */
};

struct vmm_migrate_stats {
	uint32_t rounds;
	uint64_t total_ns;       /* connect to STARTED */
	uint64_t downtime_ns;    /* guest paused on the source until STARTED */
	uint64_t expected_downtime_ns; /* the estimate that ended the rounds */
	uint64_t pages;          /* all rounds */
	uint64_t zero_pages;
	uint64_t raw_bytes;
	uint64_t wire_bytes;
	double compression_ratio; /* raw page bytes / page bytes on the wire (1.0: none) */
	uint32_t max_throttle_pct;
	uint64_t state_bytes;    /* machine state */
	/* Where the downtime went (they add up to about downtime_ns; the rest is the last
	 * pages and the round trips): */
	uint64_t pause_ns;       /* stopping the vCPUs */
	uint64_t final_sync_ns;  /* the last dirty-log sync, guest paused */
	uint64_t capture_ns;     /* reading and encoding vCPU and device state */
	uint64_t apply_ns;       /* the destination decoding and loading it */
	uint32_t tls_connections;  /* connections that ran TLS (0: none, plain TCP) */
	uint32_t ktls_connections; /* of those, encrypted by the kernel (kTLS) on send */
	uint64_t disk_bytes;     /* disk image data copied (VMM_MIGRATE_DISKS_COPY; in wire_bytes) */
	uint64_t reserved[2];
};

/* TLS 1.3 with mutual authentication on every connection of a migration (OpenSSL).
 * Either certificates (ca_file, cert_file, key_file: PEM files; or the same PEM text in
 * memory, ca_pem, cert_pem, key_pem, e.g. read before the process dropped the rights to
 * read the files) or a pre-shared key (psk, psk_identity: TLS 1.3 external PSK), not both.
 * A key protected by a passphrase is refused (VMM_EINVAL), never asked for. Each side refuses a peer that does not
 * authenticate, before it reads the peer's hello: nothing is built for a stranger.
 * - Certificates: the peer's chain must lead to ca_file, be valid now, and carry
 *   peer_name (a DNS or IP subjectAltName; the CN only without SANs). One certificate per
 *   host serves both directions: give it the serverAuth and clientAuth key usages.
 * - PSK: both sides hold the same key (at least 16 bytes) and identity.
 * The cipher is AES-128-GCM (TLS_AES_128_GCM_SHA256; AES-256-GCM and ChaCha20-Poly1305
 * are offered after it). Where the kernel has kTLS (the `tls` module), the record
 * encryption moves into the kernel; otherwise OpenSSL encrypts on each connection's
 * thread. A TLS side meeting a plain one fails with VMM_ETLS at once; a refused
 * certificate, name or key is VMM_EAUTH. The strings are read during the call only. */
struct vmm_tls_opts {
	uint32_t size;          /* sizeof, set by vmm_tls_opts_init() */
	const char *ca_file;
	const char *cert_file;
	const char *key_file;
	/* The name the peer's certificate must carry. Sender: default the host given to
	 * vmm_migrate_send_to() (required with vmm_migrate_send()); receiver: required. */
	const char *peer_name;
	const uint8_t *psk;
	size_t psk_len;
	const char *psk_identity;
	/* NUL-terminated PEM text instead of the three files (all three, files or text):
	 * the CA certificates, this side's certificate and its chain, its private key. */
	const char *ca_pem;
	const char *cert_pem;
	const char *key_pem;
	uint64_t reserved[3];
};

VMM_EXPORT void vmm_tls_opts_init(struct vmm_tls_opts *opts);

typedef void (*vmm_migrate_progress_fn)(void *opaque, const struct vmm_migrate_round *round,
					const struct vmm_migrate_stats *total);

struct vmm_migrate_opts {
	uint32_t size;              /* sizeof, set by vmm_migrate_opts_init() */
	uint64_t downtime_limit_ns; /* default 50 ms */
	uint64_t max_bandwidth;     /* bytes/s, 0 = unlimited */
	enum vmm_migrate_compress compress; /* default OFF */
	int auto_converge;          /* throttle the vCPUs while they dirty faster than the link */
	uint32_t connections;       /* parallel TCP connections, 1..16 (default 1) */
	uint32_t max_rounds;        /* then stop-and-copy whatever is left (default 30) */
	uint64_t max_time_ns;       /* likewise after this long (0: no cap) */
	int timeout_ms;             /* the peer silent this long is gone (default 10000) */
	vmm_migrate_progress_fn progress; /* after every round, on the sending thread */
	void *progress_opaque;
	const struct vmm_tls_opts *tls; /* NULL: plain TCP */
	uint64_t reserved0;
	/* VMM_MIGRATE_DISKS_*: 0 shared storage (today), 1 copy. Copy: every virtio disk's
	 * image travels in the stream (round 0 its allocated blocks, later rounds what the
	 * guest wrote, the last ones with the guest paused) into the image the destination's
	 * VM was given (prepare callback): same size, not the same file on one host
	 * (VMM_ESHAPE, VMM_EINVAL, refused before anything is written). Each side keeps its
	 * own image's lock. A failure before GO leaves the source's image untouched and the
	 * destination's holding part of the copy (scratch: the guest never ran on it). */
	uint32_t disks;
	uint32_t disks_pad;
	uint64_t reserved[5];
};

#define VMM_MIGRATE_DISKS_SHARED 0u
#define VMM_MIGRATE_DISKS_COPY 1u

VMM_EXPORT void vmm_migrate_opts_init(struct vmm_migrate_opts *opts);

/* Sends a RUNNING (or PAUSED) VM over connected sockets: fds[0] carries the control
 * exchange, all of them RAM (nfds must equal opts->connections). On success the VM is
 * PAUSED and vmm_vm_migrated() is 1; VMM_EINDOUBT: the VM is PAUSED, vmm_vm_in_doubt() is
 * 1 and vmm_migrate_resolve() decides; any other failure: it is as it was (resumed if it
 * was running) and the error says why. The fds stay the caller's. stats may be NULL. */
VMM_EXPORT int vmm_migrate_send(struct vmm_vm *vm, const int *fds, unsigned nfds,
				const struct vmm_migrate_opts *opts, struct vmm_migrate_stats *stats);
/* The same, connecting opts->connections sockets to host:port first. */
VMM_EXPORT int vmm_migrate_send_to(struct vmm_vm *vm, const char *host, uint16_t port,
				   const struct vmm_migrate_opts *opts,
				   struct vmm_migrate_stats *stats);
/* Makes a send in progress on vm fail with VMM_ECANCELED (the VM resumes). Once the source
 * has let go (GO) a cancel is ignored: the send finishes, succeeds or ends in doubt. Any
 * thread. */
VMM_EXPORT void vmm_migrate_cancel(struct vmm_vm *vm);
/* 1 once vm was migrated away or its copy discarded by vmm_migrate_resolve (it stays
 * PAUSED, or CREATED, and must not run), else 0; 0 while in doubt. */
VMM_EXPORT int vmm_vm_migrated(const struct vmm_vm *vm);
/* 1 while vm's migration outcome is unknown (a send or receive returned VMM_EINDOUBT):
 * the guest is paused, resume and start are refused with VMM_EINDOUBT. Any thread. */
VMM_EXPORT int vmm_vm_in_doubt(const struct vmm_vm *vm);

enum vmm_resolve {
	VMM_RESOLVE_RUN = 1,     /* this side takes the guest: the source resumes it, the
				  * destination starts it (no_start or not) */
	VMM_RESOLVE_DISCARD = 2, /* this side lets go for good: vmm_vm_migrated() becomes 1,
				  * the VM never runs again; destroy it */
};
/* Ends an in-doubt outcome on this side. Call RUN on exactly one side and DISCARD on the
 * other (the library cannot know which side the guest ran on, if any: the other side may
 * have started it; check the guest or the peer first). VMM_ESTATE if vm is not in doubt,
 * VMM_EINVAL for another `how`; a failed RUN leaves vm in doubt. Any thread. */
VMM_EXPORT int vmm_migrate_resolve(struct vmm_vm *vm, enum vmm_resolve how);

struct vmm_receive_opts {
	uint32_t size;
	vmm_serial_fn serial_out; /* as in struct vmm_vm_config, for the arriving VM */
	void *serial_opaque;
	vmm_log_fn log;
	void *log_opaque;
	int timeout_ms;           /* default 10000: the source silent this long is gone */
	int no_start;             /* 1: leave the VM CREATED (loaded) instead of running it */
	/* Refuse VMs larger than this. 0: the memory this host has available when the
	 * source says hello (MemAvailable), never more than VMM_MEM_MAX. */
	uint64_t max_mem_size;
	/* Refuse VMs with more vCPUs. 0: what KVM recommends on this host (KVM_CAP_NR_VCPUS,
	 * its online CPUs); a larger value allows overcommit up to KVM_CAP_MAX_VCPUS and
	 * VMM_VCPUS_MAX. */
	uint32_t max_vcpus;
	/* As in struct vmm_restore_opts: 0 refuses (VMM_ECPU) a VM whose CPU features or TSC
	 * rate this host cannot give it, 1 takes it anyway with a warning. */
	int allow_cpu_mismatch;
	/* Called once the arriving VM is built (CREATED, RAM empty) and before any RAM or
	 * state is applied, on the receiving thread: register the embedder's port/MMIO
	 * handlers and device state hooks here (vmm_vm_register_*). A non-zero return (a
	 * VMM_E* code) refuses the migration; the source keeps running. Without it, a
	 * stream carrying an embedder device's state (vmm_vm_register_device_state()) is
	 * refused with VMM_ESTATEDATA naming the device, before the commit. */
	vmm_prepare_fn prepare;
	void *prepare_opaque;
	/* NULL: plain TCP. Set: every connection must complete a TLS handshake and
	 * authenticate (struct vmm_tls_opts) before its preamble is even read; one that does
	 * not, or a plain one, is dropped like any stray (a plain libvmm source is told
	 * VMM_ETLS first), and the receiver keeps listening. */
	const struct vmm_tls_opts *tls;
	uint64_t reserved[4];
};

VMM_EXPORT void vmm_receive_opts_init(struct vmm_receive_opts *opts);

/* Accepts one incoming migration on a listening TCP socket (its extra connections too),
 * builds the VM, calls opts->prepare, receives it and, once the source let go (GO), starts
 * it (unless no_start: then it is the caller's to start). VMM_EINDOUBT: READY went out but
 * neither GO nor the source's ERROR came back; *out is the loaded, never-started VM,
 * vmm_vm_in_doubt() is 1, and the caller must resolve it (vmm_migrate_resolve) and destroy
 * it. On any other failure the half-built VM is discarded, the source is told why, and
 * *out is NULL. A VM above max_mem_size or max_vcpus is refused with VMM_ESHAPE naming
 * the figure, before anything is allocated. A connection that is not a libvmm stream
 * (wrong magic, closed or silent past timeout_ms before its preamble), or a HELLO that
 * belongs to no migration accepted here, is closed and logged, and the receiver keeps
 * listening; the first connection is waited for without a deadline, the extra ones for
 * timeout_ms each. */
VMM_EXPORT int vmm_migrate_receive(int listen_fd, const struct vmm_receive_opts *opts,
				   struct vmm_vm **out);
/* Binds addr:port (IPv4 or IPv6 literal, or a name), then as vmm_migrate_receive. */
VMM_EXPORT int vmm_migrate_receive_at(const char *addr, uint16_t port,
				      const struct vmm_receive_opts *opts, struct vmm_vm **out);

#ifdef __cplusplus
}
#endif
#endif
