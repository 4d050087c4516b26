/* Shared pieces of the vmm command: verbs, size parsing, error reporting. */
#ifndef VMM_CLI_H
#define VMM_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/vmm.h"


int cmd_run(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_snapshot_info(int argc, char **argv);
/* vmm receive ADDR:PORT: wait for a live migration, then run the VM like vmm run. */
int cmd_receive(int argc, char **argv);
/* vmm migrate PATH HOST:PORT: the client of vm.migrate, with live progress. */
int cmd_migrate(int argc, char **argv);
/* vmm migrate-resolve PATH run|discard: ends an in-doubt migration on that side. */
int cmd_migrate_resolve(int argc, char **argv);
/* The clients of a running vmm's control socket: argv[0] is the verb (pause, resume,
 * status, shutdown, snapshot). */
int cmd_control(int argc, char **argv);
/* Prints "usage: vmm NAME SYNOPSIS" from main.c's command table to stderr; returns 2. */
int cli_usage(const char *name);

/* Starts vm (CREATED, guest loaded or state restored; one already RUNNING is taken as it
 * is), serves the control API on
 * control_path while it runs (NULL: no socket), waits until it stops (SIGINT/SIGTERM stop
 * it), destroys it and returns the process exit status. Takes ownership of vm. */
int cli_run_foreground(struct vmm_vm *vm, const char *control_path);

/* The control socket when it was bound before a jail (cli_jail_enter_bound()), else -1:
 * cli_run_foreground() and receive's in-doubt wait then serve on it. */
extern int cli_control_fd;
struct cli_jail;
/* Binds control_path (if not NULL) where the caller asked, then enters the jail: step 2's
 * end and step 3 of cli_jail.h. Returns 0, or -1 after printing why. No jail: 0. */
int cli_jail_enter_bound(const struct cli_jail *j, const char *control_path);

/* The sandbox (vmm/sandbox.h), on unless --no-sandbox: cli_sandbox_begin() before the VM
 * is built asks the library to confine its own threads (a forbidden call is reported on
 * stderr, then SIGSYS kills vmm); cli_run_foreground() confines the main thread (and the
 * control server it starts) with the control filter once the VM runs. */
extern int cli_sandbox;
int cli_sandbox_begin(void);

/* A socket file nobody accepts on: left over from a vmm that was killed (or has ended in a
 * jail, which cannot remove it). Anything else at path (a live server, a regular file) is
 * not stale. */
int cli_socket_is_stale(const char *path);

/* "512M", "2G", "4096K", or bytes. Returns 0 and *out, or -1 with *why (if why is not NULL)
 * saying what is wrong: not a size, negative, or too large for 64 bits. */
int cli_parse_size(const char *s, uint64_t *out, const char **why);
/* "HOST:PORT", or "[V6]:PORT" for an IPv6 literal (an unbracketed one is refused as
 * ambiguous), port 1..65535. Returns 0 with host (NUL-terminated) and *port, -1 on garbage
 * or a host that does not fit hostlen. */
int cli_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);
/* "PATH", "PATH,ro" or "PATH,rw" (--disk): the path into path (NUL-terminated) and
 * whether it is read-only. -1 for an empty path or one that does not fit pathlen. */
int cli_parse_disk(const char *s, char *path, size_t pathlen, int *read_only);

/* "tap=NAME[,mac=XX:XX:XX:XX:XX:XX]" (--net): the interface name into name (at most 15
 * bytes, NUL-terminated) and the MAC, if given, into mac (*has_mac 1). -1 on anything
 * else (an empty or long name, a malformed or multicast MAC, an unknown key). */
int cli_parse_net(const char *s, char name[16], uint8_t mac[6], int *has_mac);
/* Opens (creating it if it does not exist; root or CAP_NET_ADMIN for that) the tap
 * interface `name` as IFF_TAP | IFF_NO_PI, the form vmm_vm_add_net() takes. The fd, or -1
 * with a message on stderr. (cli_net.c) */
int cli_tap_open(const char *name);

/* The virtio devices of vmm run and vmm restore (--disk PATH[,ro], --rng, --net
 * tap=NAME[,mac=MAC]), in the order given: a restore must name them in the order the
 * guest was started with. */
#define CLI_DEVICES_MAX 8
enum cli_device_kind { CLI_DEV_DISK, CLI_DEV_RNG, CLI_DEV_NET, CLI_DEV_VSOCK };
struct cli_devices {
	unsigned n;
	struct {
		enum cli_device_kind kind;
		int read_only;
		char path[4096]; /* disk: the image; net: the tap's name */
		int has_mac;
		uint8_t mac[6];
		uint64_t cid;  /* vsock: the guest's CID */
		int vhost_fd;  /* vsock: /dev/vhost-vsock, opened at parse (before any sandbox) */
	} d[CLI_DEVICES_MAX];
};
/* Adds a --disk (spec) or an --rng (spec NULL); -1 with a message on stderr. */
int cli_devices_parse(struct cli_devices *devs, const char *spec);
/* Adds a --net; -1 with a message on stderr. */
int cli_devices_parse_net(struct cli_devices *devs, const char *spec);
/* Adds a --vsock CID, opening /dev/vhost-vsock now (before the jail and the sandbox);
 * -1 with a message on stderr. */
int cli_devices_parse_vsock(struct cli_devices *devs, const char *spec);
/* Adds them to vm (a vmm_prepare_fn for restore: opaque is the struct cli_devices). */
int cli_devices_add(void *opaque, struct vmm_vm *vm);

/* The options vmm run, restore and receive share (--no-sandbox, the devices, the jail),
 * for their getopt_long tables; CLI_JAIL_OPTIONS is cli_jail.h's. */
#define CLI_OPT_NET 0x180
#define CLI_OPT_VSOCK 0x181
#define CLI_GUEST_OPTIONS                               \
	{ "no-sandbox", no_argument, NULL, 'S' },       \
	{ "disk", required_argument, NULL, 'D' },       \
	{ "rng", no_argument, NULL, 'R' },              \
	{ "net", required_argument, NULL, CLI_OPT_NET }, \
	{ "vsock", required_argument, NULL, CLI_OPT_VSOCK }, \
	CLI_JAIL_OPTIONS
struct cli_jail;
/* Takes one of them, or an option getopt_long refused: 0, or -1 after printing why
 * (nothing more for a refused one: getopt_long said it). */
int cli_guest_option(struct cli_devices *devs, struct cli_jail *jail, int opt, const char *arg);

/* "512 B", "4.0 KiB", "1.5 GiB" into buf. */
void cli_format_size(uint64_t bytes, char *buf, size_t len);
/* Prints "vmm: what: message (detail)" to stderr and returns 1. */
int cli_fail(const char *what, int err);
/* A snapshot key file: 32 raw bytes, or 64 hex digits (a trailing newline allowed), as
 * `openssl rand 32 > F` or `openssl rand -hex 32 > F` make. Returns 0, or -1 with a
 * message on stderr. */
int cli_read_key(const char *path, uint8_t key[32]);
/* 64 hex digits into key[32]; -1 on anything else. */
int cli_parse_key_hex(const char *hex, size_t len, uint8_t key[32]);
/* The process exit status for a finished VM. */
int cli_exit_status(const struct vmm_exit *ex);
/* vmm_serial_fn writing guest output unbuffered to stdout. */
void cli_serial_stdout(void *opaque, const uint8_t *buf, size_t len);
/* vmm_log_fn printing warnings and errors to stderr (debug too with VMM_DEBUG=1). */
void cli_log_stderr(void *opaque, int level, const char *msg);

#endif
