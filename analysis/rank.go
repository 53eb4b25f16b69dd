package analysis

import (
	"math"
	"slices"
)

// This file evaluates the Wilcoxon rank-sum statistic of c(x - d, y) without re-sorting the n+m values
// for every shift d. Kayenta (commons-math NaturalRanking(MAXIMAL, AVERAGE)) ranks the concatenation in
// Java's Double.compare order: NaN counts as +Inf, -0.0 sorts before (and does not tie with) +0.0, and
// every other value ties exactly when the doubles are equal. orderKey maps a double to an int64 with the
// same order, so ties are equal keys.
//
// Both samples are sorted once (as distinct values with counts). Because subtracting d from sorted
// doubles is monotone in IEEE arithmetic, x - d stays sorted; the statistic then needs one merge of the
// shifted x groups with the y groups. Distinct x values that round to the same x - d are merged into one
// tie group, so ties are judged on the actual doubles x_i - d, as ranking the concatenation would. If
// the shifted values ever come out of order (only possible when an infinity meets an infinite d and
// produces NaN), the shifted keys are sorted explicitly instead.

// orderKey maps v to an int64 ordered like Java's Double.compare, with NaN treated as +Inf.
func orderKey(v float64) int64 {
	if v != v {
		v = math.Inf(1)
	}
	k := int64(math.Float64bits(v))
	if k < 0 {
		k ^= math.MaxInt64
	}
	return k
}

// keyValue inverts orderKey.
func keyValue(k int64) float64 {
	if k < 0 {
		k ^= math.MaxInt64
	}
	return math.Float64frombits(uint64(k))
}

// groups is a sorted sample as distinct values (ascending orderKey) with multiplicities.
type groups struct {
	keys   []int64   // orderKey of each distinct value
	values []float64 // the distinct values (NaN already replaced by +Inf)
	counts []int64   // multiplicity of each value
	below  []int64   // number of sample elements strictly below each value
	ties   int64     // sum of t^3 - t over the groups (exact while the sample has <= maxExactTies values)
	tiesF  float64   // the same sum in float64, for larger samples
}

// newGroups sorts a copy of v and groups equal values. zeroTies makes -0.0 and +0.0 one value (R's
// semantics) instead of two (Java's).
func newGroups(v []float64, zeroTies bool) groups {
	keys := make([]int64, len(v))
	for i, f := range v {
		if zeroTies && f == 0 {
			f = 0
		}
		keys[i] = orderKey(f)
	}
	sortKeys(keys)
	n := 0 // number of distinct keys
	for i := range keys {
		if i == 0 || keys[i] != keys[i-1] {
			n++
		}
	}
	g := groups{
		keys:   make([]int64, 0, n),
		values: make([]float64, 0, n),
		counts: make([]int64, 0, n),
		below:  make([]int64, 0, n),
	}
	var seen int64
	for i := 0; i < len(keys); {
		j := i + 1
		for j < len(keys) && keys[j] == keys[i] {
			j++
		}
		t := int64(j - i)
		g.keys = append(g.keys, keys[i])
		g.values = append(g.values, keyValue(keys[i]))
		g.counts = append(g.counts, t)
		g.below = append(g.below, seen)
		if len(v) <= maxExactTies {
			g.ties += t*t*t - t
		}
		tf := float64(t)
		g.tiesF += tf*tf*tf - tf
		seen += t
		i = j
	}
	return g
}

