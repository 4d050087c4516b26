/* One request to a vmm control socket through libcurl's UNIX-socket support, so that the
 * verbs in cmd_control.c deal only in endpoints and JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "control_client.h"
#include "control_server.h"

/* The largest answer accepted; vm.info and stats are a few hundred bytes. */
#define REPLY_MAX (1u << 20)

struct buf {
	char *data;
	size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *opaque)
{
	struct buf *b = opaque;
	size_t len = size * n;
	char *d;

	if (b->len + len > REPLY_MAX || !(d = realloc(b->data, b->len + len + 1)))
		return 0; /* curl turns a short count into CURLE_WRITE_ERROR */
	memcpy(d + b->len, p, len);
	b->data = d;
	b->len += len;
	d[b->len] = 0;
	return len;
}

int control_call(const char *sock_path, const char *method, const char *endpoint,
		 const char *body, struct control_reply *rep)
{
	char url[256], err[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = NULL;
	struct buf b = { NULL, 0 };
	CURL *c;
	CURLcode r;

	memset(rep, 0, sizeof(*rep));
	snprintf(url, sizeof(url), "http://localhost" CONTROL_API_PREFIX "%s", endpoint);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) || !(c = curl_easy_init())) {
		fprintf(stderr, "vmm: cannot initialise libcurl\n");
		return 1;
	}
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock_path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (strcmp(method, "GET")) {
		/* A PUT from memory: curl's POST machinery with the verb replaced. */
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		/* No "Expect: 100-continue" round trip for long paths in the body. */
		hdrs = curl_slist_append(hdrs, "Expect:");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	}
	r = curl_easy_perform(c);
	if (!r)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &rep->status);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	curl_global_cleanup();
	if (r == CURLE_COULDNT_CONNECT) {
		fprintf(stderr, "vmm: no VM listening on %s\n", sock_path);
	} else if (r) {
		fprintf(stderr, "vmm: %s: %s\n", sock_path, *err ? err : curl_easy_strerror(r));
	} else if (b.len) {
		rep->json = json_tokener_parse(b.data);
	}
	free(b.data);
	return r ? 1 : 0;
}

int control_fail(const char *what, const struct control_reply *rep)
{
	struct json_object *msg, *detail;
	const char *d;

	if (json_object_object_get_ex(rep->json, "message", &msg)) {
		d = json_object_object_get_ex(rep->json, "detail", &detail)
			    ? json_object_get_string(detail) : "";
		fprintf(stderr, "vmm: %s: %s%s%s%s\n", what, json_object_get_string(msg),
			*d ? " (" : "", d, *d ? ")" : "");
	} else {
		fprintf(stderr, "vmm: %s: HTTP status %ld\n", what, rep->status);
	}
	return 1;
}

void control_reply_free(struct control_reply *rep)
{
	json_object_put(rep->json);
	rep->json = NULL;
}
