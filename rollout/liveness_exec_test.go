package rollout

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout/deploy"
)

// TestDeadExecCanaryIsNeverPromoted: the real exec deployer under the engine. The canary's
// deployment dies after it was ready, in the last step before its final interval (which would
// pass): its `status` command starts failing. As soon as the deployer reports it (three failures
// in a row), the next tick rolls back — not one more interval is judged — and the rollout ends
// RolledBack, never Promoted.
func TestDeadExecCanaryIsNeverPromoted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	down := filepath.Join(dir, "canary-down")
	target := func(status string) deploy.Target {
		return deploy.Target{Type: deploy.Exec, Command: "true", Teardown: "true", Addresses: []string{"http://127.0.0.1:{{.Port}}"},
			Status: status, StatusInterval: 10 * time.Millisecond}
	}
	d, err := deploy.New(deploy.Config{Baseline: target("true"), Canary: target("test ! -e '" + down + "'")},
		deploy.Options{Service: "checkout", LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, testSpec(), func(c *Config) { c.Deployer = d })
	for h.eng.State().Step < 2 || h.eng.State().Phase != Analyzing || len(h.eng.State().Intervals) < 8 {
		if p := h.tick(t.Context()); p.Terminal() {
			t.Fatalf("ended %s before the last step: %s", p, h.eng.State().Reason)
		}
	}
	judged := len(h.eng.State().Intervals)
	if err := d.Alive(t.Context(), providers.Canary); err != nil {
		t.Fatalf("the canary is not alive before it dies: %v", err)
	}
	if err := os.WriteFile(down, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The status command runs on the deployer's own (real) clock: wait until it has failed enough.
	deadline := time.Now().Add(30 * time.Second)
	for d.Alive(t.Context(), providers.Canary) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the deployer still reports the canary alive 30s after its status command started failing")
		}
		time.Sleep(10 * time.Millisecond) // polling another process's exit status: no event to wait on
	}
	if p := h.tick(t.Context()); p != RollingBack {
		t.Fatalf("tick after the canary died: %s (%s), want RollingBack", p, h.eng.State().Reason)
	}
	if n := len(h.eng.State().Intervals); n != judged {
		t.Errorf("%d intervals judged after the death", n-judged)
	}
	if r := h.eng.State().Reason; !strings.Contains(r, "canary deployment is not alive") || !strings.Contains(r, "status command") {
		t.Errorf("reason %q, want the canary named not alive by its status command", r)
	}
	if p := h.finish(); p != RolledBack {
		t.Fatalf("ended %s, want RolledBack", p)
	}
	for _, tr := range h.transitions() {
		if strings.HasSuffix(tr, ">"+string(Promoted)) {
			t.Fatalf("promoted: %v", h.transitions())
		}
	}
}
