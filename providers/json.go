package providers

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// JSON with units in the field names (README.md, "Outputs"): a Split is written as percentages,
// {"stablePercent":95,"baselinePercent":2.5,"canaryPercent":2.5}, and a Request's latency as
// "latencyMs". The readers also take what canaryctl wrote before the names carried units
// ({"canary":250,"baseline":250} in basis points; "latency" in nanoseconds), so a state.json or an
// admin API of the previous version still reads the same.

type splitJSON struct {
	Stable   float64 `json:"stablePercent"`
	Baseline float64 `json:"baselinePercent"`
	Canary   float64 `json:"canaryPercent"`
}

// MarshalJSON writes the split as percentages of the traffic, stable's included.
func (s Split) MarshalJSON() ([]byte, error) {
	return json.Marshal(splitJSON{Stable: bpPercent(s.Stable()), Baseline: bpPercent(s.Baseline), Canary: bpPercent(s.Canary)})
}

func bpPercent(bp int) float64 { return float64(bp) / 100 }

// UnmarshalJSON reads canaryPercent and baselinePercent (stablePercent, when given, must be the
// rest), or the basis points canary and baseline of state written before. An unknown field is an
// error naming it, so a typo in an admin API call does not silently move traffic.
func (s *Split) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("split: %w", err)
	}
	if raw == nil { // null
		return nil
	}
	var out Split
	var stable *float64
	var problems []string
	for _, k := range sortedKeys(raw) {
		v := raw[k]
		switch k {
		case "canaryPercent", "baselinePercent", "stablePercent":
			var p float64
			if err := json.Unmarshal(v, &p); err != nil {
				problems = append(problems, fmt.Sprintf("%s %s must be a number of percent, e.g. 2.5", k, v))
				continue
			}
			if k == "stablePercent" {
				stable = &p
				continue
			}
			bp, err := PercentToBP(p)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", k, err))
				continue
			}
			if k == "canaryPercent" {
				out.Canary = bp
			} else {
				out.Baseline = bp
			}
		case "canary", "baseline": // basis points, as written before the names carried units
			if _, dup := raw[k+"Percent"]; dup {
				problems = append(problems, fmt.Sprintf("%s (basis points) and %sPercent both given: keep %sPercent", k, k, k))
				continue
			}
			var bp int
			if err := json.Unmarshal(v, &bp); err != nil {
				problems = append(problems, fmt.Sprintf("%s %s must be a whole number of basis points", k, v))
				continue
			}
			if k == "canary" {
				out.Canary = bp
			} else {
				out.Baseline = bp
			}
		default:
			problems = append(problems, fmt.Sprintf("unknown field %q: use canaryPercent and baselinePercent (stable gets the rest)", k))
		}
	}
	if stable != nil && len(problems) == 0 {
		if want := bpPercent(out.Stable()); math.Abs(*stable-want) > 1e-9 {
			problems = append(problems, fmt.Sprintf("stablePercent %v is not the rest (%v): leave it out, stable gets the rest", *stable, want))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("split: %s", strings.Join(problems, "; "))
	}
	*s = out
	return nil
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type requestJSON struct {
	Time      time.Time `json:"time"`
	Cohort    Cohort    `json:"cohort"`
	Status    int       `json:"status"`
	LatencyMs float64   `json:"latencyMs"`
	ByRule    bool      `json:"byRule,omitempty"`
	Instance  string    `json:"instance,omitempty"`
	Client    string    `json:"client,omitempty"`
}

// MarshalJSON writes the latency in milliseconds ("latencyMs", to the nanosecond).
func (r Request) MarshalJSON() ([]byte, error) {
	return json.Marshal(requestJSON{Time: r.Time, Cohort: r.Cohort, Status: r.Status,
		LatencyMs: float64(r.Latency) / float64(time.Millisecond), ByRule: r.ByRule, Instance: r.Instance, Client: r.Client})
}

// UnmarshalJSON reads "latencyMs", or "latency" in nanoseconds as written before.
func (r *Request) UnmarshalJSON(b []byte) error {
	var v struct {
		requestJSON
		LatencyNs *int64 `json:"latency"`
	}
	v.LatencyMs = math.NaN()
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	*r = Request{Time: v.Time, Cohort: v.Cohort, Status: v.Status, ByRule: v.ByRule, Instance: v.Instance, Client: v.Client}
	switch {
	case !math.IsNaN(v.LatencyMs):
		r.Latency = time.Duration(math.Round(v.LatencyMs * float64(time.Millisecond)))
	case v.LatencyNs != nil:
		r.Latency = time.Duration(*v.LatencyNs)
	}
	return nil
}
