package sequential

import "math"

// Histogram bins positive values (latencies in milliseconds) on a log scale with 1% wide bins from
// 0.01 ms to about 10^7 ms (values outside go to the end bins), and answers running quantiles with a
// cursor that moves only as far as the data moved it: O(1) amortised per added value for a stable
// quantile. The zero value is not usable; use NewHistogram.
type Histogram struct {
	counts []int64
	n      int64
	// cursor: bin cur and the number of values in bins below it
	cur   int
	below int64
}

const (
	histMin    = 0.01
	histGrowth = 1.01
	histBins   = 2084 // ceil(log(1e9)/log(1.01)) + 1
	histMax    = 1e7
)

var logHistGrowth = math.Log(histGrowth)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{counts: make([]int64, histBins)} }

func histBin(v float64) int {
	switch {
	case !(v > histMin): // also NaN
		return 0
	case v >= histMax: // also +Inf
		return histBins - 1
	}
	return min(int(math.Log(v/histMin)/logHistGrowth), histBins-1)
}

// binValue is the geometric middle of bin i.
func binValue(i int) float64 { return histMin * math.Pow(histGrowth, float64(i)+0.5) }

// Add records v.
func (h *Histogram) Add(v float64) {
	i := histBin(v)
	h.counts[i]++
	h.n++
	if i < h.cur {
		h.below++
	}
}

// N is the number of values recorded.
func (h *Histogram) N() int64 { return h.n }

// Quantile returns the q-quantile (0 < q < 1) to within the bin width (1%): the middle of the bin that
// holds the ceil(q n)-th smallest value. NaN when empty.
func (h *Histogram) Quantile(q float64) float64 {
	if h.n == 0 || !(q >= 0 && q <= 1) {
		return math.NaN()
	}
	rank := max(int64(math.Ceil(q*float64(h.n))), 1)
	for h.below+h.counts[h.cur] < rank {
		h.below += h.counts[h.cur]
		h.cur++
	}
	for h.below >= rank {
		h.cur--
		h.below -= h.counts[h.cur]
	}
	return binValue(h.cur)
}

// ShareAbove is the share of recorded values in bins above the bin of t (an approximation of
// P(X > t) to the bin width). NaN when empty.
func (h *Histogram) ShareAbove(t float64) float64 {
	if h.n == 0 {
		return math.NaN()
	}
	var above int64
	for i := histBin(t) + 1; i < histBins; i++ {
		above += h.counts[i]
	}
	return float64(above) / float64(h.n)
}
