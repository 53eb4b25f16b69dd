package analysis

import (
	"math"
	"slices"
)

// naiveWilcoxonDiff is Kayenta's wilcoxonDiff written the slow, literal way: materialize c(x - d, y),
// rank it with commons-math NaturalRanking(MAXIMAL, AVERAGE) semantics (Java Double.compare order, NaN
// as +Inf), sum the x ranks in index order and the tie terms per rank value. It is the oracle for the
// merge-based ranker.
func naiveWilcoxonDiff(x, y []float64, d, zq float64) (float64, error) {
	n := len(x) + len(y)
	v := make([]float64, 0, n)
	for _, xi := range x {
		v = append(v, xi-d)
	}
	v = append(v, y...)
	for i := range v {
		if math.IsNaN(v[i]) {
			v[i] = math.Inf(1)
		}
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	javaCompare := func(a, b float64) int {
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		ab, bb := int64(math.Float64bits(a)), int64(math.Float64bits(b))
		switch {
		case ab == bb:
			return 0
		case ab < bb: // same value, different sign of zero: -0 has the sign bit (negative int64)
			return -1
		default:
			return 1
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int { return javaCompare(v[a], v[b]) })
	ranks := make([]float64, n)
	for i := 0; i < n; {
		j := i + 1
		for j < n && javaCompare(v[idx[j]], v[idx[i]]) == 0 {
			j++
		}
		c := float64(i + 1) // rank of the first of the tie run
		avg := (2*c + float64(j-i) - 1) / 2
		for k := i; k < j; k++ {
			ranks[idx[k]] = avg
		}
		i = j
	}
	counts := map[float64]float64{}
	for _, r := range ranks {
		counts[r]++
	}
	keys := make([]float64, 0, len(counts))
	for r := range counts {
		keys = append(keys, r)
	}
	slices.Sort(keys)
	var ties float64
	for _, r := range keys {
		t := counts[r]
		ties += math.Pow(t, 3) - t
	}
	xLen, yLen := float64(len(x)), float64(len(y))
	var sum float64
	for i := range x {
		sum += ranks[i]
	}
	dz := sum - xLen*(xLen+1)/2 - xLen*yLen/2
	sigma := math.Sqrt((xLen * yLen / 12) * ((xLen + yLen + 1) - ties/((xLen+yLen)*(xLen+yLen-1))))
	if sigma == 0 {
		return 0, ErrAllTied
	}
	return (dz-sign(dz)*0.5)/sigma - zq, nil
}

// naiveMannWhitney is calculateConfidenceInterval on top of naiveWilcoxonDiff.
func naiveMannWhitney(x, y []float64, conf float64) (Interval, error) {
	w := func(z float64) func(float64) (float64, error) {
		return func(d float64) (float64, error) { return naiveWilcoxonDiff(x, y, d, z) }
	}
	muMin, muMax := scalaMin(x)-scalaMax(y), scalaMax(x)-scalaMin(y)
	zq := NormalQuantile((1.0 - conf) / 2)
	root := func(z float64) (float64, error) {
		fLo, err := w(z)(muMin)
		if err != nil {
			return 0, err
		}
		fHi, err := w(z)(muMax)
		if err != nil {
			return 0, err
		}
		if fLo <= 0 {
			return muMin, nil
		}
		if fHi >= 0 {
			return muMax, nil
		}
		return zeroin(muMin, muMax, fLo, fHi, w(z))
	}
	lo, err := root(-zq)
	if err != nil {
		return Interval{}, err
	}
	hi, err := root(zq)
	if err != nil {
		return Interval{}, err
	}
	fLo, err := w(0)(muMin)
	if err != nil {
		return Interval{}, err
	}
	fHi, err := w(0)(muMax)
	if err != nil {
		return Interval{}, err
	}
	est, err := zeroin(muMin, muMax, fLo, fHi, w(0))
	if err != nil {
		return Interval{}, err
	}
	return Interval{lo, hi, est}, nil
}
