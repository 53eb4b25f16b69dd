//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/rollout"
	"github.com/canaryctl/canaryctl/rollout/demo"
)

// proc is a canaryctl process running in the background.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
}

type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{} // gets a token after every write, for waitFor
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written != nil {
		select {
		case s.written <- struct{}{}:
		default:
		}
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// start starts canaryctl in the background; the test's cleanup kills it if it still runs.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{cmd: cmd, stderr: &syncBuffer{written: make(chan struct{}, 1)}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = io.Discard, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-p.done
			}
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("canaryctl %s still running after %s; stderr:\n%s", strings.Join(p.cmd.Args[1:], " "), timeout, p.stderr.String())
		return -1
	}
}

// waitFor returns the first submatch of re in the process's stderr, waiting for each write (an
// event, not a poll) until timeout or the process's end.
func (p *proc) waitFor(t *testing.T, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if m := re.FindStringSubmatch(p.stderr.String()); m != nil {
			return m[1]
		}
		select {
		case <-p.stderr.written:
		case <-p.done:
			if m := re.FindStringSubmatch(p.stderr.String()); m != nil {
				return m[1]
			}
			t.Fatalf("canaryctl %s ended before printing %q; stderr:\n%s", strings.Join(p.cmd.Args[1:], " "), re, p.stderr.String())
		case <-deadline:
			t.Fatalf("canaryctl %s did not print %q within %s; stderr:\n%s", strings.Join(p.cmd.Args[1:], " "), re, timeout, p.stderr.String())
		}
	}
}

// embeddedProxy is the address `canaryctl run` prints for its embedded proxy (gateway.listen
// 127.0.0.1:0: the process binds a free port itself; a test never hands out a port it closed).
var embeddedProxy = regexp.MustCompile(`embedded proxy on http://(\S+) `)

// waitState polls state.json until cond holds.
func waitState(t *testing.T, dir, service string, timeout time.Duration, what string, cond func(*rollout.State) bool) *rollout.State {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *rollout.State
	for time.Now().Before(deadline) {
		if st, err := rollout.LoadStateFile(filepath.Join(dir, service, "state.json")); err == nil {
			last = st
			if cond(st) {
				return st
			}
		}
		time.Sleep(50 * time.Millisecond) // polling another process's file: there is nothing to wait on
	}
	if last != nil {
		t.Fatalf("state never reached %q within %s; last phase %s step %d: %s", what, timeout, last.Phase, last.Step, last.Reason)
	}
	t.Fatalf("no state.json within %s (waiting for %q)", timeout, what)
	return nil
}

// serviceProcs returns the pids of running `canaryctl demo-service --version V` processes of this
// test binary, for the given versions.
func serviceProcs(versions ...string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) < 2 || args[0] != bin || args[1] != "demo-service" {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i > 0 && bytes.HasPrefix(bytes.TrimSpace(stat[i+1:]), []byte("Z")) {
				continue // a zombie: exited
			}
		}
		for i := range args[:len(args)-1] {
			if args[i] == "--version" && containsString(versions, args[i+1]) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// killServices stops leftover service processes of the given versions (cleanup after tests whose
// canary legitimately stays up as the new stable).
func killServices(versions ...string) {
	for _, pid := range serviceProcs(versions...) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func assertNoServices(t *testing.T, versions ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := serviceProcs(versions...)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("demo-service processes (versions %v) left running: %v", versions, pids)
			killServices(versions...)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// demoOut is the stdout of `canaryctl demo -o json --spinnaker`: the JSON document, then the line.
type demoOut struct {
	Report rollout.Report `json:"report"`
	Demo   struct {
		Load            demo.Stats `json:"load"`
		SecondsToStable *float64   `json:"secondsToStable"`
		FailedRequests  int        `json:"failedRequests"`
	} `json:"demo"`
}

func parseDemo(t *testing.T, stdout string) (demoOut, map[string]any) {
	t.Helper()
	src := strings.NewReader(stdout)
	dec := json.NewDecoder(src)
	var d demoOut
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("demo -o json: %v\n%s", err, stdout)
	}
	rest, _ := io.ReadAll(io.MultiReader(dec.Buffered(), src))
	lines := strings.Split(strings.TrimSpace(string(rest)), "\n")
	var spin map[string]any
	if len(lines) != 1 || !strings.HasPrefix(lines[0], rollout.SpinnakerPrefix) {
		t.Fatalf("want exactly one Spinnaker line after the report, got %q", rest)
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[0], rollout.SpinnakerPrefix)), &spin); err != nil {
		t.Fatalf("Spinnaker line is not JSON: %v", err)
	}
	return d, spin
}

