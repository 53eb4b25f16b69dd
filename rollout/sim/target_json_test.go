package sim

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestTargetJSON: a report's target says its durations in seconds (withinSeconds,
// medianRollbackSeconds), and a report written before, with nanoseconds under within and
// medianRollback, still reads the same.
func TestTargetJSON(t *testing.T) {
	t.Parallel()
	want := Target{MinDetection: 0.95, Within: 15 * time.Minute, MedianRollback: 10 * time.Second}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"minDetection":0.95,"withinSeconds":900,"medianRollbackSeconds":10}` {
		t.Errorf("target JSON %s", got)
	}
	for _, tc := range []struct{ name, doc string }{
		{"seconds", string(b)},
		{"nanoseconds (before)", `{"minDetection":0.95,"within":900000000000,"medianRollback":10000000000}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got Target
			if err := json.Unmarshal([]byte(tc.doc), &got); err != nil || got != want {
				t.Fatalf("read %s: %+v %v, want %+v", tc.doc, got, err, want)
			}
		})
	}
	for _, tc := range []struct{ name, doc, field string }{
		{"negative", `{"withinSeconds":-1}`, "withinSeconds"},
		{"unknown field", `{"withinMinutes":15}`, "withinMinutes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got Target
			if err := json.Unmarshal([]byte(tc.doc), &got); err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("read %s: %v, want an error naming %s", tc.doc, err, tc.field)
			}
		})
	}
}

// TestReadReportBefore: simulate --from reads a results.json whose targets are in nanoseconds.
func TestReadReportBefore(t *testing.T) {
	t.Parallel()
	doc := `{"rollouts":1,"seed":1,"elapsed":"1s","results":[{"scenario":"x","expect":"rollback","rps":1,"mode":"sequential","steps":[10],
"rollouts":1,"promoted":0,"rolledBack":1,"paused":0,"undecided":0,"failed":0,"rate":1,"rateLow":0.2,"rateHigh":1,
"rateLowerClopperPearson":0.02,"rateUpperClopperPearson":1,"pausedRate":0,"promotedRate":0,"medianSeconds":5,"p90Seconds":5,
"meanCanaryRequests":1,"medianCanaryRequests":1,"target":{"minDetection":0.95,"within":900000000000},"met":true}]}`
	rep, err := ReadReport(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.Results[0].Target; got.Within != 15*time.Minute || got.MinDetection != 0.95 {
		t.Fatalf("target %+v", got)
	}
}
