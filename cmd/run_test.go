package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/internal/prevjson"
	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/proxy"
	"github.com/canaryctl/canaryctl/providers/proxy/proxytest"
	"github.com/canaryctl/canaryctl/rollout"
)

// rtBuffer is a goroutine-safe buffer for a command's output.
type rtBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *rtBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *rtBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// rtRun runs canaryctl in process with buffers and returns exit code, stdout and stderr.
func rtRun(ctx context.Context, vars map[string]string, args ...string) (int, string, string) {
	var out, errb rtBuffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Now: time.Now,
		Getenv: func(k string) string { return vars[k] },
		Logger: slog.New(slog.NewTextHandler(&errb, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	code := Run(ctx, env, args)
	return code, out.String(), errb.String()
}

// rtWorld is a real loopback setup: stable, baseline and canary HTTP servers, an external built-in
// proxy (admin API with a token) in front of them, and a bounded load generator.
type rtWorld struct {
	stable, baseline, canary *httptest.Server
	px                       *proxy.Proxy
	listen, admin            string
	canaryStatus             atomic.Int32
	dir                      string
}

const rtToken = "test-token"

func newWorld(t *testing.T) *rtWorld {
	t.Helper()
	w := &rtWorld{dir: t.TempDir()}
	w.canaryStatus.Store(200)
	serve := func(status func() int) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
			rw.WriteHeader(status())
		}))
		t.Cleanup(s.Close)
		return s
	}
	ok := func() int { return 200 }
	w.stable, w.baseline = serve(ok), serve(ok)
	w.canary = serve(func() int { return int(w.canaryStatus.Load()) })
	srv := proxytest.Start(t, proxy.Config{Upstreams: map[providers.Cohort][]string{providers.Stable: {w.stable.URL}}}, rtToken)
	w.px, w.listen, w.admin = srv.Proxy, srv.URL, srv.AdminURL
	return w
}

// load sends about rps requests/s to the proxy until ctx ends or max requests were sent.
func (w *rtWorld) load(ctx context.Context, rps, max int) {
	cl := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(rps))
	defer tick.Stop()
	for i := 0; i < max; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		go func() {
			resp, err := cl.Get(w.listen + "/")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
}

// spec writes a rollout spec for the world with the given steps YAML.
func (w *rtWorld) spec(t *testing.T, steps string) string {
	t.Helper()
	s := fmt.Sprintf(`service: shop
stable: {addresses: [%q]}
deploy:
  baseline: {type: static, addresses: [%q]}
  canary: {type: static, addresses: [%q]}
gateway: {type: builtin, admin: %q}
analysis:
  # Kayenta mode on these short steps; the sequential default is tested in rollout and by the demo.
  mode: kayenta
  resolution: 1s
  # The end-to-end tests check the pipeline, not latency sensitivity: identical servers on a loaded
  # shared machine can differ by 50%% in P99, so latency only fails beyond 10x.
  metrics:
    - {name: p99-latency, kind: latency, quantile: 0.99, mustHaveData: true, effectSize: {allowedIncrease: 10}}
    - {name: 5xx-rate, kind: error_rate, critical: true, nanStrategy: replace}
steps:
%s`, w.stable.URL, w.baseline.URL, w.canary.URL, w.admin, steps)
	p := filepath.Join(w.dir, "spec.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (w *rtWorld) pxState(t *testing.T) string {
	st, err := w.px.State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(st)
	return string(b)
}

func (w *rtWorld) vars() map[string]string {
	return map[string]string{"CANARYCTL_PROXY_TOKEN": rtToken}
}

func (w *rtWorld) stateDir() string { return filepath.Join(w.dir, "state") }

// waitPhase polls state.json until the rollout reaches phase (or fails the test after 20s).
func (w *rtWorld) waitPhase(t *testing.T, phase rollout.Phase, step int) *rollout.State {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		st, err := rollout.LoadStateFile(filepath.Join(w.stateDir(), "shop", "state.json"))
		if err == nil && st.Phase == phase && st.Step >= step {
			return st
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("rollout did not reach %s step %d (last: %+v, %v)", phase, step+1, st, err)
		}
	}
}

const fastSteps = `  - {weight: 10, duration: 5s, interval: 1s, warmup: 0s}
  - {weight: 50, duration: 5s, interval: 1s, warmup: 0s}
`

