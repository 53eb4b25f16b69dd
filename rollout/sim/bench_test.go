package sim

import "testing"

// BenchmarkScenario runs one rollout of each library scenario per op: ns/op is the CPU cost of a
// rollout, and their sum times 1,000 over the cores is the time make sim takes.
func BenchmarkScenario(b *testing.B) {
	scs, err := LoadScenarios([]string{library})
	if err != nil {
		b.Fatal(err)
	}
	for _, sc := range scs {
		b.Run(sc.Name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, err := runOne(b.Context(), sc, seedFor(1, sc.Name, i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
