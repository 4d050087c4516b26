/* --disk and --rng for vmm run, restore and receive: parsed in order, added in that order
 * (a restored or received guest needs its devices in the slots it was started with); and
 * the other options the three share. */
#include <stdio.h>

#include "cli.h"
#include "cli_jail.h"

int cli_devices_parse(struct cli_devices *devs, const char *spec)
{
	if (devs->n == CLI_DEVICES_MAX) {
		fprintf(stderr, "vmm: at most %d devices (--disk, --rng)\n", CLI_DEVICES_MAX);
		return -1;
	}
	devs->d[devs->n].rng = !spec;
	if (spec && cli_parse_disk(spec, devs->d[devs->n].path, sizeof(devs->d[0].path),
				   &devs->d[devs->n].read_only)) {
		fprintf(stderr, "vmm: bad --disk '%s': PATH or PATH,ro\n", spec);
		return -1;
	}
	devs->n++;
	return 0;
}

int cli_devices_add(void *opaque, struct vmm_vm *vm)
{
	const struct cli_devices *devs = opaque;

	for (unsigned i = 0; i < devs->n; i++) {
		int r;

		if (devs->d[i].rng) {
			r = vmm_vm_add_rng(vm, NULL);
		} else {
			struct vmm_disk_opts o;

			vmm_disk_opts_init(&o);
			o.path = devs->d[i].path;
			o.read_only = (uint32_t)devs->d[i].read_only;
			r = vmm_vm_add_disk(vm, &o);
		}
		if (r) {
			cli_fail(devs->d[i].rng ? "--rng" : devs->d[i].path, r);
			return r;
		}
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
	default: /* a jail option, or one getopt_long refused */
		return cli_jail_option(jail, opt, arg);
	}
}
