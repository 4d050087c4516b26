/* Pre-copy convergence rules (see policy.h). */
#include "migrate/policy.h"

double vmm__policy_bandwidth(const struct vmm__round_measure *m)
{
	return m->duration_ns ? (double)m->wire_bytes * 1e9 / (double)m->duration_ns : 0;
}

double vmm__policy_dirty_rate(const struct vmm__round_measure *m)
{
	return m->elapsed_ns ? (double)m->remaining_bytes * 1e9 / (double)m->elapsed_ns : 0;
}

uint64_t vmm__policy_expected_downtime(const struct vmm__round_measure *m)
{
	double bw = vmm__policy_bandwidth(m);

	if (!m->remaining_bytes)
		return m->fixed_ns;
	if (bw <= 0)
		return UINT64_MAX;
	return (uint64_t)((double)m->remaining_bytes / bw * 1e9) + m->fixed_ns;
}

uint64_t vmm__policy_reachable_limit(uint64_t limit_ns, uint64_t fixed_ns)
{
	return fixed_ns >= limit_ns ? fixed_ns + limit_ns / 2 : limit_ns;
}

int vmm__policy_should_stop(uint64_t expected_downtime_ns, uint64_t limit_ns, uint32_t round,
			    uint32_t max_rounds, uint64_t elapsed_ns, uint64_t max_time_ns)
{
	return expected_downtime_ns <= limit_ns || round + 1 >= max_rounds ||
	       (max_time_ns && elapsed_ns >= max_time_ns);
}

uint32_t vmm__policy_next_throttle(uint32_t current_pct, uint32_t round, double dirty_rate,
				   double bandwidth)
{
	uint32_t pct = current_pct;

	if (round < 1 || dirty_rate <= bandwidth / 2)
		return current_pct;
	pct = pct ? pct + 10 : 20;
	return pct > 99 ? 99 : pct;
}
