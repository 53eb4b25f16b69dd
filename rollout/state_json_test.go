package rollout

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/internal/prevjson"
	"github.com/canaryctl/canaryctl/providers"
)

// stateJSONSample is goldenState with every part of state.json that holds a number with a unit: the
// intent's split, per-cohort request statistics and a sequential look. (It sets only fields the
// previous schema version had too: testdata/golden/state-previous.json is this state as that version
// wrote it.)
func stateJSONSample() State {
	st := goldenState()
	st.Phase, st.FinishedAt = Analyzing, st.UpdatedAt
	st.Split = providers.Split{Canary: 1000, Baseline: 1000}
	st.Intent = &Intent{Op: "set-split", Split: &providers.Split{Canary: 10000}, At: st.UpdatedAt}
	st.Addresses = map[providers.Cohort][]string{providers.Baseline: {"http://127.0.0.1:9001"}, providers.Canary: {"http://127.0.0.1:9002"}}
	up := 3.0
	st.Intervals = append(st.Intervals, Interval{Step: 1, Index: 3, At: st.UpdatedAt, Start: st.UpdatedAt, End: st.UpdatedAt,
		Split: st.Split, Baseline: 200, Canary: 200, Score: Number(math.NaN()), Verdict: "need-more-data",
		Reason: "need more data: 200 request pairs so far",
		Sequential: &sequential.Report{Verdict: sequential.NeedMoreData, Reason: "need more data: 200 request pairs so far",
			CanaryRequests: 200, BaselineRequests: 200, MoreRequests: 900, Decisions: []sequential.Decision{
				{Metric: sequential.MetricErrors, Verdict: sequential.NeedMoreData, Canary: 200, Baseline: 200, CanaryValue: 0.5, BaselineValue: 0,
					Unit: "%", Effect: 0.5, Lower: -2, Upper: &up, LowerLevel: 0.998, UpperLevel: 0.95, Margin: 0.75, EValue: 1.2, PassEValue: 3, MorePairs: 900,
					Reason: "5xx rate canary 0.50% vs baseline 0.00%: need more data"}}},
		Cohorts: map[providers.Cohort]CohortStats{
			providers.Baseline: {Requests: 200, P50Ms: 15.5, P99Ms: 19.75, ErrorRatePct: 0},
			providers.Canary:   {Requests: 200, P50Ms: 16, P99Ms: 21.25, ErrorRatePct: 0.5},
		}})
	return st
}

// TestStateJSONGolden: state.json as `canaryctl status -o json` prints it, every number's unit in
// its name (README.md, "Outputs").
func TestStateJSONGolden(t *testing.T) {
	st := stateJSONSample()
	// what the current version adds: the units of the metrics' values and effects
	for i := range st.Intervals {
		ms := st.Intervals[i].Metrics
		st.Intervals[i].Metrics = make([]MetricResult, len(ms))
		for j, m := range ms {
			m.Unit = map[string]string{"p99-latency": "ms", "5xx-rate": "%"}[m.Name]
			if m.CILower != nil {
				m.EffectUnit = m.Unit
			}
			st.Intervals[i].Metrics[j] = m
		}
		if sq := st.Intervals[i].Sequential; sq != nil {
			sq.Decisions[0].EffectUnit = "pp"
		}
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "state.json", append(data, '\n'))
}

// TestStateOfThePreviousVersionReads: state.json as the version before the units were in the names
// wrote it (basis points, "weights", "errorRatePct"; schemaVersion 1) reads as the same state, so
// status, watch and run --resume work on a rollout that version started; and prevjson, which the
// resume tests use to make such a state, writes exactly what that version wrote.
func TestStateOfThePreviousVersionReads(t *testing.T) {
	prev, err := os.ReadFile(filepath.Join("testdata", "golden", "state-previous.json"))
	if err != nil {
		t.Fatal(err)
	}
	old, err := DecodeState(prev)
	if err != nil {
		t.Fatalf("the previous version's state.json: %v", err)
	}
	want := stateJSONSample()
	if old.SchemaVersion != StateSchemaVersion {
		t.Errorf("schemaVersion read as %d, want %d (written back as the current version)", old.SchemaVersion, StateSchemaVersion)
	}
	if old.Split != want.Split || *old.Intent.Split != *want.Intent.Split || old.Intervals[0].Split != want.Intervals[0].Split {
		t.Errorf("splits read as %v, %v, %v; want %v, %v, %v", old.Split, *old.Intent.Split, old.Intervals[0].Split, want.Split, *want.Intent.Split, want.Intervals[0].Split)
	}
	if len(old.Weights) != 3 || old.Weights[0] != 2.5 {
		t.Errorf("weights read as %v", old.Weights)
	}
	last := old.Intervals[len(old.Intervals)-1]
	if c := last.Cohorts[providers.Canary]; c.ErrorRatePct != 0.5 || c.P99Ms != 21.25 {
		t.Errorf("canary cohort read as %+v", c)
	}
	// the whole state: encoded now, it is what the current version writes for the same state
	got, _ := json.Marshal(old)
	cur, _ := json.Marshal(want)
	if !bytes.Equal(got, cur) {
		t.Errorf("the previous version's state reads as\n%s\nwant\n%s", got, cur)
	}
	// prevjson reproduces the previous version's file from the current one
	rewritten, err := prevjson.Rewrite(cur)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, rewritten, prev) {
		t.Errorf("prevjson.Rewrite gives\n%s\nthe previous version wrote\n%s", rewritten, prev)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
