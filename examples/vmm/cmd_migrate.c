/* vmm migrate PATH HOST:PORT: asks the vmm serving PATH to live-migrate its VM (PUT
 * vm.migrate), follows it (GET vm.migration every 100 ms) with a progress bar or a line per
 * round on stderr, and ends with a summary or the final document as JSON. Ctrl-C cancels
 * (until the source lets go). Exit status: 0 migrated, 1 failed (the VM runs on at the
 * source), 3 in doubt (paused on both sides: vmm migrate-resolve decides).
 * vmm migrate-resolve PATH run|discard: PUT vm.migrate-resolve. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "control_client.h"

#define POLL_MS 100
#define EXIT_IN_DOUBT 3
/* After Ctrl-C: how long the migration gets to report that it stopped. */
#define CANCEL_WAIT_MS 15000

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	interrupted = 1;
}

static struct json_object *get(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static uint64_t get_u64(struct json_object *o, const char *key)
{
	struct json_object *v = get(o, key);

	return v ? json_object_get_uint64(v) : 0;
}

static double get_double(struct json_object *o, const char *key)
{
	struct json_object *v = get(o, key);

	return v ? json_object_get_double(v) : 0;
}

static const char *get_string(struct json_object *o, const char *key)
{
	struct json_object *v = get(o, key);

	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

static int parse_uint(const char *opt, const char *s, long min, long max, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (end == s || *end || v < min || v > max) {
		fprintf(stderr, "vmm: bad %s '%s' (%ld..%ld)\n", opt, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

/* The options into a vm.migrate body. 0, or 2 after a usage message. */
static int build_request(int argc, char **argv, struct json_object *req, int *json)
{
	static const struct option opts[] = {
		{ "downtime-ms", required_argument, NULL, 'd' },
		{ "bandwidth", required_argument, NULL, 'b' },
		{ "compress", required_argument, NULL, 'z' },
		{ "connections", required_argument, NULL, 'c' },
		{ "auto-converge", no_argument, NULL, 'a' },
		{ "copy-disks", no_argument, NULL, 'D' },
		{ "max-rounds", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "tls-dir", required_argument, NULL, 'T' },
		{ "psk-file", required_argument, NULL, 'K' },
		{ "tls-peer", required_argument, NULL, 'N' },
		{ NULL, 0, NULL, 0 },
	};
	char host[256], *end;
	uint16_t port;
	double mbps;
	long n;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (parse_uint("--downtime-ms", optarg, 1, 3600000, &n))
				return 2;
			json_object_object_add(req, "downtime_ms", json_object_new_int64(n));
			break;
		case 'b':
			mbps = strtod(optarg, &end);
			if (end == optarg || *end || !(mbps >= 0 && mbps <= 1e6)) {
				fprintf(stderr, "vmm: bad --bandwidth '%s' (MB/s, 0: unlimited)\n",
					optarg);
				return 2;
			}
			json_object_object_add(req, "bandwidth_mbps", json_object_new_double(mbps));
			break;
		case 'z':
			if (strcmp(optarg, "off") && strcmp(optarg, "zstd") && strcmp(optarg, "auto")) {
				fprintf(stderr, "vmm: bad --compress '%s' (off, zstd or auto)\n", optarg);
				return 2;
			}
			json_object_object_add(req, "compress", json_object_new_string(optarg));
			break;
		case 'c':
			if (parse_uint("--connections", optarg, 1, 16, &n))
				return 2;
			json_object_object_add(req, "connections", json_object_new_int64(n));
			break;
		case 'a':
			json_object_object_add(req, "auto_converge", json_object_new_boolean(1));
			break;
		case 'D':
			json_object_object_add(req, "copy_disks", json_object_new_boolean(1));
			break;
		case 'r':
			if (parse_uint("--max-rounds", optarg, 1, 100000, &n))
				return 2;
			json_object_object_add(req, "max_rounds", json_object_new_int64(n));
			break;
		case 'j':
			*json = 1;
			break;
		case 'T':
		case 'K':
		case 'N': {
			/* Absolute: the running vmm reads them, from its own directory. */
			char *abs = c == 'N' ? NULL : realpath(optarg, NULL);

			if (c != 'N' && !abs) {
				fprintf(stderr, "vmm: %s: not found\n", optarg);
				return 2;
			}
			json_object_object_add(req, c == 'T' ? "tls_dir" : c == 'K' ? "psk_file"
								: "tls_peer",
					       json_object_new_string(abs ? abs : optarg));
			free(abs);
			break;
		}
		default:
			return cli_usage("migrate");
		}
	}
	if (optind != argc - 2)
		return cli_usage("migrate");
	if (cli_parse_hostport(argv[optind + 1], host, sizeof(host), &port)) {
		fprintf(stderr, "vmm: bad destination '%s' (HOST:PORT, [ADDR]:PORT for IPv6)\n",
			argv[optind + 1]);
		return 2;
	}
	json_object_object_add(req, "destination", json_object_new_string(argv[optind + 1]));
	return 0;
}

/* --- progress */

/* Sizes in MB (10^6 bytes) throughout, as the rates in MB/s are. */
static void print_round(struct json_object *rd)
{
	fprintf(stderr, "round %llu%s: %llu pages (%llu zero), %.1f MB in %.1f ms, %.0f MB/s, "
			"dirty %.0f MB/s, %.1f MB left, expected downtime %.1f ms, throttle %llu%%\n",
		(unsigned long long)get_u64(rd, "round"),
		json_object_get_boolean(get(rd, "final")) ? " (final, guest paused)" : "",
		(unsigned long long)get_u64(rd, "pages"),
		(unsigned long long)get_u64(rd, "zero_pages"), (double)get_u64(rd, "wire_bytes") / 1e6,
		get_double(rd, "duration_ms"),
		get_double(rd, "bandwidth_mbps"), get_double(rd, "dirty_rate_mbps"),
		(double)get_u64(rd, "remaining_bytes") / 1e6,
		get_double(rd, "expected_downtime_ms"),
		(unsigned long long)get_u64(rd, "throttle_pct"));
}

/* On a terminal: one line redrawn in place from the latest round and the totals. */
static void draw_bar(struct json_object *doc)
{
	struct json_object *rounds = get(doc, "rounds"), *total = get(doc, "total");
	size_t n = rounds ? json_object_array_length(rounds) : 0;
	struct json_object *rd = n ? json_object_array_get_idx(rounds, n - 1) : NULL;

	if (!rd) {
		fprintf(stderr, "\rmigrating to %s: round 0 ...\033[K", get_string(doc, "destination"));
		return;
	}
	fprintf(stderr, "\rmigrating to %s: round %llu%s, %.1f MB sent, dirty %.0f MB/s, "
			"expected downtime %.1f ms, throttle %llu%%\033[K",
		get_string(doc, "destination"), (unsigned long long)get_u64(rd, "round"),
		json_object_get_boolean(get(rd, "final")) ? " (final)" : "",
		(double)get_u64(total, "wire_bytes") / 1e6, get_double(rd, "dirty_rate_mbps"),
		get_double(rd, "expected_downtime_ms"), (unsigned long long)get_u64(rd, "throttle_pct"));
}

/* Shows what is new in doc; *printed counts the rounds already printed as lines. */
static void show_progress(struct json_object *doc, int tty, size_t *printed)
{
	struct json_object *rounds = get(doc, "rounds");
	size_t n = rounds ? json_object_array_length(rounds) : 0;

	if (tty) {
		draw_bar(doc);
		return;
	}
	for (; *printed < n; (*printed)++)
		print_round(json_object_array_get_idx(rounds, *printed));
}

static void print_summary(struct json_object *doc)
{
	struct json_object *t = get(doc, "total");
	uint64_t rounds = get_u64(t, "rounds");

	printf("migrated to %s in %.1f ms: %llu round%s, %.1f MB on the wire, compression ratio "
	       "%.2f, downtime %.1f ms\n",
	       get_string(doc, "destination"), get_double(t, "total_ms"),
	       (unsigned long long)rounds, rounds == 1 ? "" : "s",
	       (double)get_u64(t, "wire_bytes") / 1e6,
	       get_double(t, "compression_ratio"), get_double(t, "downtime_ms"));
}

/* --- the verb */

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL); /* cut short by Ctrl-C: the loop then cancels */
}

static int is_final(const char *state)
{
	return !strcmp(state, "completed") || !strcmp(state, "failed") ||
	       !strcmp(state, "canceled") || !strcmp(state, "idle") || !strcmp(state, "in-doubt");
}

/* Polls vm.migration until the migration ended; Ctrl-C cancels it. Returns the final
 * document (the caller's to put), or NULL after printing why. */
static struct json_object *follow(const char *sock, int tty)
{
	struct control_reply rep;
	size_t printed = 0;
	long cancel_left = -1; /* ms the migration still gets after Ctrl-C; -1: none yet */

	for (;;) {
		if (interrupted && cancel_left < 0) {
			/* A 409 means it ended meanwhile: the next GET says how. */
			if (!control_call(sock, "PUT", "vm.migrate-cancel", NULL, &rep))
				control_reply_free(&rep);
			cancel_left = CANCEL_WAIT_MS;
		}
		if (control_call(sock, "GET", "vm.migration", NULL, &rep))
			break;
		if (rep.status != 200 || !rep.json) {
			control_fail("migrate", &rep);
			control_reply_free(&rep);
			break;
		}
		show_progress(rep.json, tty, &printed);
		if (is_final(get_string(rep.json, "state")))
			return rep.json;
		control_reply_free(&rep);
		if (cancel_left == 0) {
			fprintf(stderr, "%svmm: migrate: still running %d ms after the cancel\n",
				tty ? "\n" : "", CANCEL_WAIT_MS);
			return NULL;
		}
		sleep_ms(POLL_MS);
		if (cancel_left > 0)
			cancel_left = cancel_left > POLL_MS ? cancel_left - POLL_MS : 0;
	}
	if (tty)
		fputc('\n', stderr);
	fprintf(stderr, "vmm: migrate: lost the VM's control socket before the migration ended\n");
	return NULL;
}

int cmd_migrate(int argc, char **argv)
{
	struct json_object *req = json_object_new_object(), *doc, *err;
	struct sigaction sa = { .sa_handler = on_sigint, .sa_flags = SA_RESETHAND };
	struct control_reply rep;
	int json = 0, tty = isatty(STDERR_FILENO), r;
	const char *sock, *state;

	r = build_request(argc, argv, req, &json);
	if (r) {
		json_object_put(req);
		return r;
	}
	sock = argv[optind];
	/* No SA_RESTART: a Ctrl-C cuts the sleep short. A second one kills as usual. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	r = control_call(sock, "PUT", "vm.migrate",
			 json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
							     JSON_C_TO_STRING_NOSLASHESCAPE),
			 &rep);
	json_object_put(req);
	if (r)
		return 1;
	if (rep.status != 202) {
		r = control_fail("migrate", &rep);
		control_reply_free(&rep);
		return r;
	}
	control_reply_free(&rep);
	doc = follow(sock, tty);
	if (!doc)
		return 1;
	if (tty)
		fputs("\r\033[K", stderr);
	state = get_string(doc, "state");
	r = strcmp(state, "completed") != 0;
	if (!strcmp(state, "in-doubt")) {
		err = get(doc, "error");
		fprintf(stderr, "vmm: migrate: in doubt: the destination may or may not run the "
				"guest (%s); it stays paused here until `vmm migrate-resolve %s "
				"run|discard` (and the opposite on the destination)\n",
			err ? get_string(err, "detail") : "", sock);
		r = EXIT_IN_DOUBT;
	} else if (r) {
		err = get(doc, "error");
		if (err)
			fprintf(stderr, "vmm: migrate: %s%s%s%s\n", get_string(err, "message"),
				*get_string(err, "detail") ? " (" : "", get_string(err, "detail"),
				*get_string(err, "detail") ? ")" : "");
		else
			fprintf(stderr, "vmm: migrate: the migration ended %s\n", state);
	}
	if (json)
		printf("%s\n", json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
								   JSON_C_TO_STRING_NOSLASHESCAPE));
	else if (!r)
		print_summary(doc);
	json_object_put(doc);
	return r;
}

int cmd_migrate_resolve(int argc, char **argv)
{
	struct control_reply rep;
	char body[64];
	int r;

	if (argc != 3 || (strcmp(argv[2], "run") && strcmp(argv[2], "discard")))
		return cli_usage("migrate-resolve");
	snprintf(body, sizeof(body), "{\"action\":\"%s\"}", argv[2]);
	if (control_call(argv[1], "PUT", "vm.migrate-resolve", body, &rep))
		return 1;
	r = rep.status == 204 ? 0 : control_fail("migrate-resolve", &rep);
	control_reply_free(&rep);
	return r;
}