func TestDemo(t *testing.T) {
	skipShort(t)
	t.Parallel()
	t.Cleanup(func() { assertNoServices(t, "v1", "v2") }) // after every scenario has ended
	t.Run("interrupted", func(t *testing.T) { testDemoInterrupted(t, os.Interrupt) })
	t.Run("hung-up", func(t *testing.T) { testDemoInterrupted(t, syscall.SIGHUP) }) // a closed terminal
	tests := []struct {
		scenario string
		code     int
		phase    rollout.Phase
		reason   string
	}{
		{scenario: "good", code: 0, phase: rollout.Promoted, reason: "canary is the new stable"},
		// analysis.mode sequential (the default for the demo's builtin metrics) names the failed test
		{scenario: "slow", code: 3, phase: rollout.RolledBack, reason: "the canary is worse on latency-"},
		{scenario: "errors", code: 3, phase: rollout.RolledBack, reason: "the canary is worse on 5xx-"},
		// one broken route (2% of the load): its own tests (analysis.routes, on by default) or, at the
		// 50/50 step, the service's 5xx tests roll it back, whichever has the evidence first
		{scenario: "route", code: 3, phase: rollout.RolledBack, reason: "5xx-"},
	}
	for _, tc := range tests {
		t.Run(tc.scenario, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			r := run(t, 3*time.Minute, nil, "demo", "--scenario", tc.scenario, "-o", "json", "--spinnaker")
			t.Logf("demo --scenario %s: exit %d in %s", tc.scenario, r.code, time.Since(start).Round(time.Second))
			if r.code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", r.code, tc.code, r.stderr)
			}
			d, spin := parseDemo(t, r.stdout)
			if d.Report.Phase != tc.phase || !strings.Contains(d.Report.Reason, tc.reason) {
				t.Errorf("report: %s %q, want %s with %q", d.Report.Phase, d.Report.Reason, tc.phase, tc.reason)
			}
			if spin["phase"] != string(tc.phase) || spin["promoted"] != (tc.phase == rollout.Promoted) {
				t.Errorf("Spinnaker line: %v", spin)
			}
			if !strings.Contains(r.stderr, tc.reason) {
				t.Errorf("stderr does not print the reason %q:\n%s", tc.reason, r.stderr)
			}
			if !strings.Contains(r.stderr, "| interval 1 |") {
				t.Errorf("stderr has no progress lines:\n%s", r.stderr)
			}
			switch tc.scenario {
			case "route":
				if n := d.Demo.Load.FailedBy["v1"]; n != 0 {
					t.Errorf("%d client requests failed on v1 in scenario route", n)
				}
			case "good", "slow":
				if d.Demo.FailedRequests != 0 {
					t.Errorf("%d client requests failed in scenario %s", d.Demo.FailedRequests, tc.scenario)
				}
			case "errors":
				if d.Demo.SecondsToStable == nil {
					t.Fatalf("no measurement of the time to stable: %+v", d.Demo)
				}
				secs, failed := *d.Demo.SecondsToStable, d.Demo.FailedRequests
				t.Logf("errors scenario: %.1f s from the first canary 5xx to canary weight 0; %d of %d client requests failed",
					secs, failed, d.Demo.Load.Sent)
				if secs >= 30 || failed >= 30 {
					t.Errorf("aim missed: %.1f s (aim < 30 s) and %d failed requests (aim < 30)", secs, failed)
				}
			}
		})
	}
}

// A SIGINT (or a SIGHUP: the terminal closed) in the middle of a step sends traffic back to stable,
// stops every demo process and exits 130.
func testDemoInterrupted(t *testing.T, sig os.Signal) {
	t.Parallel()
	p := start(t, nil, "demo", "--scenario", "good", "--state-dir", t.TempDir())
	p.waitFor(t, regexp.MustCompile(`(\| interval 1 \|)`), time.Minute) // a judgement: an event, not a poll
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, time.Minute); code != 130 {
		t.Errorf("exit code %d, want 130; stderr:\n%s", code, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "RolledBack") && !strings.Contains(p.stderr.String(), "ROLLED BACK") {
		t.Errorf("stderr does not say the rollout was rolled back:\n%s", p.stderr.String())
	}
	// One final line, saying it once: no "interrupted: interrupted", no error line repeating it.
	if e := p.stderr.String(); strings.Contains(e, "interrupted: interrupted") || strings.Contains(e, "canaryctl: ") {
		t.Errorf("the outcome is said more than once:\n%s", e)
	}
	// TestDemo's cleanup checks that no demo-service (v1, v2) outlived the demos.
}

