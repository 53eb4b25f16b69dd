package tui

import (
	"bytes"
	"context"
	"errors"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
)

// t0 is the fixtures' start; the model's clock is fixed at t0+23s.
var t0 = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func num(f float64) *rollout.Number { n := rollout.Number(f); return &n }

// fixtureSpec is the demo's shape: three steps, a latency and a critical 5xx metric.
func fixtureSpec() *rollout.Spec {
	return &rollout.Spec{
		Service:      "checkout",
		PauseTimeout: time.Hour,
		Steps: []rollout.StepSpec{
			{Weight: 2.5, Warmup: time.Second, Interval: 4 * time.Second, Duration: 9 * time.Second},
			{Weight: 10, Warmup: time.Second, Interval: 3 * time.Second, Duration: 13 * time.Second},
			{Weight: 100, Warmup: time.Second, Interval: 4 * time.Second, Duration: 13 * time.Second},
		},
		Analysis: rollout.AnalysisSpec{
			Thresholds: rollout.Thresholds{Pass: 95, Marginal: 75},
			Metrics: []rollout.MetricSpec{
				{Name: "p99-latency", Kind: providers.LatencyQuantile, Quantile: 0.99},
				{Name: "5xx-rate", Kind: providers.ErrorRate, Critical: true},
			},
		},
	}
}

func metricsFor(latB, latC, errB, errC float64, latClass string) []rollout.MetricResult {
	return []rollout.MetricResult{
		{Name: "p99-latency", Classification: latClass, Reason: "canary P99 within 1.5x of baseline",
			BaselineMean: rollout.Number(latB), CanaryMean: rollout.Number(latC), BaselineCount: 5, CanaryCount: 5,
			Ratio: rollout.Number(latC / latB), CILower: num(-2.5), CIUpper: num(4.25), Estimate: num(0.8)},
		{Name: "5xx-rate", Classification: "Pass", Critical: true, Reason: "the canary and baseline hold the same values",
			BaselineMean: rollout.Number(errB), CanaryMean: rollout.Number(errC), BaselineCount: 5, CanaryCount: 5, Ratio: rollout.Number(math.NaN())},
	}
}

// analyzingState is step 2 of 3, analyzing, after four judgements (one of them marginal).
func analyzingState() *rollout.State {
	split := providers.Split{Canary: 1000, Baseline: 1000}
	return &rollout.State{
		SchemaVersion: rollout.StateSchemaVersion, Service: "checkout", RunID: "run1", Phase: rollout.Analyzing,
		Step: 1, Steps: 3, Weights: []float64{2.5, 10, 100}, Split: split,
		StepStartedAt: at(10), NextAnalysisAt: at(24), StartedAt: t0, UpdatedAt: at(21),
		Score: num(100), Verdict: rollout.VerdictPass,
		Reason: "step 2/3: stable 80% baseline 10% canary 10%, warm-up 1s",
		Intervals: []rollout.Interval{
			{Step: 0, Index: 1, At: at(5), Score: 100, Verdict: rollout.VerdictPass, Baseline: 20, Canary: 19, Metrics: metricsFor(21, 22, 0, 0, "Pass")},
			{Step: 0, Index: 2, At: at(9), Score: 80, Verdict: rollout.VerdictMarginal, Baseline: 41, Canary: 40, Final: true, Metrics: metricsFor(21, 35, 0, 0, "High")},
			{Step: 1, Index: 1, At: at(15), Score: rollout.Number(math.NaN()), Verdict: rollout.VerdictError, Error: "fetch p99-latency: timeout"},
			{Step: 1, Index: 2, At: at(21), Score: 100, Verdict: rollout.VerdictPass, Baseline: 240, Canary: 236, Metrics: metricsFor(23.3, 24.1, 0, 0.42, "Pass"),
				Cohorts: map[providers.Cohort]rollout.CohortStats{
					providers.Baseline: {Requests: 240, P50Ms: 12.3, P99Ms: 31.25, ErrorRatePct: 0},
					providers.Canary:   {Requests: 236, P50Ms: 12.9, P99Ms: 1234.5, ErrorRatePct: 100.0 / 236},
				}},
		},
	}
}

