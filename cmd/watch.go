package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"

	"github.com/canaryctl/canaryctl/cmd/tui"
	"github.com/canaryctl/canaryctl/rollout"
)

// tuiLogFile is where run --tui, demo --tui and watch send logs and progress lines while the screen
// is up, in the service's state directory.
const tuiLogFile = "canaryctl.log"

type watchOptions struct {
	ctl   controlOptions // the state directory, shared with the completion of SERVICE
	poll  time.Duration
	plain bool
}

func newWatchCmd(env *Env) *cobra.Command {
	o := &watchOptions{}
	c := &cobra.Command{
		Use:   "watch [SERVICE]",
		Short: "Watch and steer a running rollout: live screen with split, metrics, scores and events",
		Long: `watch attaches to the rollout of SERVICE in the state directory, whichever process runs it, and shows
a live screen: phase, step, elapsed time and what happens next; the traffic split; the last judgement per
metric (baseline vs canary, classification, confidence interval, reason); the score of every interval
against the pass and marginal thresholds; the latest events.

Keys: p pause, r resume, P promote (asks first), a abort and roll back (asks first), ? help, q leave the
monitor (the rollout goes on). The keys send the same requests as canaryctl pause/resume/promote/abort.
NO_COLOR turns colors off. Logs go to SERVICE/` + tuiLogFile + ` in the state directory, never over the screen.

When stdout is not a terminal (or with --plain) watch prints one line per new event instead and exits
when the rollout ends, with the exit code of canaryctl run: 0 promoted, 3 rolled back, 1 failed,
5 not started, 130 interrupted. On a terminal it exits 0 when you leave a running rollout, else per the final phase.`,
		Example: "  canaryctl watch checkout\n  canaryctl watch --state-dir /var/lib/canaryctl | tee rollout.log",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWatch(cmd.Context(), env, o, args)
		},
		ValidArgsFunction: completeServices(env, &o.ctl),
	}
	f := c.Flags()
	f.StringVar(&o.ctl.stateDir, "state-dir", "", "state directory (default $CANARYCTL_STATE_DIR or "+DefaultStateDir+")")
	f.DurationVar(&o.poll, "poll", 200*time.Millisecond, "how often to read state.json and events.jsonl")
	f.BoolVar(&o.plain, "plain", false, "print progress lines even when stdout is a terminal")
	return c
}

