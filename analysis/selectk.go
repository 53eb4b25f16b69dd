package analysis

import (
	"math/bits"
	"slices"
)

// selectRanks reorders s so that s[k] holds the value of rank k (the k-th smallest, 0-based) for
// every k in ranks, as if s were sorted: Percentiles needs one or two order statistics per
// percentile, not the whole order, and finding them by selection is linear where sorting is
// n·log n (the engine asks for the P50 and P99 of up to 262,144 latencies at every recorded look).
// s must be free of NaN. A range that resists partitioning (the depth exceeds 2·log2 n) is sorted.
func selectRanks(s []float64, ranks []int) {
	ranks = slices.Clone(ranks)
	slices.Sort(ranks)
	ranks = slices.Compact(ranks)
	lo := 0
	for _, k := range ranks {
		// s[:lo] holds ranks below lo, each in place; s[lo:] holds the rest.
		if k < lo {
			continue
		}
		selectRank(s, lo, len(s), k, 2*bits.Len(uint(len(s))))
		lo = k + 1
	}
}

// selectRank puts the value of rank k into s[k], with smaller or equal values in s[lo:k] and
// larger or equal ones in s[k+1:hi]; lo <= k < hi.
func selectRank(s []float64, lo, hi, k, depth int) {
	for hi-lo > 16 {
		if depth == 0 {
			slices.Sort(s[lo:hi])
			return
		}
		depth--
		// median of three as the pivot, then a three-way partition: [lo, lt) < p, [lt, gt) == p,
		// [gt, hi) > p; many equal values (whole-ms latencies) end in the middle part at once.
		m := lo + (hi-lo)/2
		a, b, c := s[lo], s[m], s[hi-1]
		p := max(min(a, b), min(max(a, b), c))
		lt, i, gt := lo, lo, hi
		for i < gt {
			switch v := s[i]; {
			case v < p:
				s[lt], s[i] = s[i], s[lt]
				lt++
				i++
			case v > p:
				gt--
				s[gt], s[i] = s[i], s[gt]
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt
		case k >= gt:
			lo = gt
		default:
			return // s[k] == p, in place
		}
	}
	slices.Sort(s[lo:hi])
}
