// Package prevjson rewrites canaryctl's JSON (state.json, events, reports) into the field names of
// the version before every number's name carried its unit: a split in basis points
// {"canary":250,"baseline":250}, "weights", "weight", "errorRatePct", no "effectUnit" and no "unit" in a
// metric result. Tests
// use it to check that state written by that version is still read, resumed and shown; its output is
// checked against files that version wrote (rollout/testdata/golden/state-previous.json).
package prevjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

// Rewrite returns doc (one JSON value) with the previous version's field names.
func Rewrite(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("prevjson: %w", err)
	}
	out, err := json.Marshal(rewrite(v))
	if err != nil {
		return nil, fmt.Errorf("prevjson: %w", err)
	}
	return out, nil
}

var renamed = map[string]string{
	"weightsPercent":   "weights",
	"weightPercent":    "weight",
	"errorRatePercent": "errorRatePct",
}

func rewrite(v any) any {
	switch x := v.(type) {
	case []any:
		for i := range x {
			x[i] = rewrite(x[i])
		}
		return x
	case map[string]any:
		if c, ok := x["canaryPercent"]; ok {
			if b, ok := x["baselinePercent"]; ok && len(x) == 3 {
				return map[string]any{"canary": bp(c), "baseline": bp(b)}
			}
		}
		out := map[string]any{}
		for k, val := range x {
			if k == "effectUnit" || k == "unit" && x["classification"] != nil { // a metric result's units were new
				continue
			}
			if n, ok := renamed[k]; ok {
				k = n
			}
			if k == "schemaVersion" || k == "v" && x["runId"] != nil { // state and report; event
				val = json.Number("1")
			}
			out[k] = rewrite(val)
		}
		return out
	}
	return v
}

func bp(v any) any {
	n, ok := v.(json.Number)
	if !ok {
		return v
	}
	f, err := n.Float64()
	if err != nil {
		return v
	}
	return int(math.Round(f * 100))
}