// specFor writes a rollout spec whose baseline and canary are demo-service processes of versions
// vb and vc; the steps' durations are short and the only metric is the 5xx rate, so a good canary
// passes every judgement.
func specFor(t *testing.T, service, stable, gateway, vb, vc string, step1 time.Duration) string {
	t.Helper()
	target := func(v string) string {
		return fmt.Sprintf(`{type: process, command: %q, version: %s, args: [demo-service, --version, "{{.Version}}", --port, "{{.Port}}"],
      listenFD: true, readiness: {path: /healthz, interval: 100ms, timeout: 5s}, timeout: 20s, gracePeriod: 2s}`, bin, v)
	}
	spec := fmt.Sprintf(`version: 1
service: %s
stable: {addresses: ["http://%s"]}
deploy:
  baseline: %s
  canary: %s
gateway: %s
metrics: {type: builtin}
analysis:
  mode: kayenta # these tests check the pipeline with a 5xx-only Kayenta judge; TestDemo runs the sequential default
  resolution: 1s
  metrics:
    - {name: 5xx-rate, kind: error_rate, direction: increase, critical: true, nanStrategy: remove, group: errors}
steps:
  - {weight: 2.5, warmup: 500ms, interval: 2s, duration: %s}
  - {weight: 10, warmup: 500ms, interval: 2s, duration: 7s}
  - {weight: 100, warmup: 500ms, interval: 2s, duration: 7s}
onMarginal: rollback
`, service, stable, target(vb), target(vc), gateway, step1)
	path := filepath.Join(t.TempDir(), service+".yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// stableService serves a demo app as stable, in the test process, on a listener it keeps (no port
// handed out and closed: another process could take it under load).
func stableService(t *testing.T, version string) string {
	t.Helper()
	app, err := demo.NewApp(demo.AppConfig{Version: version, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// load sends 100 requests/s to the gateway until the test ends.
func load(t *testing.T, addr string) *demo.Load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := demo.StartLoad(ctx, demo.LoadConfig{Target: "http://" + addr + "/", RPS: 100, MaxRequests: 100 * 180})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); l.Wait() })
	return l
}

func TestKillAndResume(t *testing.T) {
	skipShort(t)
	t.Parallel()
	t.Cleanup(func() { killServices("k0", "k1", "k2") })
	const token = "e2e-admin-token"
	stable := stableService(t, "k0")
	px := start(t, nil, "proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--stable", "http://"+stable, "--admin-token", token)
	data := px.waitFor(t, regexp.MustCompile(`msg="proxy listening" addr=(\S+)`), time.Minute)
	admin := px.waitFor(t, regexp.MustCompile(`msg="admin API listening" addr=(\S+)`), time.Minute)
	load(t, data)
	dir := t.TempDir()
	spec := specFor(t, "resumed", stable, fmt.Sprintf(`{type: builtin, admin: "http://%s"}`, admin), "k1", "k2", 8*time.Second)
	env := []string{"CANARYCTL_PROXY_TOKEN=" + token}

	first := start(t, env, "run", "--spec", spec, "--state-dir", dir)
	st := waitState(t, dir, "resumed", time.Minute, "analyzing step 1 with a judgement", func(st *rollout.State) bool {
		return st.Phase == rollout.Analyzing && st.Step == 0 && len(st.Intervals) >= 1
	})
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.wait(t, 10*time.Second)
	t.Logf("killed canaryctl run (pid %d) in step %d, split %s", first.cmd.Process.Pid, st.Step+1, st.Split)
	// Nobody rolled back: the external proxy still sends the step's share to the canary, whose
	// process (in a process group of its own) survived.
	canary := serviceProcs("k2")
	if len(canary) != 1 {
		t.Fatalf("canary processes after SIGKILL: %v, want 1", canary)
	}

	r := run(t, 2*time.Minute, env, "run", "--spec", spec, "--state-dir", dir, "--resume", "-o", "json")
	if r.code != 0 {
		t.Fatalf("run --resume: exit %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	var rep rollout.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("run --resume -o json: %v", err)
	}
	if rep.Phase != rollout.Promoted {
		t.Errorf("resumed rollout ended %s: %s", rep.Phase, rep.Reason)
	}
	// The resumed run adopted the canary instead of starting a second one, and tore the baseline down.
	if pids := serviceProcs("k2"); len(pids) != 1 || pids[0] != canary[0] {
		t.Errorf("canary processes after promotion: %v, want the one adopted (pid %d)", pids, canary[0])
	}
	assertNoServices(t, "k1")
}

func TestAbortFromSecondProcess(t *testing.T) {
	skipShort(t)
	t.Parallel()
	t.Cleanup(func() { killServices("a0", "a1", "a2") })
	stable := stableService(t, "a0")
	dir := t.TempDir()
	spec := specFor(t, "aborted", stable, `{type: builtin, listen: "127.0.0.1:0"}`, "a1", "a2", time.Minute)
	runner := start(t, nil, "run", "--spec", spec, "--state-dir", dir)
	gw := runner.waitFor(t, embeddedProxy, time.Minute)
	load(t, gw)
	waitState(t, dir, "aborted", time.Minute, "analyzing step 1", func(st *rollout.State) bool {
		return st.Phase == rollout.Analyzing && st.Step == 0
	})
	r := run(t, time.Minute, nil, "abort", "aborted", "--state-dir", dir, "--reason", "e2e abort")
	if r.code != 0 {
		t.Fatalf("abort: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	if code := runner.wait(t, time.Minute); code != 3 {
		t.Errorf("run after abort: exit %d, want 3; stderr:\n%s", code, runner.stderr.String())
	}
	st := waitState(t, dir, "aborted", time.Second, "rolled back", func(st *rollout.State) bool { return st.Phase.Terminal() })
	if st.Phase != rollout.RolledBack || st.Split.Canary != 0 || st.Split.Baseline != 0 || !strings.Contains(st.Reason, "e2e abort") {
		t.Errorf("after abort: phase %s split %s: %s", st.Phase, st.Split, st.Reason)
	}
	t.Logf("aborted: %s", st.Reason)
	assertNoServices(t, "a1", "a2")
}

func TestPauseHoldsStep(t *testing.T) {
	skipShort(t)
	t.Parallel()
	t.Cleanup(func() { killServices("p0", "p1", "p2") })
	stable := stableService(t, "p0")
	dir := t.TempDir()
	const step1 = 7 * time.Second // 6.5 s of 1 s points after the warm-up: enough for Mann-Whitney (5 and 5)
	spec := specFor(t, "paused", stable, `{type: builtin, listen: "127.0.0.1:0"}`, "p1", "p2", step1)
	runner := start(t, nil, "run", "--spec", spec, "--state-dir", dir)
	gw := runner.waitFor(t, embeddedProxy, time.Minute)
	load(t, gw)
	waitState(t, dir, "paused", time.Minute, "analyzing step 1", func(st *rollout.State) bool {
		return st.Phase == rollout.Analyzing && st.Step == 0
	})
	if r := run(t, time.Minute, nil, "pause", "paused", "--state-dir", dir); r.code != 0 {
		t.Fatalf("pause: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	held := waitState(t, dir, "paused", 5*time.Second, "paused", func(st *rollout.State) bool { return st.Phase == rollout.Paused })
	// Hold longer than the whole step: the split and the step must not change.
	deadline := time.Now().Add(step1 + 2*time.Second)
	for time.Now().Before(deadline) {
		st, err := rollout.LoadStateFile(filepath.Join(dir, "paused", "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Phase != rollout.Paused || st.Step != held.Step || st.Split != held.Split {
			t.Fatalf("while paused: phase %s step %d split %s; held step %d split %s", st.Phase, st.Step, st.Split, held.Step, held.Split)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if held.Split.Canary != 250 {
		t.Errorf("held split %s, want canary 2.5%%", held.Split)
	}
	if r := run(t, time.Minute, nil, "resume", "paused", "--state-dir", dir); r.code != 0 {
		t.Fatalf("resume: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	if code := runner.wait(t, 2*time.Minute); code != 0 {
		t.Errorf("run after resume: exit %d, want 0; stderr:\n%s", code, runner.stderr.String())
	}
	assertNoServices(t, "p1")
}
