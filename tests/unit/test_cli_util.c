/* The vmm command's size and address parsing (examples/vmm/cli_util.c): the values a user
 * types for --memory and --max-mem, and HOST:PORT. Garbage, a negative number and a size
 * that does not fit in 64 bits are refused with a reason, never wrapped to a small size. */
#include <string.h>

#include "testutil.h"
#include "cli.h"

static void sizes(void **state)
{
	uint64_t v = 0;
	const char *why = NULL;

	(void)state;
	assert_int_equal(cli_parse_size("4096", &v, &why), 0);
	assert_true(v == 4096);
	assert_int_equal(cli_parse_size("512M", &v, &why), 0);
	assert_true(v == 512ull << 20);
	assert_int_equal(cli_parse_size("2GiB", &v, &why), 0);
	assert_true(v == 2ull << 30);
	assert_int_equal(cli_parse_size("4k", &v, NULL), 0);
	assert_true(v == 4096);
	assert_int_equal(cli_parse_size("1T", &v, NULL), 0);
	assert_true(v == 1ull << 40);
	/* the largest that fits, with and without a suffix */
	assert_int_equal(cli_parse_size("18446744073709551615", &v, NULL), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(cli_parse_size("16777215T", &v, NULL), 0);
	assert_true(v == 16777215ull << 40);
}

static void refused(const char *s, const char *reason)
{
	uint64_t v = 12345;
	const char *why = NULL;

	assert_int_equal(cli_parse_size(s, &v, &why), -1);
	assert_true(v == 12345); /* untouched */
	assert_non_null(why);
	if (!strstr(why, reason))
		fail_msg("'%s': reason '%s' does not say '%s'", s, why, reason);
}

static void bad_sizes(void **state)
{
	(void)state;
	/* issue 15: both used to mean 1 MiB */
	refused("17592186044417M", "too large");
	refused("-18446744073708503040", "negative");
	refused("-1", "negative");
	refused(" -1M", "negative");
	refused("16777216T", "too large");
	refused("18446744073709551616", "too large");
	refused("99999999999999999999999", "too large");
	refused("", "not a size");
	refused("M", "not a size");
	refused("12Q", "not a size");
	refused("12MX", "not a size");
	refused("+5", "not a size");
	refused(" 5", "not a size");
}

static void hostports(void **state)
{
	char host[64];
	uint16_t port = 0;

	(void)state;
	assert_int_equal(cli_parse_hostport("10.0.0.1:4444", host, sizeof(host), &port), 0);
	assert_string_equal(host, "10.0.0.1");
	assert_int_equal(port, 4444);
	assert_int_equal(cli_parse_hostport("[::1]:80", host, sizeof(host), &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(cli_parse_hostport("::1:80", host, sizeof(host), &port), -1);
	assert_int_equal(cli_parse_hostport("h:0", host, sizeof(host), &port), -1);
	assert_int_equal(cli_parse_hostport("h:65536", host, sizeof(host), &port), -1);
	assert_int_equal(cli_parse_hostport("h:", host, sizeof(host), &port), -1);
	assert_int_equal(cli_parse_hostport("abcd:1", host, 4, &port), -1);
}

static void disks(void **state)
{
	char path[16];
	int ro = -1;

	(void)state;
	assert_int_equal(cli_parse_disk("a.img", path, sizeof(path), &ro), 0);
	assert_string_equal(path, "a.img");
	assert_int_equal(ro, 0);
	assert_int_equal(cli_parse_disk("/x/a.img,ro", path, sizeof(path), &ro), 0);
	assert_string_equal(path, "/x/a.img");
	assert_int_equal(ro, 1);
	assert_int_equal(cli_parse_disk("b,c,rw", path, sizeof(path), &ro), 0);
	assert_string_equal(path, "b,c");
	assert_int_equal(ro, 0);
	assert_int_equal(cli_parse_disk(",ro", path, sizeof(path), &ro), -1);
	assert_int_equal(cli_parse_disk("", path, sizeof(path), &ro), -1);
	{
		char name[16];
		uint8_t mac[6];
		int has;
		static const uint8_t want[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };

		assert_int_equal(cli_parse_net("tap=tap0", name, mac, &has), 0);
		assert_string_equal(name, "tap0");
		assert_int_equal(has, 0);
		assert_int_equal(cli_parse_net("tap=vm1,mac=52:54:00:ab:CD:ef", name, mac, &has), 0);
		assert_string_equal(name, "vm1");
		assert_int_equal(has, 1);
		assert_memory_equal(mac, want, 6);
		assert_int_equal(cli_parse_net("tap=", name, mac, &has), -1);
		assert_int_equal(cli_parse_net("tap0", name, mac, &has), -1);
		assert_int_equal(cli_parse_net("tap=abcdefghijklmnop", name, mac, &has), -1);
		assert_int_equal(cli_parse_net("tap=t,mac=01:00:5e:00:00:01", name, mac, &has), -1);
		assert_int_equal(cli_parse_net("tap=t,mac=52:54:00:ab:cd", name, mac, &has), -1);
		assert_int_equal(cli_parse_net("tap=t,mac=52-54-00-ab-cd-ef", name, mac, &has), -1);
		assert_int_equal(cli_parse_net("tap=t,mac=5g:54:00:ab:cd:ef", name, mac, &has), -1);
		assert_int_equal(cli_parse_net("tap=t,foo=1", name, mac, &has), -1);
	}
	assert_int_equal(cli_parse_disk("0123456789abcdef", path, sizeof(path), &ro), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sizes),
		cmocka_unit_test(bad_sizes),
		cmocka_unit_test(hostports),
		cmocka_unit_test(disks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
