package cmd

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
)

// watchWorld is a state directory holding one rollout written through the real store.
type watchWorld struct {
	dir   string
	store *rollout.Store
	st    rollout.State
}

func newWatchWorld(t *testing.T) *watchWorld {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	store, err := rollout.OpenStore(rollout.StoreConfig{Root: dir, Service: "checkout"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	w := &watchWorld{dir: dir, store: store, st: rollout.State{SchemaVersion: rollout.StateSchemaVersion, Service: "checkout",
		RunID: "r1", Phase: rollout.Analyzing, Step: 1, Steps: 3, Weights: []float64{2.5, 10, 100},
		Split: providers.Split{Canary: 1000, Baseline: 1000}, Intervals: []rollout.Interval{}, StartedAt: now, UpdatedAt: now}}
	w.save(t, rollout.Progressing, rollout.Analyzing, "step 2/3")
	return w
}

// save writes the state in phase to and appends its transition event, as the engine does.
func (w *watchWorld) save(t *testing.T, from, to rollout.Phase, reason string) {
	t.Helper()
	w.st.Phase, w.st.Reason = to, reason
	if to.Terminal() {
		w.st.FinishedAt = time.Now()
		w.st.Split = providers.Split{}
	}
	if err := w.store.SaveState(&w.st); err != nil {
		t.Fatal(err)
	}
	ev := rollout.Event{V: 1, Time: time.Now(), Service: "checkout", RunID: w.st.RunID, Type: rollout.EvTransition, From: from, Phase: to, Reason: reason, Step: w.st.Step, Split: w.st.Split}
	if err := w.store.AppendEvent(&ev); err != nil {
		t.Fatal(err)
	}
}

func watchRun(ctx context.Context, out *syncBuffer, args ...string) int {
	var errb syncBuffer
	e := &Env{Stdout: out, Stderr: &errb, Stdin: strings.NewReader(""), Getenv: func(string) string { return "" },
		Now: time.Now, Logger: slog.New(slog.DiscardHandler)}
	code := Run(ctx, e, append([]string{"watch"}, args...))
	if code != 0 {
		out.Write([]byte("stderr: " + errb.String()))
	}
	return code
}

// TestWatchPlainFollowsToTheEnd: stdout not a terminal, watch prints one line per event while the
// rollout goes on and exits with run's code for the final phase.
func TestWatchPlainFollowsToTheEnd(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		final rollout.Phase
		code  int
	}{
		{"rolled back exits 3", rollout.RolledBack, ExitFail},
		{"promoted exits 0", rollout.Promoted, ExitOK},
		{"failed exits 1", rollout.Failed, ExitError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWatchWorld(t)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			var out syncBuffer
			done := make(chan int, 1)
			go func() { done <- watchRun(ctx, &out, "--state-dir", w.dir, "--poll", "10ms") }()
			// The rollout moves on only once watch has shown where it stands.
			waitFor(t, ctx, func() bool { return strings.Contains(out.String(), "Progressing → Analyzing: step 2/3") })
			via := rollout.RollingBack
			if tc.final == rollout.Promoted {
				via = rollout.Promoting
			}
			w.save(t, rollout.Analyzing, via, "on the way")
			w.save(t, via, tc.final, "the end")
			var code int
			select {
			case code = <-done:
			case <-ctx.Done():
				t.Fatalf("watch did not exit; output:\n%s", out.String())
			}
			if code != tc.code {
				t.Fatalf("exit %d, want %d; output:\n%s", code, tc.code, out.String())
			}
			got := out.String()
			for _, want := range []string{"checkout: run r1, Analyzing, step 2/3", "Analyzing → " + string(via) + ": on the way", string(via) + " → " + string(tc.final) + ": the end"} {
				if !strings.Contains(got, want) {
					t.Errorf("output lacks %q:\n%s", want, got)
				}
			}
		})
	}
}

func TestWatchUsageErrors(t *testing.T) {
	t.Parallel()
	w := newWatchWorld(t)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no rollout there", []string{"--state-dir", t.TempDir()}, "no rollouts in state directory"},
		{"unknown service", []string{"--state-dir", w.dir, "payments"}, "no rollout of payments"},
		{"bad poll", []string{"--state-dir", w.dir, "--poll", "1ns"}, "--poll 1ns: use 10ms..1m"},
	}
	code, out, _ := rtRun(t.Context(), nil, "__complete", "watch", "--state-dir", w.dir, "")
	if code != 0 || !strings.HasPrefix(out, "checkout\n") {
		t.Errorf("completion of SERVICE: %d %q", code, out)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out syncBuffer
			if code := watchRun(t.Context(), &out, tc.args...); code != ExitUsage || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("exit %d, output %q; want 2 and %q", code, out.String(), tc.want)
			}
		})
	}
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met before the deadline")
		case <-tick.C:
		}
	}
}