func TestRunPromotesAGoodCanaryWithReports(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go w.load(ctx, 200, 3000)
	junit, events := filepath.Join(w.dir, "junit.xml"), filepath.Join(w.dir, "events.jsonl")
	code, out, stderr := rtRun(t.Context(), w.vars(), "run", "--spec", w.spec(t, fastSteps), "--state-dir", w.stateDir(),
		"-o", "json", "--junit", junit, "--events", events, "--spinnaker")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	// stdout: the JSON report, then exactly one Spinnaker line.
	i := strings.Index(out, rollout.SpinnakerPrefix)
	if i < 0 || strings.Count(out, rollout.SpinnakerPrefix) != 1 || !strings.HasSuffix(out, "}\n") || strings.Count(out[i:], "\n") != 1 {
		t.Fatalf("stdout:\n%s", out)
	}
	var sp rollout.Spinnaker
	if err := json.Unmarshal([]byte(strings.TrimSpace(out[i+len(rollout.SpinnakerPrefix):])), &sp); err != nil || !sp.Promoted || sp.Phase != rollout.Promoted {
		t.Fatalf("spinnaker line %q: %v", out[i:], err)
	}
	var rep rollout.Report
	if err := json.Unmarshal([]byte(out[:i]), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out[:i])
	}
	if rep.Phase != rollout.Promoted || len(rep.Steps) != 2 || rep.Steps[0].Outcome != "passed" || rep.Steps[1].Outcome != "passed" {
		t.Fatalf("report %+v", rep)
	}
	// Every step passed on its final judgement (5 s steps, 1 s points: Mann-Whitney needs 5 and 5; a
	// loaded machine may judge a step fewer times), and the report holds every interval in order.
	intervals := 0
	for _, s := range rep.Steps {
		for k, iv := range s.Intervals {
			if iv.Index != k+1 {
				t.Errorf("step %d interval %d has index %d", s.Index+1, k+1, iv.Index)
			}
		}
		intervals += len(s.Intervals)
		iv := s.Intervals[len(s.Intervals)-1]
		if !iv.Final || iv.Verdict != rollout.VerdictPass || iv.Baseline < 20 || iv.Canary < 20 || len(iv.Metrics) != 2 || iv.Metrics[0].Classification == "" {
			t.Errorf("step %d: last interval %+v", s.Index+1, iv)
		}
	}
	// one progress line per interval on stderr
	if n := strings.Count(stderr, "shop step "); n != intervals {
		t.Errorf("%d progress lines, want one per interval (%d):\n%s", n, intervals, stderr)
	}
	// the canary is the new stable at the gateway
	st, err := w.px.State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(st); !strings.Contains(string(b), w.canary.URL) {
		t.Errorf("proxy state after promotion does not route to the canary: %s", b)
	}
	_ = w.pxState(t)
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	if b, err := os.ReadFile(junit); err != nil || xml.Unmarshal(b, &suites) != nil || suites.Tests != intervals+1 || suites.Failures != 0 {
		t.Errorf("junit: %v %+v", err, suites)
	}
	if b, err := os.ReadFile(events); err != nil || !strings.Contains(string(b), `"to"`) && !strings.Contains(string(b), `"type":"transition"`) {
		t.Errorf("events file: %v %q", err, b)
	}
}

func TestRunRollsBackA5xxCanary(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.canaryStatus.Store(500)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go w.load(ctx, 200, 4000)
	code, out, stderr := rtRun(t.Context(), w.vars(), "run", "--spec",
		w.spec(t, "  - {weight: 50, duration: 10s, interval: 2s, warmup: 0s}\n"), "--state-dir", w.stateDir(), "--spinnaker")
	if code != ExitFail {
		t.Fatalf("exit %d, want 3\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "shop: RolledBack") || !strings.Contains(stderr, "5xx-rate High (critical)") {
		t.Errorf("stderr does not say why:\n%s", stderr)
	}
	// One final line: the summary; no error line repeating its reason after it.
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); !strings.HasPrefix(lines[len(lines)-1], "shop: RolledBack") || strings.Contains(stderr, "canaryctl: ") {
		t.Errorf("the summary is not the one final line:\n%s", stderr)
	}
	if !strings.HasPrefix(out, rollout.SpinnakerPrefix) || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"promoted":false`) {
		t.Errorf("stdout %q", out)
	}
	if s, _ := w.px.Split(t.Context()); s != (providers.Split{}) {
		t.Errorf("split after rollback %v", s)
	}
}

func TestRunInvalidSpecExits2BeforeDeploying(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marker := filepath.Join(dir, "deployed")
	spec := fmt.Sprintf(`service: shop
stable: {addresses: ["http://127.0.0.1:1"]}
deploy:
  baseline: {type: exec, command: "touch %s", teardown: "true", addresses: ["http://127.0.0.1:2"]}
  canary: {type: exec, command: "touch %s", teardown: "true", addresses: ["http://127.0.0.1:3"]}
gateway: {type: envoy}
steps:
  - {weight: 10}
  - {weight: 5, interval: 0.5s}
`, marker, marker)
	p := filepath.Join(dir, "spec.yaml")
	os.WriteFile(p, []byte(spec), 0o644)
	code, out, stderr := rtRun(t.Context(), nil, "run", "--spec", p, "--state-dir", filepath.Join(dir, "state"), "--spinnaker")
	if code != ExitUsage {
		t.Fatalf("exit %d, want 2\n%s", code, stderr)
	}
	if !strings.HasPrefix(out, rollout.SpinnakerPrefix+`{"service":"shop","runId":"","phase":"NotStarted","promoted":false,"reason":"`) || strings.Count(out, "\n") != 1 {
		t.Errorf("spinnaker line for an invalid spec: %q", out)
	}
	for _, want := range []string{"gateway.type (line 6): unknown gateway \"envoy\"; use one of builtin", "steps[1].weight", "steps[1].interval"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("something was deployed")
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "shop")); err == nil {
		t.Error("state directory created for an invalid spec")
	}
}

