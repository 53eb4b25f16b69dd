package cmd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/rollout"
)

// buildCanaryctl builds the real binary into dir.
func buildCanaryctl(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "canaryctl")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/canaryctl/canaryctl/cmd/canaryctl").CombinedOutput(); err != nil {
		t.Fatalf("build canaryctl: %v\n%s", err, out)
	}
	return bin
}

// newTmuxSession makes a tmux server of the test's own (unique -L socket), killed at the end.
func newTmuxSession(t *testing.T) *tmuxSession {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed; this test needs it: apt-get install -y tmux")
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	s := &tmuxSession{t: t, socket: "canaryctl-tui-" + hex.EncodeToString(rnd[:])}
	t.Cleanup(func() { _, _ = s.tmux("kill-server") })
	return s
}

// waitFile waits for a file the shell in the pane writes when the command exits.
func waitFile(ctx context.Context, s *tmuxSession, path string) string {
	s.t.Helper()
	for {
		if b, err := os.ReadFile(path); err == nil {
			return string(bytes.TrimSpace(b))
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("the command did not exit; last screen:\n%s", s.last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tmuxSession drives a real canaryctl in a tmux pane of its own server (-L socket).
type tmuxSession struct {
	t      *testing.T
	socket string
	last   string
}

func (s *tmuxSession) tmux(args ...string) (string, error) {
	out, err := exec.Command("tmux", append([]string{"-L", s.socket, "-f", "/dev/null"}, args...)...).CombinedOutput()
	return string(out), err
}

func (s *tmuxSession) keys(keys ...string) {
	s.t.Helper()
	if out, err := s.tmux(append([]string{"send-keys", "-t", "tui"}, keys...)...); err != nil {
		s.t.Fatalf("tmux send-keys %v: %v: %s", keys, err, out)
	}
}

// waitScreen polls the pane until cond holds for its text, or fails at the deadline.
func (s *tmuxSession) waitScreen(ctx context.Context, what string, cond func(screen string) bool) string {
	s.t.Helper()
	for {
		if out, err := s.tmux("capture-pane", "-p", "-t", "tui"); err == nil {
			s.last = out
			if cond(out) {
				return out
			}
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("screen never showed %s; last screen:\n%s", what, s.last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func readState(t *testing.T, path string) *rollout.State {
	t.Helper()
	for range 20 { // state.json is replaced atomically; a read error is a real one, retried briefly
		st, err := rollout.LoadStateFile(path)
		if err == nil {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("read %s", path)
	return nil
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestTUIDemoInTmux drives the real binary: canaryctl demo --tui in an 80x24 tmux pane. The screen
// shows the phases advancing and a judgement; p holds the split (state.json does not change across more than one
// analysis interval); r resumes; a plus y rolls back and the process exits 3.
func TestTUIDemoInTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed; this test needs it: apt-get install -y tmux")
	}
	if testing.Short() {
		t.Skip("drives the ~40 s demo; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	dir := t.TempDir()
	bin := buildCanaryctl(ctx, t, dir)
	s := newTmuxSession(t)

	stateDir := filepath.Join(dir, "state")
	exitFile := filepath.Join(dir, "exit-code")
	statePath := filepath.Join(stateDir, "demo", "state.json")
	// exec cat keeps the pane open after the demo (until the session is killed), so that the test sees
	// what the terminal shows once the monitor has gone.
	script := fmt.Sprintf("cd %q && NO_COLOR=1 %q demo --tui --state-dir %q; echo $? > %q.tmp && mv %q.tmp %q; exec cat",
		dir, bin, stateDir, exitFile, exitFile, exitFile)
	if out, err := s.tmux("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", "sh", "-c", script); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}

	// The phases advance on the screen: Deploying, Progressing, Analyzing (the events panel shows the
	// transitions), then step 1 is judged. The step that follows depends on the engine's decision mode
	// (a sequential step may wait for more data), so the test goes on from wherever the rollout is.
	s.waitScreen(ctx, "step 1 being analyzed", func(sc string) bool {
		return contains(sc, "Analyzing", "step 1/3 (2.5%)", "stable 95%", "Progressing → Analyzing")
	})
	screen := s.waitScreen(ctx, "a judgement of step 1", func(sc string) bool { return contains(sc, "judged step 1 interval 1") })
	t.Logf("screen after the first judgement:\n%s", screen)

	// p holds the step: the screen says Paused, and state.json keeps its split and judges nothing for
	// longer than the longest analysis interval of the demo (4 s).
	s.keys("p")
	s.waitScreen(ctx, "Paused", func(sc string) bool { return contains(sc, "Paused", "split held") })
	held := readState(t, statePath)
	if held.Phase != rollout.Paused || held.Split.Canary == 0 || held.Split.Baseline == 0 {
		t.Fatalf("after p: phase %s split %s, want Paused with canary and baseline traffic", held.Phase, held.Split)
	}
	until := time.Now().Add(5 * time.Second)
	for time.Now().Before(until) {
		st := readState(t, statePath)
		if st.Phase != rollout.Paused || st.Split != held.Split || len(st.Intervals) != len(held.Intervals) || st.Step != held.Step {
			t.Fatalf("while paused: phase %s split %s step %d intervals %d, want them held (%s %s %d %d)",
				st.Phase, st.Split, st.Step, len(st.Intervals), held.Phase, held.Split, held.Step, len(held.Intervals))
		}
		select {
		case <-ctx.Done():
			t.Fatal("deadline while checking the pause")
		case <-time.After(100 * time.Millisecond):
		}
	}

	// The monitor takes one control request at a time: like a person, wait until the status line no
	// longer says the last one is being applied before pressing the next key.
	idle := func(sc string) bool { return !strings.Contains(sc, "waiting for the rollout to apply") }

	// r resumes: the step restarts.
	s.waitScreen(ctx, "the pause request done", idle)
	s.keys("r")
	// The status line keeps "resume applied" until the next request; the "resumed by" event may have
	// scrolled out of the events panel by the time the screen is read.
	s.waitScreen(ctx, "the resumed step", func(sc string) bool {
		return (strings.Contains(sc, "resume applied") || strings.Contains(sc, "resumed by")) && !strings.Contains(sc, "Paused ·") && idle(sc)
	})

	// a asks; y rolls back: all traffic on stable, exit code 3.
	s.keys("a")
	s.waitScreen(ctx, "the abort question", func(sc string) bool { return contains(sc, "Abort demo", "y/n") })
	s.keys("y")
	code := waitFile(ctx, s, exitFile)
	if code != "3" {
		t.Fatalf("exit code %q after abort, want 3 (rolled back); last screen:\n%s", code, s.last)
	}
	st := readState(t, statePath)
	if st.Phase != rollout.RolledBack || st.Split.Canary != 0 || st.Split.Baseline != 0 || !strings.Contains(st.Reason, "aborted by") {
		t.Fatalf("after abort: phase %s split %s reason %q", st.Phase, st.Split, st.Reason)
	}
	logb, _ := os.ReadFile(filepath.Join(stateDir, "demo", tuiLogFile))
	if !bytes.Contains(logb, []byte("ROLLED BACK")) {
		t.Errorf("the demo's stderr did not go to %s:\n%s", tuiLogFile, logb)
	}
	// The monitor's last frame stays on the terminal after it quit: the final state can be read.
	s.waitScreen(ctx, "the last frame kept after the monitor quit", func(sc string) bool {
		return contains(sc, "→ RolledBack", "aborted by") && !strings.Contains(sc, "exit status")
	})
}

// TestWatchInTmux attaches canaryctl watch (on a terminal) to a rollout "run" by this test, which holds
// the lock and plays the engine: p in the monitor posts a pause request in the state directory (the
// path of canaryctl pause), the test applies it and the screen shows the result; P then n posts
// nothing; q leaves with exit 0 and the rollout untouched.
func TestWatchInTmux(t *testing.T) {
	s := newTmuxSession(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	bin := buildCanaryctl(ctx, t, dir)
	w := newWatchWorld(t)
	if err := w.store.Lock(); err != nil {
		t.Fatal(err)
	}
	defer w.store.Unlock()
	w.st.PID = os.Getpid()
	w.save(t, rollout.Progressing, rollout.Analyzing, "step 2/3: stable 80% baseline 10% canary 10%")

	exitFile := filepath.Join(dir, "exit-code")
	script := fmt.Sprintf("NO_COLOR=1 %q watch --state-dir %q checkout; echo $? > %q.tmp && mv %q.tmp %q", bin, w.dir, exitFile, exitFile, exitFile)
	if out, err := s.tmux("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", "sh", "-c", script); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	s.waitScreen(ctx, "the rollout", func(sc string) bool {
		return contains(sc, "checkout · Analyzing · step 2/3 (10%)", fmt.Sprintf("pid %d", os.Getpid()), "stable 80%", "Progressing → Analyzing")
	})

	s.keys("p")
	var req rollout.ControlRequest
	waitFor(t, ctx, func() bool {
		reqs, err := w.store.PendingControls()
		if err != nil || len(reqs) == 0 {
			return false
		}
		req = reqs[0]
		return true
	})
	if req.Action != rollout.ActionPause || req.Reason != "from the monitor" {
		t.Fatalf("control request %+v, want a pause from the monitor", req)
	}
	w.st.Pause = &rollout.PauseInfo{Kind: rollout.PauseUser, Reason: "paused", Since: time.Now()}
	w.save(t, rollout.Analyzing, rollout.Paused, "paused by "+req.By)
	ev := rollout.Event{V: 1, Time: time.Now(), Service: "checkout", RunID: w.st.RunID, Type: rollout.EvControl, Phase: rollout.Paused, Control: &req, Reason: "applied"}
	if err := w.store.AppendEvent(&ev); err != nil {
		t.Fatal(err)
	}
	if err := w.store.AckControl(req.ID); err != nil {
		t.Fatal(err)
	}
	s.waitScreen(ctx, "the applied pause", func(sc string) bool {
		return contains(sc, "checkout · Paused", "checkout: pause applied; phase Paused")
	})

	s.keys("P")
	s.waitScreen(ctx, "the promote question", func(sc string) bool { return contains(sc, "Promote checkout now", "y/n") })
	s.keys("n")
	s.waitScreen(ctx, "the cancelled promote", func(sc string) bool { return contains(sc, "promote cancelled") })
	if reqs, _ := w.store.PendingControls(); len(reqs) != 0 {
		t.Fatalf("a cancelled promote posted %+v", reqs)
	}

	s.keys("q")
	if code := waitFile(ctx, s, exitFile); code != "0" {
		t.Fatalf("watch exit %s after q on a running rollout, want 0; last screen:\n%s", code, s.last)
	}
	if st := readState(t, filepath.Join(w.dir, "checkout", "state.json")); st.Phase != rollout.Paused {
		t.Fatalf("leaving the monitor changed the rollout: %s", st.Phase)
	}
}
