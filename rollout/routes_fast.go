package rollout

import (
	"time"

	"github.com/canaryctl/canaryctl/analysis/sequential"
)

// How a route's fast 5xx test differs from the service's, and why each change keeps it valid.
//
// A route carrying 2% of the traffic gives the canary 0.1 requests/s at a 2.5% step: its fast test
// (5xx-fast) decides on a handful of errors, and with the service's settings a canary failing 50% of
// that route's requests needed about 6 of them (a median of 152 s). Each error is worth at most
// log(Z0/(F·n_c)) nats in a slot (threeway.go: the canary's share of the slot's errors under the
// null's corner), about 2.7 nats in a 15-30 s slot of a 2% route, and the service's alternatives (4
// and 8 times the tolerated ratio) took about 1.7 of it; the baseline comparison (condition 2 of the
// fast test) gains at most log 2 per error when canary and baseline serve alike, so its e ≥ 10 alone
// needed 4-5 errors; and the slots closed every 30 s, so a decision waited 15 s on average for its
// slot to end. Per route, therefore:
//
//   - routeFastAlternatives: the canary at 16 and 64 times the tolerated ratio (the service's: 4 and
//     8). Any alternative's likelihood ratio is an e-process under the null, so this only chooses
//     what the test reaches quickest: few canary requests per slot and a large ratio (a broken
//     endpoint) favour far alternatives; the service's slots hold many requests, where near ones win
//     (8 and 32 times for the service doubled ab-10pct-5xx-200rps's median), so it keeps its own.
//   - routeFastAlphaShare: 0.8 of the route's alpha to the fast test (the service's 0.4), the guard
//     keeps 0.1 and the three paired tests 0.1/3 each. A Bonferroni split fixed before any evidence:
//     the route analyzer's false Fails stay at most its alpha. The paired tests are for small effects
//     (+1 pp, +20 ms), which a route's few requests cannot show within a rollout anyway; the service's
//     analyzer keeps its full split for them.
//   - routeFastBaselineEvidence: 3 instead of 10. Condition 2 only removes rejections: the route's
//     alpha is condition 1's (the three-way test) and is unchanged. What it bounds is the cold start
//     beyond FreshFactor (canary and baseline both fresh, both failing more than 3 × stable), now at
//     1/3 per route instead of 1/10, and only once condition 1 is also met at the route's alpha;
//     measured in aa-cold-start-routes.
//   - routeMaxSlot: 15 s slots at most (the service's 30 s). Slot widths are set from earlier counts
//     only, so every slot's conditional test is still exact; shorter slots decide sooner after the
//     deciding error, while 10 s left too few slots with a baseline request for condition 2.
const (
	routeFastAlphaShare       = 0.8
	routeFastBaselineEvidence = 3
	routeMaxSlot              = 15 * time.Second
)

var routeFastAlternatives = [2]int{16, 24} // 16 and 64 times the tolerated ratio (4 per doubling)

// routeFastConfig sets a route analyzer's fast-test settings (the rest is the service's config).
func routeFastConfig(c *sequential.Config) {
	c.FastAlternatives = routeFastAlternatives
	c.FastAlphaShare = routeFastAlphaShare
	c.FastBaselineEvidence = routeFastBaselineEvidence
	c.MaxSlot = routeMaxSlot
}
