/* Pre-copy policy as pure functions of what a round measured, so the rules can be unit
 * tested apart from sockets and guests. */
#ifndef VMM_POLICY_H
#define VMM_POLICY_H

#include <stdint.h>

struct vmm__round_measure {
	uint64_t wire_bytes;      /* sent this round */
	uint64_t duration_ns;     /* time the round's sending took */
	uint64_t elapsed_ns;      /* round start to the dirty sync after it */
	uint64_t remaining_bytes; /* dirty after the round */
	uint64_t fixed_ns;        /* what stop-and-copy costs beyond its pages: the
				   * hand-over's round trips (protocol.h) */
};

/* Bandwidth in bytes/s (0 if nothing was measured). */
double vmm__policy_bandwidth(const struct vmm__round_measure *m);
/* Bytes/s the guest dirtied during the round. */
double vmm__policy_dirty_rate(const struct vmm__round_measure *m);
/* remaining / bandwidth + fixed, in ns; UINT64_MAX without a bandwidth. */
uint64_t vmm__policy_expected_downtime(const struct vmm__round_measure *m);

/* 1 when pre-copy should stop and copy the rest with the guest paused: the expected
 * downtime fits the limit, or round (0-based) reached max_rounds, or the time cap passed
 * (max_time_ns 0: none). */
int vmm__policy_should_stop(uint64_t expected_downtime_ns, uint64_t limit_ns, uint32_t round,
			    uint32_t max_rounds, uint64_t elapsed_ns, uint64_t max_time_ns);

/* The downtime pre-copy aims for: the caller's limit, unless what the pause costs anyway
 * (fixed_ns: the state's load, the round trips) already exceeds it. No number of rounds
 * can meet such a limit, so it is met as nearly as it can be: once the pages would add
 * at most half the limit to the fixed cost. */
uint64_t vmm__policy_reachable_limit(uint64_t limit_ns, uint64_t fixed_ns);

/* Auto-converge: the next throttle percentage. While the guest dirties more than half of
 * what the link carries, start at 20 % and add 10 points a round, up to 99 %; otherwise
 * keep the current one (it is released at stop-and-copy). Round 0 only copies what was
 * there, so it never throttles. */
uint32_t vmm__policy_next_throttle(uint32_t current_pct, uint32_t round, double dirty_rate,
				   double bandwidth);

#endif
