package kong_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers/fake"
	"github.com/canaryctl/canaryctl/providers/kong"
	"github.com/canaryctl/canaryctl/providers/kong/kongtest"
	"github.com/canaryctl/canaryctl/rollout"
)

const killSpec = `
version: 1
service: web
stable:
  addresses: ["http://10.0.0.1:80", "http://10.0.0.2:80"]
deploy:
  baseline: {type: static, addresses: ["http://127.0.0.1:18001"]}
  canary: {type: static, addresses: ["http://127.0.0.1:18002"]}
gateway:
  type: kong
  kong: {admin: "http://127.0.0.1:1", service: web}
metrics: {type: kong-log}
analysis:
  mode: kayenta
  metrics:
    - {name: latency, kind: latency, quantile: 0.5}
steps:
  - {weight: 10, duration: 2m, interval: 1m}
  - {weight: 100, duration: 2m, interval: 1m}
`

// killer is the Admin API transport of a canaryctl process that gets killed -9 at its n-th Admin
// API request: before the request is sent, or after Kong answered but before the answer is read.
// At that moment the state directory is copied, exactly as the dead process left it; every later
// request of the dead process fails (a dead process sends nothing).
type killer struct {
	base   http.RoundTripper
	mu     sync.Mutex
	n      int
	at     int  // 0: never
	after  bool // Kong applies the request, the process dies before it reads the answer
	dead   bool
	onKill func()
}

var errKilled = errors.New("killed -9")

func (k *killer) RoundTrip(req *http.Request) (*http.Response, error) {
	k.mu.Lock()
	k.n++
	n, dead := k.n, k.dead
	k.mu.Unlock()
	if dead {
		return nil, errKilled
	}
	if n == k.at {
		if k.after {
			resp, err := k.base.RoundTrip(req)
			if err == nil {
				_ = resp.Body.Close()
			}
		}
		k.mu.Lock()
		k.dead = true
		k.mu.Unlock()
		k.onKill()
		return nil, errKilled
	}
	return k.base.RoundTrip(req)
}

func (k *killer) killed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.dead
}

func (k *killer) requests() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n
}