// TestControlFromAnotherCommand: pause holds the split, resume restarts the step, promote skips the
// rest; abort from another command rolls back.
func TestControlFromAnotherCommand(t *testing.T) {
	t.Parallel()
	slow := "  - {weight: 10, duration: 60s, interval: 1s, warmup: 0s}\n  - {weight: 50, duration: 60s, interval: 1s, warmup: 0s}\n"
	t.Run("pause resume promote", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		ctx, stop := context.WithCancel(t.Context())
		defer stop()
		go w.load(ctx, 100, 6000)
		done := make(chan int, 1)
		var stderr string
		go func() {
			code, _, e := rtRun(t.Context(), w.vars(), "run", "--spec", w.spec(t, slow), "--state-dir", w.stateDir())
			stderr = e
			done <- code
		}()
		w.waitPhase(t, rollout.Analyzing, 0)
		code, out, errs := rtRun(t.Context(), nil, "pause", "shop", "--state-dir", w.stateDir(), "--reason", "look at dashboards")
		if code != 0 || !strings.Contains(out, "pause applied; phase Paused") {
			t.Fatalf("pause: %d %q %q", code, out, errs)
		}
		held := w.waitPhase(t, rollout.Paused, 0)
		if s, _ := w.px.Split(t.Context()); s != (providers.Split{Canary: 1000, Baseline: 1000}) || held.Split != s {
			t.Fatalf("pause did not hold the split: %v (state %v)", s, held.Split)
		}
		code, out, _ = rtRun(t.Context(), nil, "status", "--state-dir", w.stateDir())
		if code != 0 || !strings.Contains(out, "phase:     Paused") || !strings.Contains(out, "runner:    process") {
			t.Fatalf("status: %d\n%s", code, out)
		}
		if code, out, _ = rtRun(t.Context(), nil, "resume", "shop", "--state-dir", w.stateDir()); code != 0 || !strings.Contains(out, "resume applied") {
			t.Fatalf("resume: %d %q", code, out)
		}
		w.waitPhase(t, rollout.Analyzing, 0)
		if code, out, _ = rtRun(t.Context(), nil, "promote", "shop", "--state-dir", w.stateDir()); code != 0 || !strings.Contains(out, "promote applied") {
			t.Fatalf("promote: %d %q", code, out)
		}
		if code := <-done; code != ExitOK {
			t.Fatalf("run exit %d\n%s", code, stderr)
		}
		if code, _, errs := rtRun(t.Context(), nil, "abort", "shop", "--state-dir", w.stateDir()); code != ExitError || !strings.Contains(errs, "already ended Promoted") {
			t.Fatalf("abort after the end: %d %q", code, errs)
		}
	})
	t.Run("abort", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		ctx, stop := context.WithCancel(t.Context())
		defer stop()
		go w.load(ctx, 100, 6000)
		done := make(chan int, 1)
		go func() {
			code, _, _ := rtRun(t.Context(), w.vars(), "run", "--spec", w.spec(t, slow), "--state-dir", w.stateDir())
			done <- code
		}()
		w.waitPhase(t, rollout.Analyzing, 0)
		code, out, errs := rtRun(t.Context(), nil, "abort", "shop", "--state-dir", w.stateDir(), "--reason", "bad dashboards")
		if code != 0 || !strings.Contains(out, "abort applied") {
			t.Fatalf("abort: %d %q %q", code, out, errs)
		}
		if code := <-done; code != ExitFail {
			t.Fatalf("run exit %d, want 3", code)
		}
		if s, _ := w.px.Split(t.Context()); s != (providers.Split{}) {
			t.Errorf("split %v after abort", s)
		}
	})
}

