/* Fuzz target: the control API's request bodies, through the server's own code: this file
 * includes examples/vmm/control_server.c, so what runs is its route lookup, parse_body (the
 * whole body one JSON object, trailing bytes refused) and each body's parser: vm.snapshot
 * (parse_snapshot_body), vm.migrate (control_migrate_parse) and vm.migrate-resolve (its
 * handler, on a VM of the fake kernel with no migration in doubt, so nothing is resolved).
 * The handlers that act (save a snapshot at a fuzzed path, start a migration) are not
 * called. Input: byte 0 picks the endpoint, the rest is the body. */
#include "../../examples/vmm/control_server.c"

#include "fuzz.h"
#include "fake_vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "vm.snapshot", "vm.migrate", "vm.migrate-resolve" };
	static struct control_server srv;
	struct request req = { 0 };
	struct json_object *body;
	char url[64];

	if (!srv.vm) {
		fake_kvm_install();
		srv.vm = fake_vm_new(2, 1, 0, NULL, NULL);
		if (!srv.vm)
			abort();
	}
	if (!size || size - 1 > CONTROL_BODY_MAX)
		return 0;
	snprintf(url, sizeof(url), "%s%s", CONTROL_API_PREFIX, names[data[0] % 3]);
	req.route = find_route(url, MHD_HTTP_METHOD_PUT, &req.rep);
	if (!req.route)
		abort(); /* the table lost a body endpoint */
	req.len = size - 1;
	req.body = malloc(req.len + 1); /* NUL-terminated, as on_request collects it */
	memcpy(req.body, data + 1, req.len);
	req.body[req.len] = 0;
	body = parse_body(&req, &req.rep);
	if (body) {
		if (req.route->fn == handle_snapshot) {
			struct vmm_snapshot_opts opts;
			uint8_t key[32];
			const char *path;

			vmm_snapshot_opts_init(&opts);
			parse_snapshot_body(body, &opts, &path, key, &req.rep);
		} else if (req.route->fn == handle_migrate) {
			struct control_migrate_req mr;
			char why[400];

			control_migrate_parse(body, &mr, why, sizeof(why));
		} else {
			handle_migrate_resolve(&srv, body, &req.rep);
		}
		json_object_put(body);
	}
	json_object_put(req.rep.json);
	free(req.body);
	return 0;
}
