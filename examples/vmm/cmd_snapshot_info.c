/* vmm snapshot-info FILE: what a snapshot holds (format, VM shape, flags, sizes, parent,
 * creation time) and whether every checksum in it matches. Exits 1 when it does not. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "cli.h"

static const struct {
	uint32_t flag;
	const char *name;
} flag_names[] = {
	{ VMM_SNAPSHOT_COMPRESS, "compress" },
	{ VMM_SNAPSHOT_LIVE, "live" },
	{ VMM_SNAPSHOT_INCREMENTAL, "incremental" },
	{ VMM_SNAPSHOT_STOP, "stop" },
	{ VMM_SNAPSHOT_TRACK, "track" },
};

#define NFLAGS (sizeof(flag_names) / sizeof(flag_names[0]))

static void format_time(uint64_t unix_ms, char *buf, size_t len)
{
	time_t t = (time_t)(unix_ms / 1000);
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "?");
}

static void print_text(const char *path, const struct vmm_snapshot_info *in, int have_meta,
		       int err, const char *detail)
{
	char mem[32], file[32], disk[32], created[32];
	int any = 0;

	printf("file      %s\n", path);
	if (have_meta) {
		cli_format_size(in->mem_size, mem, sizeof(mem));
		cli_format_size(in->file_bytes, file, sizeof(file));
		cli_format_size(in->disk_bytes, disk, sizeof(disk));
		format_time(in->created_unix_ms, created, sizeof(created));
		printf("format    %" PRIu32 ".%" PRIu32 ", written by libvmm %s\n", in->format_major,
		       in->format_minor, in->library_version);
		printf("shape     %s memory, %" PRIu32 " vCPU%s\n", mem, in->vcpus,
		       in->vcpus == 1 ? "" : "s");
		printf("flags     ");
		for (size_t i = 0; i < NFLAGS; i++)
			if (in->flags & flag_names[i].flag)
				printf("%s%s", any++ ? ", " : "", flag_names[i].name);
		printf("%s\n", any ? "" : "none");
		printf("features  required 0x%" PRIx64 ", optional 0x%" PRIx64 "\n",
		       in->required_features, in->optional_features);
		printf("size      %s logical (%" PRIu64 " bytes), %s on disk\n", file,
		       in->file_bytes, disk);
		printf("parent    %s\n", in->parent[0] ? in->parent : "none");
		printf("created   %s\n", created);
	}
	if (err)
		printf("INVALID: %s%s%s\n", vmm_strerror(err), *detail ? ": " : "", detail);
	else
		printf("%s\n", in->verified ? "valid" : "valid (checksums not verified)");
}

static void print_json(const char *path, const struct vmm_snapshot_info *in, int have_meta,
		       int err, const char *detail)
{
	struct json_object *o = json_object_new_object(), *flags, *e;
	char v[32], created[32];

	json_object_object_add(o, "path", json_object_new_string(path));
	if (have_meta) {
		snprintf(v, sizeof(v), "%" PRIu32 ".%" PRIu32, in->format_major, in->format_minor);
		format_time(in->created_unix_ms, created, sizeof(created));
		json_object_object_add(o, "format", json_object_new_string(v));
		json_object_object_add(o, "library_version",
				       json_object_new_string(in->library_version));
		json_object_object_add(o, "memory_bytes", json_object_new_uint64(in->mem_size));
		json_object_object_add(o, "vcpus", json_object_new_int64(in->vcpus));
		flags = json_object_new_array();
		for (size_t i = 0; i < NFLAGS; i++)
			if (in->flags & flag_names[i].flag)
				json_object_array_add(flags, json_object_new_string(flag_names[i].name));
		json_object_object_add(o, "flags", flags);
		json_object_object_add(o, "required_features",
				       json_object_new_uint64(in->required_features));
		json_object_object_add(o, "optional_features",
				       json_object_new_uint64(in->optional_features));
		json_object_object_add(o, "file_bytes", json_object_new_uint64(in->file_bytes));
		json_object_object_add(o, "disk_bytes", json_object_new_uint64(in->disk_bytes));
		json_object_object_add(o, "parent",
				       in->parent[0] ? json_object_new_string(in->parent) : NULL);
		json_object_object_add(o, "created_unix_ms",
				       json_object_new_uint64(in->created_unix_ms));
		json_object_object_add(o, "created", json_object_new_string(created));
	}
	json_object_object_add(o, "valid", json_object_new_boolean(!err));
	json_object_object_add(o, "verified", json_object_new_boolean(!err && in->verified));
	if (err) {
		e = json_object_new_object();
		json_object_object_add(e, "error", json_object_new_string(vmm_err_name(err)));
		json_object_object_add(e, "message", json_object_new_string(vmm_strerror(err)));
		json_object_object_add(e, "detail", json_object_new_string(detail));
		json_object_object_add(o, "error", e);
	}
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							      JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

int cmd_snapshot_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct vmm_snapshot_info info;
	char detail[512];
	const char *path;
	int c, r, json = 0, have_meta = 1;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'j')
			return 2;
		json = 1;
	}
	if (optind != argc - 1)
		return cli_usage("snapshot-info");
	path = argv[optind];
	memset(&info, 0, sizeof(info));
	info.size = sizeof(info);
	r = vmm_snapshot_info(path, 1, &info);
	/* A file that is not there is a usage error, not an invalid snapshot. */
	if (r == VMM_ENOENT)
		return cli_fail(path, r);
	/* Copied now: the next libvmm call on this thread replaces it. */
	snprintf(detail, sizeof(detail), "%s", r ? vmm_last_error() : "");
	if (r) {
		/* Verification failed; the metadata alone may still read, and says what the
		 * file claims to be. */
		memset(&info, 0, sizeof(info));
		info.size = sizeof(info);
		have_meta = !vmm_snapshot_info(path, 0, &info);
	}
	if (json)
		print_json(path, &info, have_meta, r, detail);
	else
		print_text(path, &info, have_meta, r, detail);
	return r ? 1 : 0;
}