func fixtureEvents(st *rollout.State) []rollout.Event {
	ev := func(sec float64, typ string, from, to rollout.Phase, reason string) rollout.Event {
		return rollout.Event{V: 1, Time: at(sec), Service: st.Service, RunID: st.RunID, Type: typ, From: from, Phase: to, Reason: reason}
	}
	evs := []rollout.Event{
		{V: 1, Time: at(0), Service: st.Service, RunID: "older-run", Type: rollout.EvStarted, Phase: rollout.Pending, Reason: "from another run: must not show"},
		ev(0, rollout.EvStarted, "", rollout.Pending, "3 steps: 2.5% -> 10% -> 100%"),
		ev(0.1, rollout.EvTransition, rollout.Pending, rollout.Deploying, "deploying baseline and canary"),
		ev(1, rollout.EvTransition, rollout.Deploying, rollout.Progressing, "deployed baseline and canary"),
	}
	for _, iv := range st.Intervals {
		e := ev(iv.At.Sub(t0).Seconds(), rollout.EvInterval, "", rollout.Analyzing, "")
		e.Interval = &iv
		evs = append(evs, e)
	}
	evs = append(evs, ev(10, rollout.EvTransition, rollout.Progressing, rollout.Analyzing, st.Reason))
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	return evs
}

// fakeControl records the actions it was asked for.
type fakeControl struct {
	mu      sync.Mutex
	actions []rollout.Action
	note    string
	err     error
}

func (f *fakeControl) Control(_ context.Context, a rollout.Action) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = append(f.actions, a)
	return f.note, f.err
}

func (f *fakeControl) got() []rollout.Action {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]rollout.Action(nil), f.actions...)
}

func newTestModel(ctl Controller, updates <-chan Snapshot) Model {
	return New(Config{Service: "checkout", Spec: fixtureSpec(), Updates: updates, Control: ctl,
		Now: func() time.Time { return at(23) }, Tick: -1, Renderer: PlainRenderer(), Title: "watch"})
}

func withSnapshot(m Model, st *rollout.State) Model {
	evs := fixtureEvents(st)
	next, _ := m.Update(snapshotMsg(Snapshot{State: st, Events: evs, NewEvents: len(evs), Held: true, PID: 4242}))
	return next.(Model)
}

func keyMsg(s string) tea.KeyMsg {
	switch s {
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	case "ctrl+c":
		return tea.KeyMsg{Type: tea.KeyCtrlC}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
}

// press feeds keys and runs every command they return (as the runtime would), feeding the resulting
// messages back; it reports whether a command asked to quit.
func press(t *testing.T, m Model, keys ...string) (Model, bool) {
	t.Helper()
	quit := false
	for _, k := range keys {
		next, cmd := m.Update(keyMsg(k))
		m = next.(Model)
		if cmd == nil {
			continue
		}
		msg := cmd()
		if _, ok := msg.(tea.QuitMsg); ok {
			quit = true
			continue
		}
		next, _ = m.Update(msg)
		m = next.(Model)
	}
	return m, quit
}

func TestUpdateKeys(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		phase    rollout.Phase
		keys     []string
		want     []rollout.Action
		quit     bool
		byUser   bool
		status   string // a substring of the status line after the keys
		mode     mode
		noCtl    bool
		interrup bool
	}{
		{name: "p pauses at once", keys: []string{"p"}, want: []rollout.Action{rollout.ActionPause}, status: "applied"},
		{name: "r resumes at once", phase: rollout.Paused, keys: []string{"r"}, want: []rollout.Action{rollout.ActionResume}, status: "applied"},
		{name: "P asks first", keys: []string{"P"}, mode: modeConfirm},
		{name: "P then y promotes", keys: []string{"P", "y"}, want: []rollout.Action{rollout.ActionPromote}},
		{name: "a then y aborts", keys: []string{"a", "y"}, want: []rollout.Action{rollout.ActionAbort}},
		{name: "a then n cancels", keys: []string{"a", "n"}, status: "abort cancelled"},
		{name: "a then esc cancels", keys: []string{"a", "esc"}, status: "abort cancelled"},
		{name: "a then other keys keep asking", keys: []string{"a", "p", "x"}, mode: modeConfirm},
		{name: "q leaves the monitor only", keys: []string{"q"}, quit: true, byUser: true},
		{name: "ctrl+c quits and interrupts", keys: []string{"ctrl+c"}, quit: true, byUser: true, interrup: true},
		{name: "? shows help, any key goes back", keys: []string{"?", "x"}, mode: modeNormal},
		{name: "? shows help", keys: []string{"?"}, mode: modeHelp},
		{name: "no actions after the end", phase: rollout.RolledBack, keys: []string{"p", "a"}, status: "already ended RolledBack"},
		{name: "no controller", noCtl: true, keys: []string{"p"}, status: "controls are off"},
		{name: "unknown keys do nothing", keys: []string{"x", "z"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctl := &fakeControl{note: "checkout: pause applied; phase Paused"}
			var c Controller = ctl
			if tc.noCtl {
				c = nil
			}
			st := analyzingState()
			if tc.phase != "" {
				st.Phase = tc.phase
			}
			m := withSnapshot(newTestModel(c, nil), st)
			m, quit := press(t, m, tc.keys...)
			if got := ctl.got(); !equalActions(got, tc.want) {
				t.Errorf("controller got %v, want %v", got, tc.want)
			}
			if quit != tc.quit || m.QuitByUser() != tc.byUser || m.Interrupted() != tc.interrup {
				t.Errorf("quit %v byUser %v interrupted %v, want %v %v %v", quit, m.QuitByUser(), m.Interrupted(), tc.quit, tc.byUser, tc.interrup)
			}
			if m.mode != tc.mode {
				t.Errorf("mode %d, want %d", m.mode, tc.mode)
			}
			if !strings.Contains(m.status, tc.status) {
				t.Errorf("status %q, want it to contain %q", m.status, tc.status)
			}
		})
	}
}

