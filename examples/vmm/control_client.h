/* The client side of the control API: one HTTP request to a running vmm's UNIX socket
 * (libcurl), the JSON answer parsed (json-c). */
#ifndef VMM_CONTROL_CLIENT_H
#define VMM_CONTROL_CLIENT_H

#include <json-c/json.h>

struct control_reply {
	long status;              /* HTTP status */
	struct json_object *json; /* the body parsed, NULL when empty or not JSON */
};

/* Sends METHOD /api/v1/ENDPOINT with body (a JSON text, NULL: none) to the vmm serving
 * sock_path. Returns 0 and *rep once any response arrived, or 1 after printing why none
 * did ("vmm: no VM listening on PATH"). */
int control_call(const char *sock_path, const char *method, const char *endpoint,
		 const char *body, struct control_reply *rep);
/* Prints "vmm: what: message (detail)" from an error reply to stderr and returns 1. */
int control_fail(const char *what, const struct control_reply *rep);
void control_reply_free(struct control_reply *rep);

#endif
