/* The record-forwarding proxy of handover_proxy.h. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handover_proxy.h"
#include "migrate_util.h"
#include "migrate/stream.h"
#include "stream.pb-c.h"

static int read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n <= 0)
			return -1;
		p += n, len -= (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n <= 0)
			return -1;
		p += n, len -= (size_t)n;
	}
	return 0;
}

static void stall_until_done(struct hp_proxy *p)
{
	__atomic_store_n(&p->stalled, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&p->done, __ATOMIC_ACQUIRE))
		tu_sleep_us(5000);
}

static void mangle_complete(uint8_t **payload, uint32_t *plen)
{
	uint32_t l = *plen;
	uint32_t *len = &l;

	Vmm__Stream__Complete *c = vmm__stream__complete__unpack(NULL, *len, *payload);

	assert_non_null(c);
	c->pages_total++;
	*len = (uint32_t)vmm__stream__complete__get_packed_size(c);
	*payload = realloc(*payload, *len);
	assert_non_null(*payload);
	vmm__stream__complete__pack(c, *payload);
	vmm__stream__complete__free_unpacked(c, NULL);
	*plen = l;
}

static void *pump_main(void *arg)
{
	struct hp_pump *pu = arg;
	struct hp_proxy *p = pu->p;
	int in = pu->dir == HP_TO_DST ? p->down : p->up, out = pu->dir == HP_TO_DST ? p->up : p->down;
	uint8_t pre[16];

	if (pu->dir == HP_TO_DST && (read_full(in, pre, sizeof(pre)) || write_full(out, pre, 16)))
		return NULL;
	for (;;) {
		struct vmm__rec_hdr h;
		uint8_t *payload;

		if (read_full(in, &h, sizeof(h)) || h.len > VMM_REC_MAX_LEN)
			break;
		payload = malloc(h.len ? h.len : 1);
		assert_non_null(payload);
		if (read_full(in, payload, h.len)) {
			free(payload);
			break;
		}
		if (__atomic_load_n(&p->stalled, __ATOMIC_ACQUIRE)) {
			free(payload);
			stall_until_done(p);
			break;
		}
		if (p->fault != HP_NONE && pu->dir == p->dir && h.type == p->type &&
		    !__atomic_exchange_n(&p->fired, 1, __ATOMIC_ACQ_REL)) {
			switch (p->fault) {
			case HP_CUT:
				shutdown(p->up, SHUT_RDWR);
				shutdown(p->down, SHUT_RDWR);
				free(payload);
				return NULL;
			case HP_CANCEL:
				vmm_migrate_cancel(p->src);
				/* fall through */
			case HP_STALL:
				free(payload);
				stall_until_done(p);
				return NULL;
			case HP_CALL:
				p->hook(p->hook_opaque);
				break;
			case HP_MANGLE: {
				uint32_t len = h.len;

				mangle_complete(&payload, &len);
				h.len = len;
				break;
			}
			default:
				break;
			}
		}
		if (write_full(out, &h, sizeof(h)) || write_full(out, payload, h.len)) {
			free(payload);
			break;
		}
		free(payload);
	}
	return NULL;
}

static void *proxy_accept(void *arg)
{
	struct hp_proxy *p = arg;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(p->dst_port) };
	struct pollfd pf = { .fd = p->lfd, .events = POLLIN };

	if (poll(&pf, 1, 10000) != 1)
		return NULL;
	/* Atomic: hp_stop reads them from another thread, ordered after this one only
	 * through the sockets, which the thread sanitizer cannot see. */
	__atomic_store_n(&p->down, accept(p->lfd, NULL, NULL), __ATOMIC_RELEASE);
	__atomic_store_n(&p->up, socket(AF_INET, SOCK_STREAM, 0), __ATOMIC_RELEASE);
	if (p->down < 0 || p->up < 0 || connect(p->up, (struct sockaddr *)&a, sizeof(a)))
		return NULL;
	p->pumps[HP_TO_DST] = (struct hp_pump){ p, HP_TO_DST, 0 };
	p->pumps[HP_TO_SRC] = (struct hp_pump){ p, HP_TO_SRC, 0 };
	assert_int_equal(pthread_create(&p->pumps[HP_TO_SRC].th, NULL, pump_main,
					&p->pumps[HP_TO_SRC]), 0);
	pump_main(&p->pumps[HP_TO_DST]);
	pthread_join(p->pumps[HP_TO_SRC].th, NULL);
	return NULL;
}


static void start(struct hp_proxy *p, uint16_t dst_port, enum hp_fault fault, int dir,
		  unsigned type, struct vmm_vm *src, void (*hook)(void *), void *opaque)
{
	memset(p, 0, sizeof(*p));
	p->up = p->down = -1;
	p->lfd = mu_listen(&p->port);
	p->dst_port = dst_port;
	p->fault = fault, p->dir = dir, p->type = type, p->src = src;
	p->hook = hook, p->hook_opaque = opaque;
	assert_int_equal(pthread_create(&p->th, NULL, proxy_accept, p), 0);
}

void hp_start(struct hp_proxy *p, uint16_t dst_port, enum hp_fault fault, int dir,
	      unsigned type, struct vmm_vm *src)
{
	start(p, dst_port, fault, dir, type, src, NULL, NULL);
}

void hp_start_call(struct hp_proxy *p, uint16_t dst_port, int dir, unsigned type,
		   void (*hook)(void *opaque), void *opaque)
{
	start(p, dst_port, HP_CALL, dir, type, NULL, hook, opaque);
}

int hp_fired(struct hp_proxy *p)
{
	return __atomic_load_n(&p->fired, __ATOMIC_ACQUIRE);
}

void hp_stop(struct hp_proxy *p)
{
	int up = __atomic_load_n(&p->up, __ATOMIC_ACQUIRE);
	int down = __atomic_load_n(&p->down, __ATOMIC_ACQUIRE);

	__atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
	if (up >= 0)
		shutdown(up, SHUT_RDWR);
	if (down >= 0)
		shutdown(down, SHUT_RDWR);
	/* Not yet connected: the accept gives up after its poll. */
	shutdown(p->lfd, SHUT_RDWR);
	pthread_join(p->th, NULL);
	if (p->up >= 0)
		close(p->up);
	if (p->down >= 0)
		close(p->down);
	close(p->lfd);
}
