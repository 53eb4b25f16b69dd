package proxy

import (
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/canaryctl/canaryctl/providers"
)

func TestSeries(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	reqs := []providers.Request{
		// step 0 [0,10s): baseline 10,20,30,40 ms; canary 100 ms (500) and 50 ms
		{Time: at(1), Cohort: providers.Baseline, Status: 200, Latency: ms(10)},
		{Time: at(2), Cohort: providers.Baseline, Status: 200, Latency: ms(20)},
		{Time: at(3), Cohort: providers.Baseline, Status: 503, Latency: ms(30)},
		{Time: at(4), Cohort: providers.Baseline, Status: 200, Latency: ms(40)},
		{Time: at(5), Cohort: providers.Canary, Status: 500, Latency: ms(100)},
		{Time: at(6), Cohort: providers.Canary, Status: 200, Latency: ms(50)},
		// excluded: by rule, stable, outside the window
		{Time: at(7), Cohort: providers.Canary, Status: 500, Latency: ms(9999), ByRule: true},
		{Time: at(8), Cohort: providers.Stable, Status: 500, Latency: ms(9999)},
		{Time: at(-1), Cohort: providers.Canary, Status: 500, Latency: ms(9999)},
		{Time: at(25), Cohort: providers.Canary, Status: 500, Latency: ms(9999)},
		// step 1 [10,20s): canary only
		{Time: at(10), Cohort: providers.Canary, Status: 200, Latency: ms(7)},
	}
	w := providers.Window{Start: t0, End: at(25), Step: 10 * time.Second} // 3 steps, the last partial
	nan := math.NaN()
	for _, tc := range []struct {
		name         string
		m            providers.Metric
		base, canary []float64
	}{
		// R-7 median of 10,20,30,40 = 25; P99 = 30 + 0.97*10 = 39.7; canary P99 of 50,100 = 99.5
		{"p50", providers.Metric{Name: "p50", Kind: providers.LatencyQuantile, Quantile: 0.5}, []float64{25, nan, nan}, []float64{75, 7, nan}},
		{"p99", providers.Metric{Name: "p99", Kind: providers.LatencyQuantile, Quantile: 0.99}, []float64{39.7, nan, nan}, []float64{99.5, 7, nan}},
		{"error rate", providers.Metric{Name: "5xx", Kind: providers.ErrorRate}, []float64{25, nan, nan}, []float64{50, 0, nan}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Series(reqs, tc.m, w)
			if err != nil {
				t.Fatal(err)
			}
			check := func(side string, got, want []float64) {
				if len(got) != len(want) {
					t.Fatalf("%s: %v, want %v", side, got, want)
				}
				for i := range want {
					if math.IsNaN(want[i]) != math.IsNaN(got[i]) || (!math.IsNaN(want[i]) && math.Abs(got[i]-want[i]) > 1e-9) {
						t.Fatalf("%s: %v, want %v", side, got, want)
					}
				}
			}
			check("baseline", got.Baseline, tc.base)
			check("canary", got.Canary, tc.canary)
		})
	}
	if _, err := Series(reqs[6:9], providers.Metric{Kind: providers.ErrorRate}, w); !errors.Is(err, providers.ErrNoData) {
		t.Fatalf("only excluded requests: %v, want ErrNoData", err)
	}
	for _, bad := range []struct {
		m providers.Metric
		w providers.Window
	}{
		{providers.Metric{Kind: providers.Query}, w},
		{providers.Metric{Kind: providers.LatencyQuantile, Quantile: 0}, w},
		{providers.Metric{Kind: providers.LatencyQuantile, Quantile: 1.5}, w},
		{providers.Metric{Kind: providers.ErrorRate}, providers.Window{Start: t0, End: t0, Step: time.Second}},
		{providers.Metric{Kind: providers.ErrorRate}, providers.Window{Start: t0, End: at(1)}},
	} {
		if _, err := Series(reqs, bad.m, bad.w); err == nil || errors.Is(err, providers.ErrNoData) {
			t.Errorf("Series(%+v, %+v) = %v, want a validation error", bad.m, bad.w, err)
		}
	}
}

