package demo

import (
	"bytes"
	"testing"

	"github.com/canaryctl/canaryctl/rollout"
)

// The embedded spec is a real spec: the rollout package accepts it as it is.
func TestSpecIsValid(t *testing.T) {
	t.Parallel()
	spec, err := rollout.ParseSpec(bytes.NewReader(Spec))
	if err != nil {
		t.Fatalf("embedded %s: %v", SpecPath, err)
	}
	var weights []float64
	for _, s := range spec.Steps {
		weights = append(weights, s.Weight)
	}
	if len(weights) != 3 || weights[0] != 2.5 || weights[1] != 10 || weights[2] != 100 {
		t.Errorf("steps = %v, want 2.5, 10, 100", weights)
	}
	if _, ok := spec.Deploy.Canary.Vars["behaviour"]; !ok {
		t.Error("deploy.canary.vars has no behaviour for --scenario to set")
	}
	for _, b := range Behaviours {
		spec.Deploy.Canary.Vars["behaviour"] = string(b)
		if err := spec.Validate(); err != nil {
			t.Errorf("scenario %s: %v", b, err)
		}
	}
}
