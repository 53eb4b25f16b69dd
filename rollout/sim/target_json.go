package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// targetJSON is Target in a report's JSON: durations in seconds, the unit in the field name, as in
// every other JSON canaryctl writes. WithinNs and MedianRollbackNs are the names a report written
// before had (time.Duration's nanoseconds): still read, never written.
type targetJSON struct {
	MaxFalseRollbacks     float64  `json:"maxFalseRollbacks,omitempty"`
	MaxUpperBound         float64  `json:"maxUpperBound,omitempty"`
	MinDetection          float64  `json:"minDetection,omitempty"`
	WithinSeconds         float64  `json:"withinSeconds,omitempty"`
	MedianRollbackSeconds float64  `json:"medianRollbackSeconds,omitempty"`
	WithinNs              *float64 `json:"within,omitempty"`
	MedianRollbackNs      *float64 `json:"medianRollback,omitempty"`
}

// MarshalJSON writes Within and MedianRollback as withinSeconds and medianRollbackSeconds.
func (t Target) MarshalJSON() ([]byte, error) {
	return json.Marshal(targetJSON{
		MaxFalseRollbacks: t.MaxFalseRollbacks, MaxUpperBound: t.MaxUpperBound, MinDetection: t.MinDetection,
		WithinSeconds: t.Within.Seconds(), MedianRollbackSeconds: t.MedianRollback.Seconds(),
	})
}

// UnmarshalJSON reads what MarshalJSON writes, and a report of the version before (within and
// medianRollback in nanoseconds), so that simulate --from renders an older results.json.
func (t *Target) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j targetJSON
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	within, err := seconds("withinSeconds", j.WithinSeconds)
	if err != nil {
		return err
	}
	median, err := seconds("medianRollbackSeconds", j.MedianRollbackSeconds)
	if err != nil {
		return err
	}
	if j.WithinNs != nil && within == 0 {
		within = time.Duration(*j.WithinNs)
	}
	if j.MedianRollbackNs != nil && median == 0 {
		median = time.Duration(*j.MedianRollbackNs)
	}
	*t = Target{MaxFalseRollbacks: j.MaxFalseRollbacks, MaxUpperBound: j.MaxUpperBound, MinDetection: j.MinDetection,
		Within: within, MedianRollback: median}
	return nil
}

func seconds(field string, s float64) (time.Duration, error) {
	if s < 0 || math.IsNaN(s) || s > math.MaxInt64/float64(time.Second) {
		return 0, fmt.Errorf("target.%s: %v is not a duration in seconds", field, s)
	}
	return time.Duration(math.Round(s * float64(time.Second))), nil
}
