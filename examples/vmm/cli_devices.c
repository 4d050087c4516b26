/* --disk, --rng and --net for vmm run, restore and receive: parsed in order, added in that
 * order (a restored or received guest needs its devices in the slots it was started
 * with); and the other options the three share. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_jail.h"

static int room(const struct cli_devices *devs)
{
	if (devs->n < CLI_DEVICES_MAX)
		return 0;
	fprintf(stderr, "vmm: at most %d devices (--disk, --rng, --net, --vsock)\n", CLI_DEVICES_MAX);
	return -1;
}

int cli_devices_parse(struct cli_devices *devs, const char *spec)
{
	if (room(devs))
		return -1;
	memset(&devs->d[devs->n], 0, sizeof(devs->d[0]));
	devs->d[devs->n].kind = spec ? CLI_DEV_DISK : CLI_DEV_RNG;
	if (spec && cli_parse_disk(spec, devs->d[devs->n].path, sizeof(devs->d[0].path),
				   &devs->d[devs->n].read_only)) {
		fprintf(stderr, "vmm: bad --disk '%s': PATH or PATH,ro\n", spec);
		return -1;
	}
	devs->n++;
	return 0;
}

int cli_devices_parse_net(struct cli_devices *devs, const char *spec)
{
	char name[16];

	if (room(devs))
		return -1;
	memset(&devs->d[devs->n], 0, sizeof(devs->d[0]));
	devs->d[devs->n].kind = CLI_DEV_NET;
	if (cli_parse_net(spec, name, devs->d[devs->n].mac, &devs->d[devs->n].has_mac)) {
		fprintf(stderr, "vmm: bad --net '%s': tap=NAME[,mac=XX:XX:XX:XX:XX:XX] (a unicast "
			"MAC)\n", spec);
		return -1;
	}
	strcpy(devs->d[devs->n].path, name);
	devs->n++;
	return 0;
}

/* /dev/vhost-vsock is opened as the option is read: before --jail's chroot and the
 * sandbox, neither of which lets the process open device nodes later. */
int cli_devices_parse_vsock(struct cli_devices *devs, const char *spec)
{
	char *end;
	unsigned long long cid;

	if (room(devs))
		return -1;
	errno = 0;
	cid = strtoull(spec, &end, 0);
	if (errno || end == spec || *end || cid < 3 || cid >= 0xffffffffull) {
		fprintf(stderr, "vmm: bad --vsock '%s': a guest CID, 3 .. 4294967294\n", spec);
		return -1;
	}
	memset(&devs->d[devs->n], 0, sizeof(devs->d[0]));
	devs->d[devs->n].kind = CLI_DEV_VSOCK;
	devs->d[devs->n].cid = cid;
	devs->d[devs->n].vhost_fd = open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC);
	if (devs->d[devs->n].vhost_fd < 0) {
		if (errno == ENOENT || errno == ENODEV || errno == ENXIO)
			fprintf(stderr, "vmm: --vsock: this host has no vhost-vsock "
				"(/dev/vhost-vsock; modprobe vhost_vsock)\n");
		else
			fprintf(stderr, "vmm: --vsock: /dev/vhost-vsock: %s\n", strerror(errno));
		return -1;
	}
	snprintf(devs->d[devs->n].path, sizeof(devs->d[0].path), "--vsock %llu", cid);
	devs->n++;
	return 0;
}

static int add_vsock(struct vmm_vm *vm, uint64_t cid, int vhost_fd)
{
	struct vmm_vsock_opts o;
	int r;

	vmm_vsock_opts_init(&o);
	o.guest_cid = cid;
	o.vhost_fd = vhost_fd;
	r = vmm_vm_add_vsock(vm, &o);
	if (r)
		cli_fail("--vsock", r);
	return r;
}

/* The tap is opened here, in the process (and network namespace) that runs the guest;
 * the VM keeps its own copy of the fd. */
static int add_net(struct vmm_vm *vm, const char *name, int has_mac, const uint8_t *mac)
{
	struct vmm_net_opts o;
	int r;

	vmm_net_opts_init(&o);
	o.fd = cli_tap_open(name);
	if (o.fd < 0)
		return VMM_ESYS;
	o.has_mac = (uint32_t)has_mac;
	memcpy(o.mac, mac, 6);
	r = vmm_vm_add_net(vm, &o);
	close(o.fd);
	if (r)
		cli_fail(name, r);
	return r;
}

int cli_devices_add(void *opaque, struct vmm_vm *vm)
{
	const struct cli_devices *devs = opaque;

	for (unsigned i = 0; i < devs->n; i++) {
		int r;

		switch (devs->d[i].kind) {
		case CLI_DEV_RNG:
			r = vmm_vm_add_rng(vm, NULL);
			if (r)
				cli_fail("--rng", r);
			break;
		case CLI_DEV_NET:
			r = add_net(vm, devs->d[i].path, devs->d[i].has_mac, devs->d[i].mac);
			break;
		case CLI_DEV_VSOCK:
			r = add_vsock(vm, devs->d[i].cid, devs->d[i].vhost_fd);
			break;
		default: {
			struct vmm_disk_opts o;

			vmm_disk_opts_init(&o);
			o.path = devs->d[i].path;
			o.read_only = (uint32_t)devs->d[i].read_only;
			r = vmm_vm_add_disk(vm, &o);
			if (r)
				cli_fail(devs->d[i].path, r);
			break;
		}
		}
		if (r)
			return r;
	}
	return 0;
}

int cli_guest_option(struct cli_devices *devs, struct cli_jail *jail, int opt, const char *arg)
{
	switch (opt) {
	case 'S':
		cli_sandbox = 0;
		return 0;
	case 'D':
		return cli_devices_parse(devs, arg);
	case 'R':
		return cli_devices_parse(devs, NULL);
	case CLI_OPT_NET:
		return cli_devices_parse_net(devs, arg);
	case CLI_OPT_VSOCK:
		return cli_devices_parse_vsock(devs, arg);
	default: /* a jail option, or one getopt_long refused */
		return cli_jail_option(jail, opt, arg);
	}
}