// sortKeys sorts order keys ascending: an LSD radix sort on 16-bit digits for large inputs (sorting
// both samples once is most of MannWhitney's cost), slices.Sort for small ones.
func sortKeys(keys []int64) {
	if len(keys) < 4096 {
		slices.Sort(keys)
		return
	}
	const bits, buckets = 16, 1 << 16
	src := keys
	dst := make([]int64, len(keys))
	var count [buckets]int
	for shift := uint(0); shift < 64; shift += bits {
		clear(count[:])
		for _, k := range src {
			// Flipping the sign bit turns the signed order into the unsigned one.
			count[(uint64(k)^(1<<63))>>shift&(buckets-1)]++
		}
		if count[(uint64(src[0])^(1<<63))>>shift&(buckets-1)] == len(src) {
			continue // every key has the same digit: this pass would not move anything
		}
		sum := 0
		for i, c := range count {
			count[i] = sum
			sum += c
		}
		for _, k := range src {
			d := (uint64(k) ^ (1 << 63)) >> shift & (buckets - 1)
			dst[count[d]] = k
			count[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &keys[0] {
		copy(keys, src)
	}
}

// ranker evaluates rank statistics of c(x - d, y) for many shifts d.
type ranker struct {
	nx, ny   int64
	x, y     groups
	zeroTies bool
}

func newRanker(x, y []float64, zeroTies bool) *ranker {
	return &ranker{
		nx: int64(len(x)), ny: int64(len(y)),
		x: newGroups(x, zeroTies), y: newGroups(y, zeroTies),
		zeroTies: zeroTies,
	}
}

// rankStat returns, for the concatenation c(x - d, y) ranked with average ties,
//
//	twoU = 2 * (sum of the ranks of the x part - nx(nx+1)/2)   (an exact integer)
//	ties = sum over tie groups of t^3 - t                       (as Kayenta's double sum)
func (r *ranker) rankStat(d float64) (twoU int64, ties float64) {
	if twoU, tie, ok := r.mergeSorted(d); ok {
		return twoU, tie
	}
	return r.mergeUnsorted(d)
}

// shiftKey returns the order key of x - d as Kayenta would rank it.
func (r *ranker) shiftKey(xv, d float64) int64 {
	v := xv - d
	if r.zeroTies && v == 0 {
		v = 0
	}
	return orderKey(v)
}

// mergeSorted walks the x groups shifted by d, in order, against the y groups. ok is false if the
// shifted keys are not non-decreasing.
func (r *ranker) mergeSorted(d float64) (twoU int64, ties float64, ok bool) {
	xv, xc := r.x.values, r.x.counts
	yk, yc, yb := r.y.keys, r.y.counts, r.y.below
	acc := newTieAcc(r.nx+r.ny, r.y.ties, r.y.tiesF)
	j, ny := 0, len(yk) // j: first y group with key >= the pending key
	prev := int64(math.MinInt64)
	var cx int64 // size of the pending x tie group (key prev)
	for i := 0; i <= len(xv); i++ {
		var k int64
		if i < len(xv) {
			k = r.shiftKey(xv[i], d)
			if k == prev {
				cx += xc[i]
				continue
			}
			if k < prev {
				return 0, 0, false
			}
		}
		if cx > 0 { // flush the pending group
			for j < ny && yk[j] < prev {
				j++
			}
			lt, cy := r.ny, int64(0)
			if j < ny {
				lt = yb[j]
				if yk[j] == prev {
					cy = yc[j]
				}
			}
			twoU += cx * (2*lt + cy)
			acc.addGroup(cx, cy)
		}
		if i < len(xv) {
			prev, cx = k, xc[i]
		}
	}
	return twoU, acc.sum(), true
}

// mergeUnsorted is the general path: shift every x value, sort the keys, then merge.
func (r *ranker) mergeUnsorted(d float64) (twoU int64, ties float64) {
	keys := make([]int64, 0, r.nx)
	for i, xv := range r.x.values {
		k := r.shiftKey(xv, d)
		for c := int64(0); c < r.x.counts[i]; c++ {
			keys = append(keys, k)
		}
	}
	sortKeys(keys)
	yg := &r.y
	acc := newTieAcc(r.nx+r.ny, yg.ties, yg.tiesF)
	j := 0
	ny := len(yg.keys)
	for i := 0; i < len(keys); {
		e := i + 1
		for e < len(keys) && keys[e] == keys[i] {
			e++
		}
		cx := int64(e - i)
		for j < ny && yg.keys[j] < keys[i] {
			j++
		}
		lt := r.ny
		var cy int64
		if j < ny {
			lt = yg.below[j]
			if yg.keys[j] == keys[i] {
				cy = yg.counts[j]
			}
		}
		twoU += cx * (2*lt + cy)
		acc.addGroup(cx, cy)
		i = e
	}
	return twoU, acc.sum()
}

// tieAcc accumulates sum(t^3 - t) over the tie groups of the concatenation, starting from the y-only
// groups and correcting the groups that an x tie group joins. Up to maxExactTies values in all the sum
// is kept as an exact integer (sum t^3 <= N^3 fits in int64); Kayenta adds the same terms as doubles,
// which is exact, hence identical, while the total stays below 2^53 (unless one tie group holds more
// than ~208,000 values). Beyond maxExactTies values it is accumulated in float64; Kayenta's own sum is
// then rounded in hash-map order, so bit equality is not defined there anyway.
type tieAcc struct {
	exact    int64
	approx   float64
	useFloat bool
}

// maxExactTies is the largest n+m for which sum(t^3 - t) cannot overflow int64.
const maxExactTies = 2_000_000

func newTieAcc(n int64, yTies int64, yTiesFloat float64) tieAcc {
	if n > maxExactTies {
		return tieAcc{approx: yTiesFloat, useFloat: true}
	}
	return tieAcc{exact: yTies}
}

// addGroup accounts for cx x values tied with cy y values (cy may be 0).
func (a *tieAcc) addGroup(cx, cy int64) {
	if a.useFloat {
		t, c := float64(cx+cy), float64(cy)
		a.approx += (t*t*t - t) - (c*c*c - c)
		return
	}
	t := cx + cy
	a.exact += (t*t*t - t) - (cy*cy*cy - cy)
}

func (a *tieAcc) sum() float64 {
	if a.useFloat {
		return a.approx
	}
	return float64(a.exact)
}