// TestHelperRunProcess is not a test: it is canaryctl in a child process (see rtChild).
func TestHelperRunProcess(t *testing.T) {
	if os.Getenv("CANARYCTL_TEST_CHILD") != "1" {
		t.Skip("helper process")
	}
	var args []string
	json.Unmarshal([]byte(os.Getenv("CANARYCTL_TEST_ARGS")), &args)
	os.Exit(Main(args))
}

// rtChild starts canaryctl as a real child process (the test binary running TestHelperRunProcess).
func rtChild(t *testing.T, vars map[string]string, args ...string) (*exec.Cmd, *rtBuffer) {
	t.Helper()
	a, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRunProcess$")
	cmd.Env = append(os.Environ(), "CANARYCTL_TEST_CHILD=1", "CANARYCTL_TEST_ARGS="+string(a))
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out rtBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, &out
}

// TestKilledRunResumes: a run SIGKILLed in the middle of a step leaves its state; run --resume
// re-reads the gateway and finishes the rollout, and abort rolls back a rollout nobody runs. So does
// run --resume on the state as the previous version wrote it (schemaVersion 1, before the units were
// in the field names: prevjson), as when canaryctl is upgraded in the middle of a rollout.
func TestKilledRunResumes(t *testing.T) {
	t.Parallel()
	for _, then := range []string{"resume", "abort", "resume-previous-version"} {
		t.Run(then, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			ctx, stop := context.WithCancel(t.Context())
			defer stop()
			go w.load(ctx, 100, 6000)
			steps := "  - {weight: 10, duration: 5s, interval: 1s, warmup: 0s}\n  - {weight: 50, duration: 5s, interval: 1s, warmup: 0s}\n"
			spec := w.spec(t, steps)
			child, out := rtChild(t, w.vars(), "run", "--spec", spec, "--state-dir", w.stateDir())
			st := w.waitPhase(t, rollout.Analyzing, 0)
			for len(st.Intervals) == 0 {
				st = w.waitPhase(t, rollout.Analyzing, 0)
			}
			if err := child.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			child.Wait()
			if s, _ := w.px.Split(t.Context()); s != (providers.Split{Canary: 1000, Baseline: 1000}) {
				t.Fatalf("split after the crash %v (child output %s)", s, out)
			}
			code, sout, _ := rtRun(t.Context(), nil, "status", "shop", "--state-dir", w.stateDir())
			if code != 0 || !strings.Contains(sout, "runner:    NONE") {
				t.Fatalf("status after the crash: %d\n%s", code, sout)
			}
			if then == "resume-previous-version" {
				writePreviousVersion(t, filepath.Join(w.stateDir(), "shop"))
				code, sout, _ := rtRun(t.Context(), nil, "status", "shop", "--state-dir", w.stateDir())
				if code != 0 || !strings.Contains(sout, "stable 80% baseline 10% canary 10%") {
					t.Fatalf("status of the previous version's state: %d\n%s", code, sout)
				}
			}
			if then == "abort" {
				code, sout, serr := rtRun(t.Context(), w.vars(), "abort", "shop", "--state-dir", w.stateDir())
				if code != 0 || !strings.Contains(sout, "RolledBack") {
					t.Fatalf("abort: %d %q %q", code, sout, serr)
				}
				if s, _ := w.px.Split(t.Context()); s != (providers.Split{}) {
					t.Fatalf("split after abort %v", s)
				}
				return
			}
			// The saved spec is used; step 1 restarts after the gateway's split was read back.
			code, _, rerr := rtRun(t.Context(), w.vars(), "run", "--resume", "--service", "shop", "--state-dir", w.stateDir(), "-o", "json")
			if code != ExitOK {
				t.Fatalf("resumed run exit %d\n%s", code, rerr)
			}
			if !strings.Contains(w.pxState(t), w.canary.URL) {
				t.Errorf("canary not promoted: %s", w.pxState(t))
			}
			evs, _ := os.ReadFile(filepath.Join(w.stateDir(), "shop", "events.jsonl"))
			if !strings.Contains(string(evs), `"type":"resumed"`) || !strings.Contains(string(evs), `"observed":{"stablePercent":80,"baselinePercent":10,"canaryPercent":10}`) {
				t.Errorf("no resumed event with the observed split:\n%s", evs)
			}
		})
	}
}

