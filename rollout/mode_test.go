package rollout

import (
	"slices"
	"strings"
	"testing"
)

// TestAnalysisModesAreReachable: every registered analysis mode is what some spec runs, so a mode
// added to analysisModes without a way to choose it (or a spec choosing an unregistered one) fails.
func TestAnalysisModesAreReachable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml, want string
	}{
		{"kayenta on the builtin proxy", minimalSpec + gatewayLine + "analysis: {mode: kayenta}\n", ModeKayenta},
		{"sequential by default on per-request data", minimalSpec + gatewayLine, ModeSequential},
		{"bluegreen judges before/after", canaryOnlySpec + kongLines("bluegreen") + "steps: [{weight: 100}]\n", modeBeforeAfter},
	}
	var reached []string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSpec(strings.NewReader(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.judging(); got != tc.want {
				t.Fatalf("judging() = %q, want %q", got, tc.want)
			}
		})
		reached = append(reached, tc.want)
	}
	slices.Sort(reached)
	if names := analysisModeNames(); !slices.Equal(names, reached) {
		t.Fatalf("registered modes %v, reached by the cases %v", names, reached)
	}
}