func runWatch(ctx context.Context, env *Env, o *watchOptions, args []string) error {
	if o.poll < 10*time.Millisecond || o.poll > time.Minute {
		return usageErrorf("--poll %s: use 10ms..1m", o.poll)
	}
	store, err := openControlStore(env, &o.ctl, args)
	if err != nil {
		return err
	}
	dir := stateDir(env, o.ctl.stateDir)
	service := filepath.Base(store.Dir())
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	updates := tui.Poll(pctx, tui.PollConfig{Store: store, Interval: o.poll})

	if o.plain || !env.StdoutIsTerminal {
		st, err := tui.Follow(ctx, tui.FollowConfig{Updates: updates, Out: env.Stdout})
		if err != nil {
			return fmt.Errorf("watch %s: %w", service, err)
		}
		return stateExit(st)
	}

	logf, err := os.OpenFile(filepath.Join(store.Dir(), tuiLogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("watch: open log file: %w", err)
	}
	defer logf.Close()
	cenv := logEnv(env, logf)
	m := tui.New(tui.Config{
		Service:  service,
		Spec:     savedSpec(store),
		Updates:  updates,
		Control:  tuiController(cenv, dir, service),
		Ctx:      ctx,
		Renderer: tui.NewRenderer(env.Stdout, env.Getenv("NO_COLOR") != ""),
		Title:    "watch",
	})
	p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithInput(env.Stdin), tea.WithOutput(env.Stdout), tea.WithAltScreen())
	final, err := p.Run()
	if err != nil && !errors.Is(err, tea.ErrProgramKilled) && !errors.Is(err, tea.ErrInterrupted) {
		return fmt.Errorf("watch %s: %w", service, err)
	}
	fm, _ := final.(tui.Model)
	st := fm.State()
	if st == nil {
		st, _ = store.LoadState()
	}
	if st != nil {
		fmt.Fprintln(env.Stderr, stateLine(st))
	}
	if st != nil && st.Phase.Terminal() {
		return stateExit(st)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil // left the monitor; the rollout goes on
}

// stateExit maps a rollout's recorded end to the exit code, as run does.
func stateExit(st *rollout.State) error {
	if st == nil {
		return errors.New("watch: no rollout state was read")
	}
	if !st.Phase.Terminal() {
		return withExitCode(ExitMarginal, fmt.Errorf("the rollout of %s stopped %s: %s", st.Service, st.Phase, oneLine(st.Reason)))
	}
	return outcomeError(rollout.Outcome{Phase: st.Phase, Verdict: st.Verdict, Score: st.Score, Reason: st.Reason, Interrupted: st.Interrupted,
		NotStarted: st.NotStarted && !st.Interrupted})
}

func stateLine(st *rollout.State) string {
	s := fmt.Sprintf("%s: %s, step %d/%d, %s", st.Service, st.Phase, st.Step+1, st.Steps, st.Split)
	if st.Reason != "" {
		s += ": " + st.Reason
	}
	return oneLine(s)
}

// savedSpec reads spec.yaml from the state directory; nil when missing or unreadable (the screen then
// shows what state.json holds).
func savedSpec(store *rollout.Store) *rollout.Spec {
	raw, err := os.ReadFile(store.SpecPath())
	if err != nil {
		return nil
	}
	spec, err := rollout.ParseSpec(bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	return spec
}

// logEnv is env with stderr and the logger sent to w, so nothing writes over the screen.
func logEnv(env *Env, w io.Writer) *Env {
	e := *env
	e.Stderr = w
	e.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return &e
}

// tuiController sends the monitor's key actions through runControl, the function behind canaryctl
// pause/resume/promote/abort, and returns what it printed.
func tuiController(env *Env, dir, service string) tui.Controller {
	return tui.ControllerFunc(func(ctx context.Context, a rollout.Action) (string, error) {
		var out bytes.Buffer
		e := *env
		e.Stdout = &out
		err := runControl(ctx, &e, &controlOptions{stateDir: dir, wait: 15 * time.Second, reason: "from the monitor"}, a, []string{service})
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		note := lines[len(lines)-1]
		if quiet(err) {
			err = nil // a rejected request: the note says why
		}
		return note, err
	})
}

// tuiRun is a rollout that this process runs while the monitor shows it (run --tui, demo --tui).
type tuiRun struct {
	root    string
	service string
	spec    *rollout.Spec
	title   string
	run     func(ctx context.Context, env *Env) error
	// ephemeral: root is removed when run returns (demo --tui without --state-dir).
	ephemeral bool
}

// runWithTUI runs r.run with its stdout kept for the end and its stderr and logs in the state
// directory's log file, while the monitor shows the rollout. Leaving the monitor (q) lets the rollout
// go on with plain progress lines on stderr; ctrl+c in the monitor is SIGINT for the rollout.
func runWithTUI(ctx context.Context, env *Env, r tuiRun) error {
	store, err := rollout.OpenStore(rollout.StoreConfig{Root: r.root, Service: r.service})
	if err != nil {
		return err
	}
	logPath := filepath.Join(store.Dir(), tuiLogFile)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	defer logf.Close()
	renv := logEnv(env, logf)
	var stdout bytes.Buffer // the run's results, printed once the screen is gone
	renv.Stdout = &stdout
	renv.StdoutIsTerminal = false

	rctx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	var runErr error
	finished := make(chan struct{})
	pctx, stopPoll := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPoll()
	updates := tui.Poll(pctx, tui.PollConfig{Store: store, Self: true})
	m := tui.New(tui.Config{
		Service:    r.service,
		Spec:       r.spec,
		Updates:    updates,
		Control:    tuiController(renv, r.root, r.service),
		Ctx:        ctx,
		Renderer:   tui.NewRenderer(env.Stdout, env.Getenv("NO_COLOR") != ""),
		Title:      r.title,
		ExitOnDone: true,
	})
	p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithInput(env.Stdin), tea.WithOutput(env.Stdout), tea.WithAltScreen())
	go func() {
		runErr = r.run(rctx, renv)
		close(finished)
		p.Send(tui.Done{Err: shownErr(runErr)})
	}()
	final, perr := p.Run()
	interrupted := ctx.Err() != nil || errors.Is(perr, tea.ErrInterrupted)
	fm, ok := final.(tui.Model)
	if ok && fm.Interrupted() {
		interrupted = true
	}
	select {
	case <-finished: // the rollout ended: the alternate screen is gone, so its last frame stays on the terminal
		if ok && perr == nil {
			fmt.Fprintln(env.Stdout, finalFrame(fm, store))
		}
	default:
	}
	if interrupted {
		interrupt() // ctrl+c in the monitor, or SIGINT/SIGTERM/SIGHUP: what they do to run
	}
	select {
	case <-finished:
	default:
		if interrupted {
			fmt.Fprintf(env.Stderr, "%s: interrupted; the rollout is rolling back (or pausing with --on-interrupt pause); log %s\n", r.service, logPath)
		} else {
			fmt.Fprintf(env.Stderr, "%s: monitor closed, the rollout goes on (log %s; canaryctl watch %s re-attaches)\n", r.service, logPath, r.service)
		}
		if perr != nil && !errors.Is(perr, tea.ErrProgramKilled) && !errors.Is(perr, tea.ErrInterrupted) {
			fmt.Fprintf(env.Stderr, "%s: monitor: %v\n", r.service, perr)
		}
		// The progress goes on after a signal too: the rollback is what the user wants to see.
		fctx, stopFollow := context.WithCancel(context.WithoutCancel(ctx))
		go func() { <-finished; stopFollow() }()
		_, _ = tui.Follow(fctx, tui.FollowConfig{Updates: updates, Out: env.Stderr})
		<-finished
		stopFollow()
	}
	stopPoll()
	_, _ = env.Stdout.Write(stdout.Bytes())
	if st, err := store.LoadState(); err == nil {
		if r.ephemeral { // the demo's temporary state directory goes with it
			fmt.Fprintf(env.Stderr, "%s (the log went with the demo's temporary state directory; keep both with --state-dir DIR)\n", stateLine(st))
		} else {
			fmt.Fprintf(env.Stderr, "%s (log %s)\n", stateLine(st), logPath)
		}
	}
	return runErr
}

// finalFrame is the monitor's view of the rollout as it ended: the model may have quit before the poller
// delivered the last state and events, so they are read once more.
func finalFrame(m tui.Model, store *rollout.Store) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if snap, ok := <-tui.Poll(ctx, tui.PollConfig{Store: store, Self: true}); ok {
		m = m.WithSnapshot(snap)
	}
	return m.View()
}

