/* vmm pause|resume|status|shutdown|snapshot PATH: clients of the control API that a
 * `vmm run --control PATH` or `vmm restore --control PATH` serves. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "control_client.h"

/* A PUT without a body that answers 204: pause, resume, shutdown. */
static int simple_put(const char *sock, const char *verb, const char *endpoint)
{
	struct control_reply rep;
	int r;

	if (control_call(sock, "PUT", endpoint, NULL, &rep))
		return 1;
	r = rep.status == 204 ? 0 : control_fail(verb, &rep);
	control_reply_free(&rep);
	return r;
}

static int status(const char *sock)
{
	struct control_reply rep;
	int r = 0;

	if (control_call(sock, "GET", "vm.info", NULL, &rep))
		return 1;
	if (rep.status == 200 && rep.json)
		printf("%s\n", json_object_to_json_string_ext(rep.json, JSON_C_TO_STRING_PRETTY |
									  JSON_C_TO_STRING_NOSLASHESCAPE));
	else
		r = control_fail("status", &rep);
	control_reply_free(&rep);
	return r;
}

/* The server resolves paths against its own working directory, not ours. */
static char *absolute(const char *path)
{
	char *cwd, *abs;
	size_t len;

	if (path[0] == '/')
		return strdup(path);
	cwd = getcwd(NULL, 0);
	if (!cwd)
		return NULL;
	len = strlen(cwd) + strlen(path) + 2;
	abs = malloc(len);
	if (abs)
		snprintf(abs, len, "%s/%s", cwd, path);
	free(cwd);
	return abs;
}

static uint64_t stat_u64(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_uint64(v) : 0;
}

static double stat_ms(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

static void print_summary(const char *file, struct json_object *st)
{
	char fsize[32], rsize[32];
	uint64_t rounds = stat_u64(st, "rounds");

	cli_format_size(stat_u64(st, "file_bytes"), fsize, sizeof(fsize));
	cli_format_size(stat_u64(st, "ram_bytes"), rsize, sizeof(rsize));
	printf("%s: %s file, %s of RAM in %llu pages (%llu zero pages skipped), %llu round%s, "
	       "%.1f ms, guest paused %.1f ms\n",
	       file, fsize, rsize, (unsigned long long)stat_u64(st, "pages_written"),
	       (unsigned long long)stat_u64(st, "zero_pages"), (unsigned long long)rounds,
	       rounds == 1 ? "" : "s", stat_ms(st, "total_ms"), stat_ms(st, "pause_ms"));
}

static int snapshot(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "live", no_argument, NULL, 'l' },
		{ "compress", no_argument, NULL, 'z' },
		{ "incremental", required_argument, NULL, 'i' },
		{ "stop", no_argument, NULL, 's' },
		{ "track", no_argument, NULL, 't' },
		{ "with-disks", no_argument, NULL, 'D' },
		{ "json", no_argument, NULL, 'j' },
		{ "key-file", required_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	struct json_object *req = json_object_new_object();
	uint8_t key[32];
	char hex[65];
	char *file = NULL, *parent = NULL;
	struct control_reply rep;
	int c, json = 0, r = 2;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			json_object_object_add(req, "live", json_object_new_boolean(1));
			break;
		case 'z':
			json_object_object_add(req, "compress", json_object_new_boolean(1));
			break;
		case 's':
			json_object_object_add(req, "stop", json_object_new_boolean(1));
			break;
		case 't':
			json_object_object_add(req, "track", json_object_new_boolean(1));
			break;
		case 'D':
			json_object_object_add(req, "with_disks", json_object_new_boolean(1));
			break;
		case 'i':
			free(parent);
			parent = absolute(optarg);
			break;
		case 'j':
			json = 1;
			break;
		case 'k':
			/* The key travels as hex over the control socket (0600, this user's). */
			if (cli_read_key(optarg, key))
				goto out;
			for (int i = 0; i < 32; i++)
				snprintf(hex + 2 * i, 3, "%02x", key[i]);
			json_object_object_add(req, "key", json_object_new_string(hex));
			memset(key, 0, sizeof(key));
			break;
		default:
			goto out;
		}
	}
	if (optind != argc - 2) {
		r = cli_usage("snapshot");
		goto out;
	}
	r = 1;
	file = absolute(argv[optind + 1]);
	if (!file) {
		perror("vmm: snapshot");
		goto out;
	}
	json_object_object_add(req, "path", json_object_new_string(file));
	json_object_object_add(req, "incremental", parent ? json_object_new_string(parent) : NULL);
	if (control_call(argv[optind], "PUT", "vm.snapshot",
			 json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
							     JSON_C_TO_STRING_NOSLASHESCAPE),
			 &rep))
		goto out;
	if (rep.status == 200 && rep.json) {
		r = 0;
		if (json)
			printf("%s\n", json_object_to_json_string_ext(
					       rep.json, JSON_C_TO_STRING_PRETTY |
							 JSON_C_TO_STRING_NOSLASHESCAPE));
		else
			print_summary(argv[optind + 1], rep.json);
	} else {
		r = control_fail("snapshot", &rep);
	}
	control_reply_free(&rep);
out:
	json_object_put(req);
	free(parent);
	free(file);
	return r;
}

int cmd_control(int argc, char **argv)
{
	static const struct {
		const char *verb, *endpoint;
	} simple[] = {
		{ "pause", "vm.pause" },
		{ "resume", "vm.resume" },
		{ "shutdown", "vm.shutdown" },
	};
	const char *verb = argv[0];

	if (!strcmp(verb, "snapshot"))
		return snapshot(argc, argv);
	if (argc != 2 || argv[1][0] == '-')
		return cli_usage(verb);
	if (!strcmp(verb, "status"))
		return status(argv[1]);
	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
		if (!strcmp(verb, simple[i].verb))
			return simple_put(argv[1], verb, simple[i].endpoint);
	return cli_usage(verb);
}
