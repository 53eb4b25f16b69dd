package traffic

import (
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// BenchmarkGenerator: one op is one request generated and emitted, in 250 ms looks (the engine's
// default look interval) at 200 req/s with a diurnal cycle, bursts and a 2.5%/2.5% split.
func BenchmarkGenerator(b *testing.B) {
	m := base()
	m.Rate.Diurnal.Amplitude = 0.3
	m.Events = []Event{{Episode: Episode{Every: 5 * time.Minute, Duration: 15 * time.Second}, Load: 2.5, Name: "burst"}}
	g := New(m, t0, fixed{Split: providers.Split{Canary: 250, Baseline: 250}}, [2]uint64{1, 2})
	n := 0
	at := t0
	sink := func(providers.Request) { n++ }
	for b.Loop() {
		for n == 0 {
			at = at.Add(250 * time.Millisecond)
			g.Advance(at, sink)
		}
		n--
	}
}