func equalActions(a, b []rollout.Action) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestUpdateControlErrorAndBusy(t *testing.T) {
	t.Parallel()
	ctl := &fakeControl{err: errors.New("post control request: disk full")}
	m := withSnapshot(newTestModel(ctl, nil), analyzingState())
	next, cmd := m.Update(keyMsg("p"))
	m = next.(Model)
	// While the request is in flight a second one is refused.
	next, cmd2 := m.Update(keyMsg("r"))
	m = next.(Model)
	if cmd2 != nil || !strings.Contains(m.status, "waiting for the pause request") {
		t.Fatalf("second request while busy: cmd %v status %q", cmd2 != nil, m.status)
	}
	next, _ = m.Update(cmd())
	m = next.(Model)
	if !strings.Contains(m.status, "pause: post control request: disk full") || m.busy != "" {
		t.Fatalf("status %q busy %q", m.status, m.busy)
	}
}

func TestUpdateDoneAndResize(t *testing.T) {
	t.Parallel()
	m := withSnapshot(newTestModel(nil, nil), analyzingState())
	_, cmd := m.Update(Done{})
	if cmd != nil {
		t.Fatal("watch mode must stay on the final screen after Done")
	}
	m.cfg.ExitOnDone = true
	next, cmd := m.Update(Done{Err: errors.New("run rollout: boom")})
	if cmd == nil {
		t.Fatal("run --tui must quit on Done")
	}
	if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Fatal("Done did not quit")
	}
	if got := next.(Model).status; got != "run rollout: boom" {
		t.Fatalf("status %q", got)
	}
	next, _ = m.Update(tea.WindowSizeMsg{Width: 120, Height: 40})
	if v := next.(Model).View(); strings.Count(v, "\n") != 39 {
		t.Fatalf("view at 120x40 has %d lines", strings.Count(v, "\n")+1)
	}
}

// TestViewFitsEverySize: the screen never has more lines than the terminal nor wider ones.
func TestViewFitsEverySize(t *testing.T) {
	t.Parallel()
	states := map[string]*rollout.State{"analyzing": analyzingState(), "sequential": sequentialState(), "waiting": nil}
	for name, st := range states {
		for w := 20; w <= 200; w += 7 {
			for h := 4; h <= 60; h += 3 {
				m := newTestModel(nil, nil)
				if st != nil {
					m = withSnapshot(m, st)
				}
				next, _ := m.Update(tea.WindowSizeMsg{Width: w, Height: h})
				lines := strings.Split(next.(Model).View(), "\n")
				if len(lines) != h {
					t.Fatalf("%s %dx%d: %d lines", name, w, h, len(lines))
				}
				for i, l := range lines {
					if lw := ansi.StringWidth(l); lw > w {
						t.Fatalf("%s %dx%d: line %d is %d wide: %q", name, w, h, i, lw, l)
					}
				}
			}
		}
	}
}