// TestSignalRollsBackThenExits130: SIGTERM to a real run process sends traffic back to stable before
// it exits 130.
func TestSignalRollsBackThenExits130(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go w.load(ctx, 100, 6000)
	child, out := rtChild(t, w.vars(), "run", "--spec", w.spec(t, "  - {weight: 10, duration: 60s, interval: 1s, warmup: 0s}\n"), "--state-dir", w.stateDir())
	w.waitPhase(t, rollout.Analyzing, 0)
	if s, _ := w.px.Split(t.Context()); s.Canary != 1000 {
		t.Fatalf("split before the signal %v", s)
	}
	child.Process.Signal(syscall.SIGTERM)
	err := child.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitInterrupted {
		t.Fatalf("exit %v, want 130\n%s", err, out)
	}
	if s, _ := w.px.Split(t.Context()); s != (providers.Split{}) {
		t.Errorf("split after SIGTERM %v", s)
	}
	st, _ := rollout.LoadStateFile(filepath.Join(w.stateDir(), "shop", "state.json"))
	if st == nil || st.Phase != rollout.RolledBack || !st.Interrupted {
		t.Errorf("state %+v", st)
	}
}

// TestDetachOnPauseThenPromoteFromALaterStep: a run exits 4 at an approval step; a later CI step
// queues promote and resumes the run, which finishes.
func TestDetachOnPauseThenPromoteFromALaterStep(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go w.load(ctx, 200, 4000)
	steps := "  - {weight: 10, duration: 5s, interval: 1s, warmup: 0s}\n  - {weight: 100, duration: 5s, interval: 1s, warmup: 0s, approval: true}\n"
	code, out, stderr := rtRun(t.Context(), w.vars(), "run", "--spec", w.spec(t, steps), "--state-dir", w.stateDir(), "--detach-on-pause", "--spinnaker")
	if code != ExitMarginal || !strings.Contains(stderr, "needs approval") || !strings.Contains(out, `"phase":"Paused"`) {
		t.Fatalf("exit %d, want 4\n%s\n%s", code, out, stderr)
	}
	if s, _ := w.px.Split(t.Context()); s != (providers.Split{Canary: 1000, Baseline: 1000}) {
		t.Fatalf("split while waiting for approval %v, want the previous step's", s)
	}
	code, out, _ = rtRun(t.Context(), nil, "promote", "shop", "--state-dir", w.stateDir())
	if code != 0 || !strings.Contains(out, "queued") {
		t.Fatalf("promote without a runner: %d %q", code, out)
	}
	code, _, stderr = rtRun(t.Context(), w.vars(), "run", "--resume", "--service", "shop", "--state-dir", w.stateDir())
	if code != ExitOK {
		t.Fatalf("resumed run exit %d\n%s", code, stderr)
	}
	if !strings.Contains(w.pxState(t), w.canary.URL) {
		t.Errorf("not promoted: %s", w.pxState(t))
	}
}

// TestRunPreflightsTheProxyAdminAPI: an external proxy whose admin API does not answer stops the run
// before anything is deployed, quickly, naming gateway.admin (it used to surface at the first split
// and the rollback then retried the dead address for 90 s).
func TestRunPreflightsTheProxyAdminAPI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marker := filepath.Join(dir, "deployed")
	spec := fmt.Sprintf(`service: shop
stable: {addresses: ["http://127.0.0.1:1"]}
deploy:
  baseline: {type: exec, command: "touch %s", teardown: "true", addresses: ["http://127.0.0.1:2"]}
  canary: {type: exec, command: "touch %s", teardown: "true", addresses: ["http://127.0.0.1:3"]}
gateway: {type: builtin, admin: "http://127.0.0.1:1"}
metrics: {type: builtin}
steps:
  - {weight: 10}
`, marker, marker)
	p := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, _, stderr := rtRun(t.Context(), map[string]string{"CANARYCTL_PROXY_TOKEN": "x"}, "run", "--spec", p, "--state-dir", filepath.Join(dir, "state"))
	if code == 0 || !strings.Contains(stderr, "gateway.admin http://127.0.0.1:1") || !strings.Contains(stderr, "did not answer") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("the run took %s to give up on an unreachable admin API", took)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("something was deployed")
	}
}

// writePreviousVersion rewrites a service's state.json and events.jsonl as the previous version of
// canaryctl wrote them (prevjson: its file is checked against one that version wrote).
func writePreviousVersion(t *testing.T, dir string) {
	t.Helper()
	st, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	old, err := prevjson.Rewrite(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(old), `"schemaVersion":1`) || !strings.Contains(string(old), `"split":{"baseline":1000,"canary":1000}`) {
		t.Fatalf("not the previous version's state: %s", old)
	}
	evs, err := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(evs)), "\n") {
		o, err := prevjson.Rewrite([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(o))
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "events.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}