// shownErr is what the monitor's status line shows of how the run ended: nothing for an outcome whose
// final line was already printed (its exit code only).
func shownErr(err error) error {
	if quiet(err) {
		return nil
	}
	return err
}

// runRolloutTUI is run --tui: the same rollout with the monitor on the screen.
func runRolloutTUI(ctx context.Context, env *Env, o *runOptions, dir string, spec *rollout.Spec) error {
	if o.specFile == "-" {
		return usageErrorf("--tui needs the keyboard on stdin: pass the spec with --spec FILE, not -")
	}
	inner := *o
	inner.tui = false
	return runWithTUI(ctx, env, tuiRun{root: dir, service: spec.Service, spec: spec, title: "run",
		run: func(ctx context.Context, env *Env) error { return runRollout(ctx, env, &inner) }})
}

// runDemoTUI is demo --tui: the same demo with the monitor on the screen.
func runDemoTUI(ctx context.Context, env *Env, o *demoOptions, spec *rollout.Spec) error {
	inner := *o
	inner.tui = false
	ephemeral := inner.stateDir == ""
	if inner.stateDir == "" {
		dir, err := os.MkdirTemp("", "canaryctl-demo-")
		if err != nil {
			return fmt.Errorf("demo: create state directory: %w", err)
		}
		defer os.RemoveAll(dir)
		inner.stateDir = dir
	}
	return runWithTUI(ctx, env, tuiRun{root: inner.stateDir, service: spec.Service, spec: spec, title: "demo", ephemeral: ephemeral,
		run: func(ctx context.Context, env *Env) error { return runDemo(ctx, env, &inner) }})
}