func TestViewShowsWhatMatters(t *testing.T) {
	t.Parallel()
	m := withSnapshot(newTestModel(nil, nil), analyzingState())
	v := m.View()
	for _, want := range []string{
		"checkout", "Analyzing", "step 2/3 (10%)", "elapsed 0:23", "pid 4242",
		"judge in 1s (10:00:24)", "step ends in 0s (10:00:23) → step 3/3 (100%)",
		"stable 80%", "baseline 10%", "canary 10%",
		"step 2 interval 2 · score 100 pass",
		"▒|█ req 240|236 · p50 12.3|12.9ms · p99 31.2|1234.5ms · 5xx 0.00|0.42%", "23.3ms (5)", "24.1ms (5)", "0.42% (5)", "[-2.5, 4.25]ms",
		"5xx-rate*", "pass ≥ 95", "fail ≤ 75", "×",
		"Progressing → Analyzing",
	} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q:\n%s", want, v)
		}
	}
	if strings.Contains(v, "must not show") {
		t.Errorf("view shows an event of another run:\n%s", v)
	}
}

// TestNoColor: with the Ascii profile (NO_COLOR) the screen has no escape sequences; with colors it has.
func TestNoColor(t *testing.T) {
	t.Parallel()
	plain := withSnapshot(newTestModel(nil, nil), analyzingState())
	if v := plain.View(); strings.Contains(v, "\x1b") {
		t.Fatalf("NO_COLOR view has escapes: %q", v)
	}
	r := lipgloss.NewRenderer(&bytes.Buffer{})
	r.SetColorProfile(termenv.ANSI256)
	colored := New(Config{Service: "checkout", Spec: fixtureSpec(), Now: func() time.Time { return at(23) }, Tick: -1, Renderer: r})
	colored = withSnapshot(colored, analyzingState())
	if v := colored.View(); !strings.Contains(v, "\x1b[") {
		t.Fatal("colored view has no escapes")
	}
	if r := NewRenderer(&bytes.Buffer{}, true); r.ColorProfile() != termenv.Ascii {
		t.Fatalf("NewRenderer with noColor: profile %v", r.ColorProfile())
	}
}

func TestChart(t *testing.T) {
	t.Parallel()
	ivs := []rollout.Interval{
		{Step: 0, Score: 100, Verdict: rollout.VerdictPass},
		{Step: 0, Score: 50, Verdict: rollout.VerdictFail},
		{Step: 1, Score: rollout.Number(math.NaN()), Verdict: rollout.VerdictError},
		{Step: 1, Score: 0, Verdict: rollout.VerdictFail},
		{Step: 2, Score: rollout.Number(math.NaN()), Verdict: "need-more-data"},
	}
	lines := renderChart(ivs, chartConfig{width: 40, rows: 4, pass: 95, marginal: 60, styles: newStyles(PlainRenderer())})
	// Each interval is a bar colW-1 = 2 cells wide and a gap that carries the threshold lines.
	got := strings.Join(lines, "\n")
	for i, w := range []string{
		" 95┤" + "██─" + "───" + "───" + "───" + "───",
		" 60┤" + "██┈" + "┈┈┈" + "┈┈┈" + "┈┈┈" + "┈┈┈",
		"   ┤" + "██ " + "██ " + "   " + "   " + "   ",
		"  0┤" + "██ " + "██ " + "×× " + "▁▁ " + "·· ",
		"    " + "1  " + "   " + "2  " + "   " + "3  " + " step",
	} {
		if lines[i] != w {
			t.Errorf("line %d = %q, want %q\nchart:\n%s", i, lines[i], w, got)
		}
	}
	// Only the latest intervals that fit are drawn.
	many := make([]rollout.Interval, 50)
	for i := range many {
		many[i] = rollout.Interval{Step: i / 10, Score: rollout.Number(2 * i), Verdict: rollout.VerdictPass}
	}
	lines = renderChart(many, chartConfig{width: 25, rows: 3, pass: math.NaN(), marginal: math.NaN(), styles: newStyles(PlainRenderer())})
	if w := ansi.StringWidth(lines[0]); w > 25 {
		t.Fatalf("chart wider than 25: %d", w)
	}
	if !strings.HasPrefix(lines[0], "100┤") || !strings.HasPrefix(lines[2], "  0┤") {
		t.Fatalf("axis labels without thresholds: %q", lines)
	}
}

