package providers

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestSplitJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		want Split
		err  string // part of the error; empty: no error
	}{
		{name: "percent", in: `{"canaryPercent":2.5,"baselinePercent":2.5}`, want: Split{Canary: 250, Baseline: 250}},
		{name: "as written, stable included", in: `{"stablePercent":80,"baselinePercent":10,"canaryPercent":10}`, want: Split{Canary: 1000, Baseline: 1000}},
		{name: "finest share", in: `{"canaryPercent":0.01}`, want: Split{Canary: 1}},
		{name: "all on the canary", in: `{"canaryPercent":100}`, want: Split{Canary: 10000}},
		{name: "basis points of the previous version", in: `{"canary":250,"baseline":250}`, want: Split{Canary: 250, Baseline: 250}},
		{name: "empty object is all on stable", in: `{}`, want: Split{}},
		{name: "typo", in: `{"canaryPercnt":10}`, err: `unknown field "canaryPercnt": use canaryPercent and baselinePercent`},
		{name: "finer than a basis point", in: `{"canaryPercent":2.555}`, err: "canaryPercent: percentage 2.555 must be between 0 and 100 in steps of 0.01"},
		{name: "not a number", in: `{"canaryPercent":"ten"}`, err: `canaryPercent "ten" must be a number of percent`},
		{name: "stable is not the rest", in: `{"stablePercent":90,"canaryPercent":5}`, err: "stablePercent 90 is not the rest (95)"},
		{name: "both names", in: `{"canary":250,"canaryPercent":2.5}`, err: "canary (basis points) and canaryPercent both given"},
		{name: "not an object", in: `[1]`, err: "split:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got Split
			err := json.Unmarshal([]byte(tc.in), &got)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Unmarshal(%s) error %v, want one containing %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Unmarshal(%s) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestSplitJSONRoundTrip: every split that can be set is written with units and read back exactly.
func TestSplitJSONRoundTrip(t *testing.T) {
	t.Parallel()
	for c := 0; c <= BasisPoints; c += 37 {
		for _, b := range []int{0, 1, 250, BasisPoints - c} {
			s := Split{Canary: c, Baseline: b}
			if s.Validate() != nil {
				continue
			}
			data, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			var back Split
			if err := json.Unmarshal(data, &back); err != nil || back != s {
				t.Fatalf("%+v: wrote %s, read back %+v, %v", s, data, back, err)
			}
		}
	}
	data, _ := json.Marshal(Split{Canary: 250, Baseline: 250})
	if want := `{"stablePercent":95,"baselinePercent":2.5,"canaryPercent":2.5}`; string(data) != want {
		t.Errorf("wrote %s, want %s", data, want)
	}
}

func TestRequestJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 4, 0, 0, 123456789, time.UTC)
	r := Request{Time: at, Cohort: Canary, Status: 200, Latency: 12345678 * time.Nanosecond, ByRule: true}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"time":"2026-11-22T04:00:00.123456789Z","cohort":"canary","status":200,"latencyMs":12.345678,"byRule":true}`; string(data) != want {
		t.Errorf("wrote %s, want %s", data, want)
	}
	for _, tc := range []struct{ name, in string }{
		{name: "as written", in: string(data)},
		{name: "nanoseconds of the previous version", in: `{"time":"2026-11-22T04:00:00.123456789Z","cohort":"canary","status":200,"latency":12345678,"byRule":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var back Request
			if err := json.Unmarshal([]byte(tc.in), &back); err != nil || back != r {
				t.Fatalf("read %s as %+v, %v; want %+v", tc.in, back, err, r)
			}
		})
	}
}
