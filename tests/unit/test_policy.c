/* Pre-copy policy: bandwidth, dirty rate, expected downtime, when to stop, auto-converge. */
#include "testutil.h"
#include "migrate/policy.h"

static void measures(void **state)
{
	struct vmm__round_measure m = { .wire_bytes = 1000000000, .duration_ns = 500000000,
					.elapsed_ns = 1000000000, .remaining_bytes = 20000000 };

	(void)state;
	assert_true(vmm__policy_bandwidth(&m) == 2e9);     /* 1 GB in 0.5 s */
	assert_true(vmm__policy_dirty_rate(&m) == 2e7);    /* 20 MB dirtied in 1 s */
	assert_int_equal(vmm__policy_expected_downtime(&m), 10000000); /* 20 MB at 2 GB/s */
	m.fixed_ns = 300000; /* a round trip */
	assert_int_equal(vmm__policy_expected_downtime(&m), 10300000);
	m.remaining_bytes = 0;
	assert_int_equal(vmm__policy_expected_downtime(&m), 300000);
	m.fixed_ns = 0;
	assert_int_equal(vmm__policy_expected_downtime(&m), 0);
	m.remaining_bytes = 4096;
	m.duration_ns = 0; /* nothing measured: no estimate */
	assert_true(vmm__policy_bandwidth(&m) == 0);
	assert_int_equal(vmm__policy_expected_downtime(&m), UINT64_MAX);
	m.elapsed_ns = 0;
	assert_true(vmm__policy_dirty_rate(&m) == 0);
}

static void stop_rules(void **state)
{
	(void)state;
	assert_true(vmm__policy_should_stop(49000000, 50000000, 0, 30, 0, 0));  /* fits */
	assert_true(vmm__policy_should_stop(50000000, 50000000, 0, 30, 0, 0));  /* exactly */
	assert_false(vmm__policy_should_stop(51000000, 50000000, 0, 30, 0, 0));
	assert_false(vmm__policy_should_stop(UINT64_MAX, 50000000, 28, 30, 0, 0));
	assert_true(vmm__policy_should_stop(UINT64_MAX, 50000000, 29, 30, 0, 0)); /* round cap */
	assert_true(vmm__policy_should_stop(UINT64_MAX, 0, 0, 1, 0, 0));
	assert_false(vmm__policy_should_stop(UINT64_MAX, 0, 3, 30, 9, 10));
	assert_true(vmm__policy_should_stop(UINT64_MAX, 0, 3, 30, 10, 10));     /* time cap */
	assert_false(vmm__policy_should_stop(UINT64_MAX, 0, 3, 30, 1000, 0));   /* no cap */
}

/* A pause that costs 80 ms anyway (state load, round trips) against a 50 ms limit: the
 * emulated host's plain migration sent nothing for 20 rounds, each expecting 80 ms, until
 * the round cap. Pre-copy must stop once the pages add at most half the limit. */
static void limit_below_fixed_cost(void **state)
{
	const uint64_t ms = 1000000, limit = 50 * ms, fixed = 80 * ms;
	struct vmm__round_measure m = { .wire_bytes = 0, .duration_ns = ms, .elapsed_ns = ms,
					.remaining_bytes = 0, .fixed_ns = fixed };
	uint64_t reach = vmm__policy_reachable_limit(limit, fixed);

	(void)state;
	assert_int_equal(vmm__policy_expected_downtime(&m), fixed);
	assert_true(vmm__policy_should_stop(vmm__policy_expected_downtime(&m), reach, 5, 30, 0, 0));
	assert_true(vmm__policy_should_stop(fixed + 25 * ms, reach, 5, 30, 0, 0));
	assert_false(vmm__policy_should_stop(fixed + 26 * ms, reach, 5, 30, 0, 0));
	/* A limit the fixed cost leaves room for stays the caller's. */
	assert_int_equal(vmm__policy_reachable_limit(limit, 10 * ms), limit);
	assert_int_equal(vmm__policy_reachable_limit(limit, limit), limit + limit / 2);
	assert_int_equal(vmm__policy_reachable_limit(0, 0), 0);
}

static void throttle_steps(void **state)
{
	uint32_t pct = 0;

	(void)state;
	/* round 0 never throttles, whatever the rates */
	assert_int_equal(vmm__policy_next_throttle(0, 0, 1e9, 1e6), 0);
	/* dirtying under half the bandwidth: leave it */
	assert_int_equal(vmm__policy_next_throttle(0, 3, 4e8, 1e9), 0);
	assert_int_equal(vmm__policy_next_throttle(30, 3, 4e8, 1e9), 30);
	/* over half: 20, 30, ... capped at 99 */
	for (uint32_t round = 1, want = 20; round < 20; round++) {
		pct = vmm__policy_next_throttle(pct, round, 6e8, 1e9);
		assert_int_equal(pct, want > 99 ? 99 : want);
		want += 10;
	}
	assert_int_equal(pct, 99);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(measures),
		cmocka_unit_test(stop_rules),
		cmocka_unit_test(limit_below_fixed_cost),
		cmocka_unit_test(throttle_steps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