func TestFormatEvent(t *testing.T) {
	t.Parallel()
	iv := rollout.Interval{Step: 1, Index: 3, Score: 80, Verdict: rollout.VerdictMarginal, Baseline: 10, Canary: 11}
	bad := rollout.Interval{Step: 0, Index: 1, Score: rollout.Number(math.NaN()), Verdict: rollout.VerdictError, Error: "fetch x:\n timeout"}
	split := providers.Split{Canary: 250, Baseline: 250}
	cases := []struct {
		name string
		ev   rollout.Event
		want string
	}{
		{"transition", rollout.Event{Type: rollout.EvTransition, From: rollout.Analyzing, Phase: rollout.Paused, Reason: "paused by me"}, "Analyzing → Paused: paused by me"},
		{"interval", rollout.Event{Type: rollout.EvInterval, Interval: &iv}, "judged step 2 interval 3: score 80 marginal (requests baseline 10 canary 11)"},
		{"interval error", rollout.Event{Type: rollout.EvInterval, Interval: &bad}, "judged step 1 interval 1: error: fetch x: timeout"},
		{"control", rollout.Event{Type: rollout.EvControl, Control: &rollout.ControlRequest{Action: rollout.ActionPause, By: "me@host"}, Reason: "applied"}, "pause by me@host: applied"},
		{"intent split", rollout.Event{Type: rollout.EvIntent, Intent: &rollout.Intent{Op: "set-split", Split: &split}}, "gateway set-split stable 95% baseline 2.5% canary 2.5%"},
		{"intent upstreams", rollout.Event{Type: rollout.EvIntent, Intent: &rollout.Intent{Op: "set-upstreams", Cohort: providers.Canary, Addrs: []string{"a", "b"}}}, "gateway set-upstreams canary a,b"},
		{"other", rollout.Event{Type: rollout.EvError, Reason: "read split"}, "error: read split"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := FormatEvent(tc.ev); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// Golden screens through teatest at fixed sizes: the model runs in a real bubbletea program, the
// snapshot arrives through the Updates channel, and the test waits on the program's output (no
// sleeps). Regenerate with go test ./cmd/tui -run Golden -update.
func TestGolden(t *testing.T) {
	t.Parallel()
	paused := analyzingState()
	paused.Phase = rollout.Paused
	paused.Pause = &rollout.PauseInfo{Kind: rollout.PauseUser, Reason: "paused by sre@host", Since: at(22)}
	paused.Reason = "paused by sre@host at step 2/3 (stable 80% baseline 10% canary 10%); split held"
	rolled := analyzingState()
	rolled.Phase = rollout.RolledBack
	rolled.Split = providers.Split{}
	rolled.FinishedAt = at(22.5)
	rolled.Reason = "aborted by sre@host pid 7 (from the monitor)"
	cases := []struct {
		name string
		w, h int
		st   *rollout.State
		keys string
		wait string
	}{
		{"analyzing_80x24", 80, 24, analyzingState(), "", "events"},
		{"analyzing_120x40", 120, 40, analyzingState(), "", "events"},
		{"paused_confirm_abort_80x24", 80, 24, paused, "a", "y/n"},
		{"rolledback_80x24", 80, 24, rolled, "", "q to leave"},
		{"help_80x24", 80, 24, analyzingState(), "?", "any key: back"},
		{"sequential_80x24", 80, 24, sequentialState(), "", "events"},
		{"sequential_120x40", 120, 40, sequentialState(), "", "events"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			updates := make(chan Snapshot, 1)
			evs := fixtureEvents(tc.st)
			updates <- Snapshot{State: tc.st, Events: evs, NewEvents: len(evs), Held: !tc.st.Phase.Terminal(), PID: 4242}
			tm := teatest.NewTestModel(t, newTestModel(&fakeControl{}, updates), teatest.WithInitialTermSize(tc.w, tc.h))
			teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte("events")) },
				teatest.WithDuration(5*time.Second), teatest.WithCheckInterval(time.Millisecond))
			if tc.keys != "" {
				tm.Type(tc.keys)
				teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(tc.wait)) },
					teatest.WithDuration(5*time.Second), teatest.WithCheckInterval(time.Millisecond))
			}
			if err := tm.Quit(); err != nil {
				t.Fatal(err)
			}
			final := tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second)).(Model)
			golden.RequireEqual(t, []byte(final.View()+"\n"))
		})
	}
}
