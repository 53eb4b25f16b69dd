package rollout

import "encoding/json"

// Field names before every number's name carried its unit (README.md, "Outputs"): a state.json
// written by the previous version of canaryctl still reads the same, so `status`, `watch` and
// `run --resume` work on a rollout it started. (The split's old basis points are read by
// providers.Split itself.)

// UnmarshalJSON reads state.json: "weightsPercent", or "weights" as written before.
func (s *State) UnmarshalJSON(b []byte) error {
	type plain State // without this method
	v := struct {
		*plain
		OldWeights []float64 `json:"weights"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if s.Weights == nil {
		s.Weights = v.OldWeights
	}
	return nil
}

// UnmarshalJSON reads "errorRatePercent", or "errorRatePct" as written before.
func (c *CohortStats) UnmarshalJSON(b []byte) error {
	type plain CohortStats
	v := struct {
		*plain
		OldErrorRate json.RawMessage `json:"errorRatePct"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.OldErrorRate != nil && !hasKey(b, "errorRatePercent") {
		return json.Unmarshal(v.OldErrorRate, &c.ErrorRatePct)
	}
	return nil
}

func hasKey(b []byte, key string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return false
	}
	_, ok := m[key]
	return ok
}
