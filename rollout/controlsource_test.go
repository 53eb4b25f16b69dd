package rollout

import (
	"slices"
	"strings"
	"sync"
	"testing"
)

// memControls is an in-memory ControlSource.
type memControls struct {
	mu    sync.Mutex
	reqs  []ControlRequest
	acked []string
}

func (m *memControls) PendingControls() ([]ControlRequest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.reqs), nil
}

func (m *memControls) AckControl(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.acked = append(m.acked, id)
	m.reqs = slices.DeleteFunc(m.reqs, func(r ControlRequest) bool { return r.ID == id })
	return nil
}

// TestControlSource: with Config.Controls set, control requests come from it (and are acknowledged
// there), not from the state directory.
func TestControlSource(t *testing.T) {
	t.Parallel()
	src := &memControls{}
	h := newHarness(t, testSpec(), func(c *Config) { c.Controls = src })
	h.until(Analyzing)
	h.post(ActionAbort) // into the state directory: not read
	if p := h.tick(t.Context()); p != Analyzing {
		t.Fatalf("phase %s: a request in the state directory was applied although Controls is set", p)
	}
	src.mu.Lock()
	src.reqs = append(src.reqs, ControlRequest{ID: "c1", Action: ActionAbort, By: "memory"})
	src.mu.Unlock()
	if p := h.tick(t.Context()); p != RollingBack {
		t.Fatalf("phase %s after an abort from the control source", p)
	}
	if p := h.finish(); p != RolledBack || !strings.HasPrefix(h.eng.State().Reason, "aborted by memory") {
		t.Errorf("phase %s reason %q", p, h.eng.State().Reason)
	}
	if !slices.Equal(src.acked, []string{"c1"}) {
		t.Errorf("acknowledged %v, want [c1]", src.acked)
	}
}
