package analysis

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

var benchData = flag.String("benchdata", "",
	"write the samples of BenchmarkMannWhitney/n=100k as CSV (x,y per line) to this file, for testdata/bench_wilcox.R")

// latencySample returns n log-normal "latencies" in milliseconds rounded to 1 µs, so that the sample
// has ties like real histograms-free latency data, shifted by shift.
func latencySample(r *rand.Rand, n int, shift float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = math.Round((math.Exp(3+0.5*r.NormFloat64())+shift)*1000) / 1000
	}
	return v
}

// benchSamples returns the seeded canary and baseline samples of BenchmarkMannWhitney for size n.
func benchSamples(n int) (x, y []float64) {
	r := rand.New(rand.NewPCG(42, uint64(n)))
	return latencySample(r, n, 0.5), latencySample(r, n, 0)
}

func BenchmarkMannWhitney(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000, 1_000_000} {
		x, y := benchSamples(n)
		b.Run(fmt.Sprintf("n=%s", benchName(n)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := MannWhitney(x, y, 0.98); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchName(n int) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000:
		return fmt.Sprintf("%dk", n/1_000)
	}
	return fmt.Sprint(n)
}

// TestWriteBenchmarkData is a tool, not a check: with -benchdata FILE it writes the 100k/100k benchmark
// samples so that R can time wilcox.test on exactly the same doubles (see testdata/BENCHMARKS.md).
func TestWriteBenchmarkData(t *testing.T) {
	if *benchData == "" {
		t.Skip("pass -benchdata FILE to write the benchmark samples")
	}
	x, y := benchSamples(100_000)
	f, err := os.Create(*benchData)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "x,y")
	for i := range x {
		fmt.Fprintf(w, "%s,%s\n", strconv.FormatFloat(x[i], 'g', -1, 64), strconv.FormatFloat(y[i], 'g', -1, 64))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
