/* Ring-3 side of the runtime: the first ring-3 code on each CPU, output through SVC_WRITE
 * (with a running FNV-1a hash of everything printed) and TSC delays. */
#include "guest.h"

static char cmdline_buf[4096];
static uint32_t hash = 2166136261u;

__attribute__((weak)) void ap_main(uint32_t cpu) { (void)cpu; }

void user_start(void)
{
	/* Copy first: guests like memcheck reuse the RAM the loader put the boot info in. */
	const char *src = (const char *)bootinfo.cmdline;
	size_t i = 0;
	if (src)
		for (; i < sizeof(cmdline_buf) - 1 && src[i]; i++)
			cmdline_buf[i] = src[i];
	cmdline_buf[i] = '\0';
	sys_exit((uint32_t)main(cmdline_buf));
}

void ap_user_start(uint32_t cpu)
{
	ap_main(cpu);
	sys_halt();
}

void write_out(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		hash = (hash ^ (uint8_t)s[i]) * 16777619u;
	sys_write(s, len);
}

uint32_t out_hash(void) { return hash; }

int printf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	int n = vfmt(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	write_out(buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
	return n;
}

uint64_t us_to_tsc(uint64_t us)
{
	return us / 1000000 * tsc_hz + us % 1000000 * tsc_hz / 1000000;
}

void sw_start(struct stopwatch *sw)
{
	sw->last = rdtsc();
	sw->elapsed = 0;
}

uint64_t sw_elapsed(struct stopwatch *sw)
{
	uint64_t now = rdtsc(), d = now - sw->last;

	if ((int64_t)d > 0 && d < tsc_hz / 100)
		sw->elapsed += d;
	sw->last = now;
	return sw->elapsed;
}

void udelay(uint64_t us)
{
	struct stopwatch sw;
	uint64_t ticks = us_to_tsc(us);

	sw_start(&sw);
	while (sw_elapsed(&sw) < ticks)
		cpu_relax();
}
