package rollout

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStateSpec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, edit, field, fix string
	}{
		{"unknown store", "state: {type: consul}\n", "state.type", "use one of local, etcd"},
		{"etcd without endpoints", "state: {type: etcd}\n", "state.endpoints", "required for type etcd"},
		{"bad endpoint", "state: {type: etcd, endpoints: [\"etcd-0:2379\"]}\n", "state.endpoints[0]", "not an etcd client URL"},
		{"relative prefix", "state: {type: etcd, endpoints: [\"https://e:2379\"], prefix: canaryctl}\n", "state.prefix", "must start with '/'"},
		{"endpoints on local", "state: {endpoints: [\"https://e:2379\"]}\n", "state.type", "for type etcd"},
		{"lease below etcd's minimum", "state: {leaseTTL: 1s}\n", "state.leaseTTL", "between 2s"},
		{"unknown field", "state: {type: etcd, endpoint: x}\n", "state.endpoint", "did you mean endpoints?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseSpec(strings.NewReader(minimalSpec + gatewayLine + tc.edit))
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("%v: want a *SpecError", err)
			}
			found := false
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(line, tc.field+" (line ") && strings.Contains(line, tc.fix) {
					found = true
				}
			}
			if !found {
				t.Errorf("no line %q with %q in:\n%v", tc.field+" (line N): ...", tc.fix, err)
			}
		})
	}
	s, err := ParseSpec(strings.NewReader(minimalSpec + gatewayLine +
		"state: {type: etcd, endpoints: [\"https://etcd-0:2379\", \"unix:///run/etcd.sock\"], prefix: /ci, leaseTTL: 5s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.State.Lease() != 5*time.Second || len(s.State.Endpoints) != 2 || s.State.Prefix != "/ci" {
		t.Fatalf("parsed %+v", s.State)
	}
	if d, _ := ParseSpec(strings.NewReader(minimalSpec + gatewayLine)); d.State.Type != "" || d.State.Lease() != DefaultLeaseTTL {
		t.Fatalf("default state %+v", d.State)
	}
}
