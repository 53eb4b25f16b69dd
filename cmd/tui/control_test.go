package tui

import (
	"strings"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
)

// stableControlState is analyzingState with analysis.control stable: no baseline share, stable's
// requests are the control's.
func stableControlState() *rollout.State {
	st := analyzingState()
	st.Control = rollout.ControlStable
	st.Split = providers.Split{Canary: 1000}
	for i := range st.Intervals {
		iv := &st.Intervals[i]
		iv.Control = rollout.ControlStable
		iv.Split = st.Split
		if b, ok := iv.Cohorts[providers.Baseline]; ok {
			delete(iv.Cohorts, providers.Baseline)
			iv.Cohorts[providers.Stable] = b
		}
	}
	return st
}

// TestViewStableControl: with a stable control the monitor names stable where it names the baseline
// otherwise: the traffic legend, the cohort rows, the metrics header and the plain event lines.
func TestViewStableControl(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		w, h      int
		want, not []string
	}{
		{name: "120x40", w: 120, h: 40,
			want: []string{"stable 90% (the control, no baseline)   █ canary 10%", "░ stable       240 req · p50    12.3ms", "metric          stable", "CI canary−stable"},
			not:  []string{"baseline 0%", "▒ baseline", "canary−baseline"}},
		{name: "80x24", w: 80, h: 24,
			want: []string{"░|█ req 240|236 · p50 12.3|12.9ms", "CI canary−stable"},
			not:  []string{"▒|█"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := withSnapshot(newTestModel(nil, nil), stableControlState())
			m.width, m.height = tc.w, tc.h
			v := m.View()
			for _, w := range tc.want {
				if !strings.Contains(v, w) {
					t.Errorf("view lacks %q:\n%s", w, v)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(v, w) {
					t.Errorf("view has %q:\n%s", w, v)
				}
			}
		})
	}
	iv := stableControlState().Intervals[1]
	if got := FormatEvent(rollout.Event{Type: rollout.EvInterval, Interval: &iv}); !strings.Contains(got, "(requests stable 41 canary 40)") {
		t.Errorf("event line %q does not name stable", got)
	}
}