// killFixture is Kong with the service's upstream: two stable targets of unequal weights, a target
// an operator drained (weight 0, tagged by them) and round-robin balancing.
func killFixture(t *testing.T) *kongtest.Server {
	t.Helper()
	k := kongtest.New()
	t.Cleanup(k.Close)
	for _, e := range []struct {
		kind string
		body map[string]any
	}{
		{"upstreams", map[string]any{"name": "web-up", "tags": []string{"team-web"}}},
		{"services", map[string]any{"name": "web", "host": "web-up"}},
		{"targets", map[string]any{"upstream": "web-up", "target": "10.0.0.1:80", "weight": 100, "tags": []string{"team-web"}}},
		{"targets", map[string]any{"upstream": "web-up", "target": "10.0.0.2:80", "weight": 50}},
		{"targets", map[string]any{"upstream": "web-up", "target": "10.0.0.3:80", "weight": 0, "tags": []string{"drained"}}},
	} {
		if _, err := k.Create("", e.kind, e.body); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// upstreamShape renders the upstream's targets (address=weight [tags]) and balancing.
func upstreamShape(k *kongtest.Server) string {
	var ts []string
	for _, t := range k.Targets("web-up") {
		ts = append(ts, fmt.Sprintf("%s=%d%v", t.Target, t.Weight, t.Tags))
	}
	sort.Strings(ts)
	up := k.Entity("upstreams", "web-up")
	return fmt.Sprintf("%s | %v/%v", strings.Join(ts, " "), up["algorithm"], up["hash_on"])
}

// process is one canaryctl run: a Kong router on its own transport, a store and an engine.
type process struct {
	eng   *rollout.Engine
	store *rollout.Store
	clock *fake.Clock
}

func startProcess(t *testing.T, k *kongtest.Server, dir string, tr http.RoundTripper, clock *fake.Clock) *process {
	t.Helper()
	spec, err := rollout.ParseSpec(strings.NewReader(killSpec))
	if err != nil {
		t.Fatal(err)
	}
	// Generous timeouts: on a loaded machine a call that times out changes the path the rollout
	// takes, and with it the numbering of the calls the test kills at.
	r, err := kong.New(kong.Config{AdminURL: k.AdminURL(), Service: "web", RolloutID: "web", Propagation: -1, Retries: -1,
		Timeout: time.Minute, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	store, err := rollout.OpenStore(rollout.StoreConfig{Root: dir, Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	judge := rollout.JudgeFunc(func(context.Context, []rollout.MetricPair) (rollout.Judgement, error) {
		return rollout.Judgement{Score: 100}, nil
	})
	eng, err := rollout.New(rollout.Config{Spec: spec, Gateway: r, Metrics: fake.NewMetrics(), Deployer: fake.NewDeployer(), Judge: judge,
		Store: store, Clock: clock, RollbackAttempts: 3, PromoteAttempts: 3, Backoff: time.Second, CallTimeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return &process{eng: eng, store: store, clock: clock}
}

// tick runs one tick and moves the fake clock to the engine's wake when it waits.
func (p *process) tick(t *testing.T) rollout.Phase {
	t.Helper()
	before := p.eng.State().Phase
	ph, err := p.eng.Tick(t.Context())
	if err != nil {
		t.Fatalf("Tick in %s: %v", before, err)
	}
	if ph == before && !ph.Terminal() {
		if w := p.eng.Wake(); w.After(p.clock.Now()) {
			p.clock.Advance(w.Sub(p.clock.Now()))
		} else {
			p.clock.Advance(time.Second)
		}
	}
	return ph
}

func (p *process) finish(t *testing.T) rollout.Phase {
	t.Helper()
	for range 500 {
		if ph := p.tick(t); ph.Terminal() {
			return ph
		}
	}
	t.Fatalf("rollout did not end: %s", p.eng.State().Phase)
	return ""
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestKillAtEveryAdminCallThenResume kills a targets-mode rollout (-9: nothing more is sent or
// written) at every one of its Admin API calls, before the call and after Kong applied it, then
// resumes it in a new process (run --resume): ended by an abort it must leave the upstream exactly
// as it was (weights 100/50 with their tags, the drained target at 0 with its tags, round-robin),
// also when the killed run was promoting and had already deleted stable's targets (the rollback
// creates them again from the recorded original); let go on, it must end promoted in the
// documented shape (the canary at 100 untagged, the old stable and the baseline gone, the drained
// target untouched). A resumed run that finds the rollout promoting finishes the promotion unless
// it is told to abort.
func TestKillAtEveryAdminCallThenResume(t *testing.T) {
	t.Parallel()
	original := upstreamShape(killFixture(t))
	promoted := "10.0.0.3:80=0[drained] 127.0.0.1:18002=100[] | round-robin/none"

	// Two first runs: one that would promote, one aborted in its last step (its rollback's calls
	// are killed too). The uninterrupted run gives the number of Admin API calls.
	abortAtLastStep := func(p *process) {
		if st := p.eng.State(); st.Step == 1 && st.Phase == rollout.Analyzing && len(st.Intervals) == 3 {
			if _, err := p.store.PostControl(rollout.ControlRequest{Action: rollout.ActionAbort, By: "test"}); err != nil {
				t.Error(err)
			}
		}
	}
	calls := map[string]int{}
	for _, first := range []string{"promoting", "aborted"} {
		k := killFixture(t)
		ref := &killer{base: http.DefaultTransport}
		p := startProcess(t, k, t.TempDir(), ref, fake.NewClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)))
		if err := p.eng.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		want, wantShape := rollout.Promoted, promoted
		if first == "aborted" {
			want, wantShape = rollout.RolledBack, original
		}
		for ph := rollout.Pending; !ph.Terminal(); ph = p.tick(t) {
			if first == "aborted" {
				abortAtLastStep(p)
			}
		}
		if ph := p.eng.State().Phase; ph != want {
			t.Fatalf("uninterrupted %s run ended %s: %s", first, ph, p.eng.State().Reason)
		}
		p.eng.Close()
		if got := upstreamShape(k); got != wantShape {
			t.Fatalf("uninterrupted %s run left %s, want %s", first, got, wantShape)
		}
		calls[first] = ref.requests()
	}
	t.Logf("Admin API calls of an uninterrupted rollout: %v", calls)

	phases := map[string]int{}
	var pmu sync.Mutex
	for _, firstRun := range []string{"promoting", "aborted"} {
		for at := 1; at <= calls[firstRun]; at++ {
			for _, after := range []bool{false, true} {
				for _, end := range []string{"abort", "go on"} {
					name := fmt.Sprintf("%s/call %d/%s/%s", firstRun, at, map[bool]string{false: "before sending", true: "after Kong applied it"}[after], end)
					t.Run(name, func(t *testing.T) {
						t.Parallel()
						k := killFixture(t)
						dir, snap := t.TempDir(), t.TempDir()
						clock := fake.NewClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
						kl := &killer{base: http.DefaultTransport, at: at, after: after}
						kl.onKill = func() { copyDir(t, dir, snap) }
						first := startProcess(t, k, dir, kl, clock)
						if err := first.eng.Start(t.Context()); err != nil {
							t.Fatal(err)
						}
						for i := 0; i < 500 && !kl.killed(); i++ {
							if firstRun == "aborted" {
								abortAtLastStep(first)
							}
							if first.tick(t).Terminal() {
								break
							}
						}
						first.eng.Close()
						if !kl.killed() {
							t.Fatalf("the run ended (%s) before its call %d", first.eng.State().Phase, at)
						}
						second := startProcess(t, k, snap, http.DefaultTransport, clock)
						if err := second.eng.Resume(t.Context()); err != nil {
							t.Fatalf("run --resume: %v", err)
						}
						defer second.eng.Close()
						at := second.eng.State().Phase
						pmu.Lock()
						phases[string(at)]++
						pmu.Unlock()
						want := promoted
						switch {
						case at == rollout.RollingBack:
							want = original
						case end == "abort":
							if _, err := second.store.PostControl(rollout.ControlRequest{Action: rollout.ActionAbort, By: "test"}); err != nil {
								t.Fatal(err)
							}
							want = original
						}
						ph := second.finish(t)
						if got := upstreamShape(k); got != want {
							t.Fatalf("killed in %s, resumed: ended %s (%s) with\n  %s\nwant\n  %s", at, ph, second.eng.State().Reason, got, want)
						}
						if wantPh := map[bool]rollout.Phase{true: rollout.RolledBack, false: rollout.Promoted}[want == original]; ph != wantPh {
							t.Fatalf("killed in %s, resumed: ended %s (%s), want %s", at, ph, second.eng.State().Reason, wantPh)
						}
					})
				}
			}
		}
	}
	t.Cleanup(func() { t.Logf("kill points by the phase the resumed run found: %v", phases) })
}