func TestSampleRingIsBounded(t *testing.T) {
	t.Parallel()
	r := newRing(8)
	base := time.Unix(1000, 0)
	for i := range 20 {
		r.add(base.Add(time.Duration(i)*time.Second).UnixNano(), time.Duration(i)*time.Millisecond, 200+i, i%nCohorts, i%2 == 0, false, 0, 0, 0)
	}
	got := r.collect(base, base.Add(time.Hour), nil, nil, nil)
	if len(got) != 8 {
		t.Fatalf("kept %d samples, want the 8 newest", len(got))
	}
	for k, s := range got {
		i := 12 + k
		if s.Status != 200+i || s.Latency != time.Duration(i)*time.Millisecond || s.Cohort != cohortNames[i%nCohorts] || s.ByRule != (i%2 == 0) {
			t.Fatalf("sample %d = %+v", k, s)
		}
	}
	if got := r.collect(base.Add(15*time.Second), base.Add(17*time.Second), nil, nil, nil); len(got) != 2 {
		t.Fatalf("window [15s,17s) holds %d samples, want 2", len(got))
	}
}

// TestSampleRingMemoryBound checks the number the package doc and README state: 40 bytes a slot,
// 10 MiB at the default capacity, allocated once whatever the request rate. Not parallel:
// AllocsPerRun needs the test to itself.
func TestSampleRingMemoryBound(t *testing.T) {
	if got := unsafe.Sizeof(slot{}); got != 40 {
		t.Fatalf("a sample slot takes %d bytes; update DefaultSampleCapacity's doc and README.md", got)
	}
	r := newRing(DefaultSampleCapacity)
	if got := uintptr(len(r.slots)) * unsafe.Sizeof(slot{}); got != 10<<20 {
		t.Fatalf("ring at default capacity holds %d bytes, documented 10 MiB", got)
	}
	if got := len(newRing(1000).slots); got != 1024 {
		t.Fatalf("capacity 1000 gives %d slots, want it rounded up to 1024", got)
	}
	allocs := testing.AllocsPerRun(1000, func() { r.add(1, 2, 200, iCanary, false, false, 1, 1, 1) })
	if allocs != 0 {
		t.Fatalf("adding a sample allocates %v times", allocs)
	}
}

// TestSampleRingConcurrent: writers and readers at once (run with -race); every sample read is
// one that was written whole.
func TestSampleRingConcurrent(t *testing.T) {
	t.Parallel()
	// A tiny ring and more writers than slots, so writers wrap onto slots still being filled: the
	// case where unclaimed slots gave torn samples.
	r := newRing(4)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5000 {
				v := int64(w*10000 + i)
				r.add(v, time.Duration(v), int(v%500)+100, int(v%nCohorts), false, false, 0, 0, 0)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		for _, s := range r.collect(time.Unix(0, 0), time.Unix(0, 1<<40), nil, nil, nil) {
			v := s.Time.UnixNano()
			if int64(s.Latency) != v || s.Status != int(v%500)+100 || s.Cohort != cohortNames[v%nCohorts] {
				t.Fatalf("torn sample %+v", s)
			}
		}
		select {
		case <-done:
			return
		default:
		}
	}
}

// TestSampleRingClaim steps two writers through the interleavings that tore samples when a writer a
// whole ring behind could refill a slot another writer was filling.
func TestSampleRingClaim(t *testing.T) {
	t.Parallel()
	r := newRing(4)
	slow := r.claim(1) // writer of sample 1 is preempted mid-fill
	if slow == nil {
		t.Fatal("claim of a fresh slot refused")
	}
	if r.claim(5) != nil { // sample 5 wraps onto the same slot while it is being filled
		t.Fatal("a second writer claimed a slot that is being filled")
	}
	slow.seq.Store(2) // sample 1 published
	fast := r.claim(5)
	if fast == nil {
		t.Fatal("claim of a slot holding an older sample refused")
	}
	fast.seq.Store(6) // sample 5 published
	if r.claim(1) != nil {
		t.Fatal("an older sample overwrote a newer one")
	}
	if got := r.slots[1].seq.Load(); got != 6 {
		t.Fatalf("slot seq = %d, want 6", got)
	}
}

func quantileR7(v []float64, q float64) float64 {
	s := append([]float64(nil), v...)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(pos)
	if lo+1 >= len(s) {
		return s[lo]
	}
	return s[lo] + (pos-float64(lo))*(s[lo+1]-s[lo])
}
