// Package rollout runs a canary rollout: it deploys baseline and canary beside stable, shifts traffic
// through a gateway in steps, judges every interval with a Kayenta-style judge, and promotes the
// canary or sends all traffic back to stable.
//
// The rollout is an explicit state machine (see phase.go): one handler per phase, one transition per
// Tick, every transition checked against a table and written atomically to the state directory.
package rollout

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// Gateway routes traffic between stable, baseline and canary.
type Gateway interface {
	SetUpstreams(ctx context.Context, c providers.Cohort, addrs []string) error
	SetSplit(ctx context.Context, s providers.Split) error
	Split(ctx context.Context) (providers.Split, error) // read back the real split
	Rollback(ctx context.Context) error                 // delete canary+baseline targets: all on stable
	Promote(ctx context.Context) error                  // canary's upstreams become stable's
}

// RequestLog is a gateway's record of proxied requests.
type RequestLog interface {
	Requests(ctx context.Context, since, until time.Time) ([]providers.Request, error)
}

// Metrics gives per-interval series for the Kayenta judge.
type Metrics interface {
	Pair(ctx context.Context, m providers.Metric, w providers.Window) (providers.Pair, error)
}

// SampleCounter is optionally implemented by a Metrics source that can count the requests each cohort
// served in a window (for progress lines); without it, points of the first metric are counted.
type SampleCounter interface {
	Samples(ctx context.Context, w providers.Window) (baseline, canary int, err error)
}

// Deployer starts and stops the baseline and canary deployments.
type Deployer interface {
	Deploy(ctx context.Context, c providers.Cohort) (addrs []string, err error) // ready when it returns
	Teardown(ctx context.Context, c providers.Cohort) error                     // idempotent
}

// MetricPair is one metric's spec and its series.
type MetricPair struct {
	Metric MetricSpec
	Pair   providers.Pair
}

// Judgement is the judge's answer for one interval.
type Judgement struct {
	Score   float64
	Metrics []MetricResult
}

// Judge compares canary with baseline for every metric and scores the result (0..100).
type Judge interface {
	Judge(ctx context.Context, pairs []MetricPair) (Judgement, error)
}

// JudgeFunc adapts a function to Judge.
type JudgeFunc func(ctx context.Context, pairs []MetricPair) (Judgement, error)

// Judge calls f.
func (f JudgeFunc) Judge(ctx context.Context, pairs []MetricPair) (Judgement, error) {
	return f(ctx, pairs)
}

// Notifier tells people what happened (webhooks).
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// Clock is the engine's time source; tests use a fake one and step the engine tick by tick.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// InterruptAction is what a SIGINT/SIGTERM/SIGHUP does to a running rollout.
type InterruptAction string

// The interrupt actions.
const (
	InterruptRollback InterruptAction = "rollback"
	InterruptPause    InterruptAction = "pause"
)

// Config configures an Engine.
type Config struct {
	Spec     *Spec
	Gateway  Gateway
	Metrics  Metrics
	Deployer Deployer
	Judge    Judge
	Store    StateStore
	// Requests is the gateway's request log, required by analysis.mode sequential.
	Requests RequestLog
	// SpecYAML is saved beside the state on Start (for resume and abort); optional.
	SpecYAML []byte
	Clock    Clock        // default: the real clock
	Logger   *slog.Logger // default: discard
	// Progress receives one human line per interval (stderr); optional.
	Progress io.Writer
	// Events receives every event as a JSON line besides events.jsonl (--events FILE); optional.
	Events   io.Writer
	Notifier Notifier // default: webhooks of the spec
	// OnInterrupt: rollback (default) or pause.
	OnInterrupt InterruptAction
	// DetachOnPause makes Run return when the rollout pauses instead of holding it.
	DetachOnPause bool
	// PollInterval bounds how long Run waits between ticks, i.e. how fast control requests are
	// picked up (default 250ms).
	PollInterval time.Duration
	// CallTimeout bounds each gateway call (default 15s); rollback uses its own context.
	CallTimeout time.Duration
	// RollbackAttempts before the rollout is Failed (default 10); Backoff between attempts (default 1s,
	// doubling up to 15s).
	RollbackAttempts int
	Backoff          time.Duration
	// PromoteAttempts before a promotion gives up and rolls back (default 3).
	PromoteAttempts int
	// RunID names this rollout (default: derived from the start time).
	RunID string
	// Fence, if set, is checked before every tick: an error (the ownership lease was lost, see
	// Keeper and FenceStore) ends Run at once, without touching the gateway or the state again.
	Fence func() error
	// RollbackFence, if set, replaces Fence while rolling back: a gateway lease that only ran out
	// because the gateway could not be reached does not stop a rollback (Fences.ErrRollingBack).
	RollbackFence func() error
}

// Outcome is how Run ended.
type Outcome struct {
	Phase       Phase
	Verdict     Verdict
	Score       *Number
	Reason      string
	Interrupted bool // a signal ended the run (after rollback or pause)
	Detached    bool // Run returned while the rollout is Paused (DetachOnPause or interrupt with pause)
	// NotStarted: the rollout could not run (deployment, gateway or metrics failed) and was rolled
	// back before any traffic moved to the canary; nothing was judged.
	NotStarted bool
}

// Engine runs one rollout.
type Engine struct {
	cfg  Config
	spec *Spec
	log  *slog.Logger

	mu    sync.Mutex // guards st for State()
	st    State
	wake  time.Time // when the current handler wants the next tick
	ready bool      // deployments and upstreams verified by this process (after resume)

	resumed     bool
	interrupted bool

	mode analysisMode // how steps are judged (mode.go)
}

// New checks the configuration and builds an engine. Call Start or Resume next.
func New(cfg Config) (*Engine, error) {
	switch {
	case cfg.Spec == nil:
		return nil, errors.New("new engine: spec is nil")
	case cfg.Gateway == nil:
		return nil, errors.New("new engine: gateway is nil")
	case cfg.Metrics == nil:
		return nil, errors.New("new engine: metrics is nil")
	case cfg.Deployer == nil:
		return nil, errors.New("new engine: deployer is nil")
	case cfg.Judge == nil:
		return nil, errors.New("new engine: judge is nil")
	case cfg.Store == nil:
		return nil, errors.New("new engine: store is nil")
	}
	if cr, ok := cfg.Metrics.(ControlReader); ok && cr.Control() != cfg.Spec.ControlCohort() {
		return nil, fmt.Errorf("new engine: the metrics source reads %s as the control, but analysis.control is %s; build it with the spec's control (Spec.ControlCohort)",
			cr.Control(), cfg.Spec.ControlCohort())
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Notifier == nil {
		cfg.Notifier = NewWebhookNotifier(WebhookConfig{Webhooks: cfg.Spec.Notify.Webhooks, Timeout: cfg.Spec.Notify.Timeout})
	}
	if cfg.OnInterrupt == "" {
		cfg.OnInterrupt = InterruptRollback
	}
	if cfg.OnInterrupt != InterruptRollback && cfg.OnInterrupt != InterruptPause {
		return nil, fmt.Errorf("new engine: unknown interrupt action %q (valid: rollback, pause)", cfg.OnInterrupt)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 250 * time.Millisecond
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 15 * time.Second
	}
	if cfg.RollbackAttempts <= 0 {
		cfg.RollbackAttempts = 10
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.PromoteAttempts <= 0 {
		cfg.PromoteAttempts = 3
	}
	e := &Engine{cfg: cfg, spec: cfg.Spec, log: cfg.Logger.With("service", cfg.Spec.Service)}
	mode, err := newAnalysisMode(e)
	if err != nil {
		return nil, err
	}
	e.mode = mode
	return e, nil
}

// State returns a copy of the current state.
func (e *Engine) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.st
	st.Intervals = slices.Clone(e.st.Intervals)
	return st
}

// head returns a copy of the state without its intervals: the phase, step and split, read at
// every tick, without copying a list that grows through the rollout.
func (e *Engine) head() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.st
	st.Intervals = nil
	return st
}

// Start takes the lock and begins a new rollout in phase Pending. It refuses to overwrite a rollout
// that has not ended (use Resume) and one run by another process.
func (e *Engine) Start(ctx context.Context) error {
	if err := e.cfg.Store.Lock(); err != nil {
		return fmt.Errorf("start rollout: %w", err)
	}
	if old, err := e.cfg.Store.LoadState(); err == nil && !old.Phase.Terminal() {
		e.cfg.Store.Unlock()
		return fmt.Errorf("start rollout: %w", &UnfinishedError{Service: old.Service, Phase: old.Phase})
	}
	// Requests left over from an earlier rollout must not act on this one.
	if reqs, err := e.cfg.Store.PendingControls(); err == nil {
		for _, r := range reqs {
			_ = e.cfg.Store.AckControl(r.ID)
		}
	}
	if len(e.cfg.SpecYAML) > 0 {
		if err := e.cfg.Store.SaveSpec(e.cfg.SpecYAML); err != nil {
			e.cfg.Store.Unlock()
			return err
		}
	}
	now := e.now()
	runID := e.cfg.RunID
	if runID == "" {
		runID = now.UTC().Format("20060102T150405.000Z")
	}
	weights := make([]float64, len(e.spec.Steps))
	for i, s := range e.spec.Steps {
		weights[i] = s.Weight
	}
	e.mu.Lock()
	e.st = State{
		SchemaVersion: StateSchemaVersion,
		Service:       e.spec.Service,
		RunID:         runID,
		Phase:         Pending,
		Steps:         len(e.spec.Steps),
		Weights:       weights,
		Control:       e.spec.Analysis.Control,
		Intervals:     []Interval{},
		StartedAt:     now,
	}
	e.mu.Unlock()
	e.ready = true
	if err := e.save(); err != nil {
		e.cfg.Store.Unlock()
		return err
	}
	if e.spec.ControlDefaulted() {
		e.log.Info("analysis.control defaults to stable: no baseline is deployed", "gateway", e.spec.GatewayCaps().Setting, "control", e.spec.ControlNote())
	}
	e.emit(&Event{Type: EvStarted, Reason: fmt.Sprintf("%d steps: %s; control: %s", len(weights), stepList(weights), e.spec.ControlNote())})
	e.notify(ctx, EventStarted, "")
	return nil
}

// UnfinishedError: a rollout of the service exists and has not ended.
type UnfinishedError struct {
	Service string
	Phase   Phase
}

func (e *UnfinishedError) Error() string {
	return fmt.Sprintf("a rollout of %s is still %s; continue it with run --resume or end it with canaryctl abort", e.Service, e.Phase)
}

// Resume takes the lock, reads the recorded state, re-reads the gateway's real split and prepares to
// continue from the recorded phase. An Analyzing step restarts (its data would have a hole), as does a
// Progressing one; deployments and upstreams are re-ensured before traffic is touched.
func (e *Engine) Resume(ctx context.Context) error {
	if err := e.cfg.Store.Lock(); err != nil {
		return fmt.Errorf("resume rollout: %w", err)
	}
	st, err := e.cfg.Store.LoadState()
	if err != nil {
		e.cfg.Store.Unlock()
		return fmt.Errorf("resume rollout: %w", err)
	}
	if st.Service != e.spec.Service {
		e.cfg.Store.Unlock()
		return fmt.Errorf("resume rollout: state is for service %q, spec for %q", st.Service, e.spec.Service)
	}
	weights := make([]float64, len(e.spec.Steps))
	for i, s := range e.spec.Steps {
		weights[i] = s.Weight
	}
	if !slices.Equal(st.Weights, weights) {
		e.cfg.Store.Unlock()
		return fmt.Errorf("resume rollout: the recorded rollout has steps %s, the spec %s; resume with the spec it started with (%s)",
			stepList(st.Weights), stepList(weights), e.cfg.Store.SpecPath())
	}
	if c := st.Control; c != "" && c != e.spec.Analysis.Control || c == "" && e.spec.Analysis.Control == ControlStable {
		e.cfg.Store.Unlock()
		return fmt.Errorf("resume rollout: the recorded rollout compares the canary with %s, the spec with %s; resume with the spec it started with (%s)",
			cmp.Or(c, ControlBaseline), e.spec.Analysis.Control, e.cfg.Store.SpecPath())
	}
	if st.Intervals == nil {
		st.Intervals = []Interval{}
	}
	e.mu.Lock()
	e.st = *st
	e.mu.Unlock()
	e.resumed = true
	if st.Phase.Terminal() {
		return nil
	}
	if err := e.restoreOriginal(st); err != nil {
		e.cfg.Store.Unlock()
		return fmt.Errorf("resume rollout: %w", err)
	}
	if err := e.recall(st); err != nil {
		e.cfg.Store.Unlock()
		return fmt.Errorf("resume rollout: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	observed, err := e.cfg.Gateway.Split(cctx)
	cancel()
	ev := &Event{Type: EvResumed, Intent: st.Intent}
	if err != nil {
		ev.Reason = fmt.Sprintf("read gateway split: %v", err)
	} else {
		ev.Observed = &observed
		ev.Reason = fmt.Sprintf("recorded split %s, gateway has %s", st.Split, observed)
	}
	// The recorded split stays the target: Progressing sets its step's split again, Paused restores
	// it, RollingBack and Promoting replace it.
	e.mu.Lock()
	e.st.Intent = nil
	e.st.Attempts = 0
	e.mu.Unlock()
	e.emit(ev)
	e.log.Info("resuming rollout", "phase", st.Phase, "step", st.Step, "reason", ev.Reason)
	if st.Phase == Analyzing {
		return e.transition(Progressing, fmt.Sprintf("resumed: step %d restarts", st.Step+1))
	}
	return e.save()
}

// Close releases the lock.
func (e *Engine) Close() error { return e.cfg.Store.Unlock() }

func (e *Engine) now() time.Time { return e.cfg.Clock.Now() }

// Wake returns when the current phase next wants a tick (zero: now).
func (e *Engine) Wake() time.Time { return e.wake }

// Run ticks the engine until the rollout ends, or pauses with DetachOnPause. When ctx is cancelled
// (SIGINT/SIGTERM/SIGHUP) the rollout rolls back (or pauses with OnInterrupt pause) before Run returns.
func (e *Engine) Run(ctx context.Context) (Outcome, error) {
	for {
		before := e.head().Phase
		if _, err := e.Tick(ctx); err != nil {
			return e.outcome(), err
		}
		st := e.head()
		if st.Phase.Terminal() {
			return e.outcome(), nil
		}
		if st.Phase == Paused && (e.cfg.DetachOnPause || e.interrupted) {
			o := e.outcome()
			o.Detached = true
			return o, nil
		}
		if st.Phase != before {
			continue // the next phase's handler runs at once
		}
		wait := e.cfg.PollInterval
		if d := e.wake.Sub(e.now()); d > 0 && d < wait {
			wait = d
		}
		var done <-chan struct{}
		if !e.interrupted {
			done = ctx.Done()
		}
		select {
		case <-e.cfg.Clock.After(wait):
		case <-done:
		}
	}
}

func (e *Engine) outcome() Outcome {
	st := e.head()
	return Outcome{Phase: st.Phase, Verdict: st.Verdict, Score: st.Score, Reason: st.Reason, Interrupted: st.Interrupted,
		NotStarted: st.NotStarted && !st.Interrupted}
}

// Tick runs at most one transition: an interrupt, a control request, or the current phase's handler.
// It returns the phase after the tick. A panic in a handler rolls the rollout back.
func (e *Engine) Tick(ctx context.Context) (Phase, error) {
	phase := e.head().Phase
	if phase.Terminal() {
		return phase, nil
	}
	if err := e.fence(phase); err != nil {
		if phase != RollingBack && e.cfg.RollbackFence != nil && e.cfg.RollbackFence() == nil {
			// The gateway lease ran out only because the gateway could not be reached to renew it:
			// nobody else is known to hold the service, and the safe way out is all traffic to stable.
			if terr := e.transition(RollingBack, "the ownership lease could not be renewed (is the gateway reachable?): "+err.Error()); terr != nil {
				return e.head().Phase, terr
			}
			return RollingBack, nil
		}
		return phase, fmt.Errorf("stopped in %s: %w", phase, err)
	}
	if ctx.Err() != nil && !e.interrupted {
		e.interrupted = true
		next, err := e.interrupt()
		if next != phase || err != nil {
			return next, err
		}
		// Rolling back or promoting already: the handler goes on below, ignoring the cancellation.
	}
	if e.interrupted {
		ctx = context.WithoutCancel(ctx)
	}
	if moved, err := e.applyControls(); moved || err != nil {
		return e.head().Phase, err
	}
	next, reason := e.handle(ctx, phase)
	if next != phase {
		if err := e.fence(phase); err != nil { // lost during the handler: its outcome is not ours to record
			return phase, fmt.Errorf("stopped in %s: %w", phase, err)
		}
	}
	if next != phase {
		if err := e.transition(next, reason); err != nil {
			return e.head().Phase, err
		}
	}
	return e.head().Phase, nil
}

// fence is the ownership check before and after a tick's handler (nil: go on).
func (e *Engine) fence(phase Phase) error {
	if phase == RollingBack && e.cfg.RollbackFence != nil {
		return e.cfg.RollbackFence()
	}
	if e.cfg.Fence != nil {
		return e.cfg.Fence()
	}
	return nil
}

func (e *Engine) handle(ctx context.Context, phase Phase) (next Phase, reason string) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("panic in phase handler", "phase", phase, "panic", r)
			next, reason = RollingBack, fmt.Sprintf("panic in %s handler: %v", phase, r)
			if phase == RollingBack {
				next = Failed
			}
		}
	}()
	switch phase {
	case Pending:
		return Deploying, e.spec.deployingText()
	case Deploying:
		return e.handleDeploying(ctx)
	case Progressing:
		return e.handleProgressing(ctx)
	case Analyzing:
		return e.handleAnalyzing(ctx)
	case Paused:
		return e.handlePaused(ctx)
	case Promoting:
		return e.handlePromoting(ctx)
	case RollingBack:
		return e.handleRollingBack(ctx)
	}
	return phase, ""
}

// interrupt is the transition a cancelled context causes.
func (e *Engine) interrupt() (Phase, error) {
	st := e.State()
	e.mu.Lock()
	e.st.Interrupted = true
	e.mu.Unlock()
	if e.cfg.OnInterrupt == InterruptPause && (st.Phase == Progressing || st.Phase == Analyzing || st.Phase == Paused) {
		reason := "interrupted (SIGINT/SIGTERM/SIGHUP): paused holding the split; continue with run --resume or end with canaryctl abort"
		if st.Phase == Paused {
			return Paused, e.save()
		}
		e.setPause(PauseInterrupt, reason)
		return Paused, e.transition(Paused, reason)
	}
	if st.Phase == RollingBack {
		if st.Attempts > 0 {
			// The rollback is already failing (an unreachable gateway): a signal means stop, so
			// one last attempt now, then Failed, instead of minutes of back-off.
			e.mu.Lock()
			e.st.Attempts = max(e.st.Attempts, e.cfg.RollbackAttempts-1)
			e.mu.Unlock()
			e.wake = time.Time{}
			e.log.Warn("interrupted while the rollback is failing: one last attempt")
		}
		return RollingBack, e.save()
	}
	if st.Phase == Promoting {
		// Every step passed and the gateway may be half-way through the promotion: finish it (on a
		// context that ignores the signal) rather than roll a promoted canary back.
		e.log.Warn("interrupted while promoting: finishing the promotion")
		return Promoting, e.save()
	}
	return RollingBack, e.transition(RollingBack, "interrupted (SIGINT/SIGTERM/SIGHUP): sending all traffic back to stable")
}

// transition moves to next after checking the table, saves the state and emits the event.
func (e *Engine) transition(next Phase, reason string) error {
	e.mu.Lock()
	from, prevReason := e.st.Phase, e.st.Reason
	if !CanTransition(from, next) {
		e.mu.Unlock()
		err := &TransitionError{From: from, To: next}
		e.log.Error("illegal transition", "err", err)
		if from != RollingBack && CanTransition(from, RollingBack) {
			return e.transition(RollingBack, "internal error: "+err.Error())
		}
		return err
	}
	e.st.Phase = next
	e.st.Reason = reason
	e.st.Attempts = 0
	if next != Paused {
		e.st.Pause = nil
	}
	if next.Terminal() {
		e.st.FinishedAt = e.now()
	}
	st := e.st
	e.mu.Unlock()
	e.wake = time.Time{}
	logReason := reason
	if reason == prevReason && reason != "" { // RollingBack -> RolledBack keeps its reason: log it once
		logReason = "(the same as the previous phase's)"
	}
	e.log.Info("phase", "from", from, "to", next, "reason", logReason)
	err := e.save()
	e.emit(&Event{Type: EvTransition, From: from, Phase: next, Step: st.Step, Split: st.Split, Reason: reason})
	switch next {
	case Promoted:
		e.notify(context.Background(), EventPromoted, reason)
	case RolledBack:
		e.notify(context.Background(), EventRolledBack, reason)
	case Failed:
		e.notify(context.Background(), EventFailed, reason)
	case Paused:
		e.notify(context.Background(), EventPaused, reason)
	}
	return err
}

func (e *Engine) save() error {
	e.mu.Lock()
	e.st.UpdatedAt = e.now()
	e.st.PID = os.Getpid()
	st := e.st
	e.mu.Unlock()
	if err := e.cfg.Store.SaveState(&st); err != nil {
		e.log.Error("save state", "err", err)
		return err
	}
	return nil
}

func (e *Engine) emit(ev *Event) {
	st := e.head()
	ev.V = StateSchemaVersion
	ev.Time = e.now()
	ev.Service = st.Service
	ev.RunID = st.RunID
	if ev.Phase == "" {
		ev.Phase = st.Phase
	}
	if ev.Type != EvTransition {
		ev.Step = st.Step
		ev.Split = st.Split
	}
	if err := e.cfg.Store.AppendEvent(ev); err != nil {
		e.log.Warn("append event", "err", err)
	}
	if e.cfg.Events != nil {
		if err := writeEventLine(e.cfg.Events, ev); err != nil {
			e.log.Warn("write event", "err", err)
		}
	}
}

func (e *Engine) notify(ctx context.Context, event, reason string) {
	st := e.State()
	n := Notification{Event: event, Service: st.Service, RunID: st.RunID, Phase: st.Phase, Step: st.Step,
		Steps: st.Steps, Split: st.Split, Verdict: st.Verdict, Score: st.Score, Reason: reason}
	n.Text = n.text()
	if err := e.cfg.Notifier.Notify(context.WithoutCancel(ctx), n); err != nil {
		e.log.Warn("notify", "err", err)
		e.emit(&Event{Type: EvNotify, Reason: err.Error()})
	}
}

func (e *Engine) setPause(kind, reason string) {
	e.mu.Lock()
	e.st.Pause = &PauseInfo{Kind: kind, Reason: reason, Since: e.now()}
	e.mu.Unlock()
}

// call runs one gateway call with its own timeout derived from ctx.
func (e *Engine) call(ctx context.Context, f func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	defer cancel()
	return f(cctx)
}

// intend records a gateway change before it is made.
func (e *Engine) intend(in Intent) error {
	in.At = e.now()
	e.mu.Lock()
	e.st.Intent = &in
	e.mu.Unlock()
	e.emit(&Event{Type: EvIntent, Intent: &in})
	return e.save()
}

func (e *Engine) done() {
	e.mu.Lock()
	e.st.Intent = nil
	e.mu.Unlock()
}

// setSplit records the intent, sets the split and reads it back.
func (e *Engine) setSplit(ctx context.Context, s providers.Split) error {
	if err := e.intend(Intent{Op: "set-split", Split: &s}); err != nil {
		return err
	}
	if err := e.call(ctx, func(c context.Context) error { return e.cfg.Gateway.SetSplit(c, s) }); err != nil {
		return fmt.Errorf("set split %d/%d bp: %w", s.Canary, s.Baseline, err)
	}
	var got providers.Split
	if err := e.call(ctx, func(c context.Context) (err error) { got, err = e.cfg.Gateway.Split(c); return err }); err != nil {
		return fmt.Errorf("read back split: %w", err)
	}
	if got != s {
		return fmt.Errorf("gateway reports split %s after setting %s", got, s)
	}
	e.mu.Lock()
	e.st.Split = s
	e.st.Intent = nil
	e.mu.Unlock()
	return e.save()
}

// ensure deploys both cohorts (Deploy is ready-when-it-returns and safe to repeat) and registers every
// cohort's upstreams. A fresh run does it in Deploying; a resumed run once before touching traffic.
func (e *Engine) ensure(ctx context.Context) error {
	if e.ready {
		return nil
	}
	for _, c := range e.deployedCohorts() {
		addrs, err := e.cfg.Deployer.Deploy(ctx, c)
		if err != nil {
			return fmt.Errorf("deploy %s: %w", c, err)
		}
		e.mu.Lock()
		if e.st.Addresses == nil {
			e.st.Addresses = map[providers.Cohort][]string{}
		}
		e.st.Addresses[c] = addrs
		e.mu.Unlock()
		if err := e.save(); err != nil {
			return err
		}
	}
	st := e.State()
	ups := map[providers.Cohort][]string{
		providers.Stable:   e.spec.Stable.Addresses,
		providers.Baseline: st.Addresses[providers.Baseline],
		providers.Canary:   st.Addresses[providers.Canary],
	}
	for _, c := range e.gatewayCohorts() {
		if err := e.intend(Intent{Op: "set-upstreams", Cohort: c, Addrs: ups[c]}); err != nil {
			return err
		}
		if err := e.call(ctx, func(cc context.Context) error { return e.cfg.Gateway.SetUpstreams(cc, c, ups[c]) }); err != nil {
			return fmt.Errorf("set %s upstreams: %w", c, err)
		}
		e.done()
	}
	e.ready = true
	return e.save()
}

func (e *Engine) handleDeploying(ctx context.Context) (Phase, string) {
	if err := e.recordOriginal(ctx); err != nil {
		return RollingBack, "deploying: " + err.Error()
	}
	// Nothing may reach the new cohorts before the first step: the split starts at zero.
	if err := e.setSplit(ctx, providers.Split{}); err != nil {
		return e.notStarted("deploying: " + err.Error())
	}
	e.ready = false
	if err := e.ensure(ctx); err != nil {
		return e.notStarted("deploying: " + err.Error())
	}
	e.mu.Lock()
	e.st.Step = 0
	e.mu.Unlock()
	st := e.State()
	return Progressing, e.spec.deployedText(st.Addresses)
}

// notStarted rolls back a rollout that could not run (a deployment, the gateway or the metrics
// source failed) before any traffic moved to the canary: it ends RolledBack with NotStarted set, so
// that CI can tell a broken pipeline from a canary judged bad.
func (e *Engine) notStarted(reason string) (Phase, string) {
	e.mu.Lock()
	if e.st.Split == (providers.Split{}) && len(e.st.Intervals) == 0 {
		e.st.NotStarted = true
	}
	e.mu.Unlock()
	return RollingBack, reason
}

func (e *Engine) approved(step int) bool { return slices.Contains(e.State().Approved, step) }

func (e *Engine) handleProgressing(ctx context.Context) (Phase, string) {
	st := e.State()
	step := e.spec.Steps[st.Step]
	if step.Approval && !e.approved(st.Step) {
		reason := fmt.Sprintf("step %d/%d (%s) needs approval: run canaryctl promote %s", st.Step+1, st.Steps, providers.PercentText(step.Weight), st.Service)
		e.setPause(PauseApproval, reason)
		return Paused, reason
	}
	if err := e.ensure(ctx); err != nil {
		if st.Step == 0 && st.StepStartedAt.IsZero() {
			return e.notStarted(fmt.Sprintf("step %d: %v", st.Step+1, err))
		}
		return RollingBack, fmt.Sprintf("step %d: %v", st.Step+1, err)
	}
	if why := e.notAlive(ctx); why != "" {
		return RollingBack, fmt.Sprintf("step %d: %s", st.Step+1, why) // before it gets a larger share
	}
	if done, next, reason := e.mode.prepare(ctx, st, step); !done {
		return next, reason
	}
	target := e.spec.SplitFor(st.Step)
	if err := e.setSplit(ctx, target); err != nil {
		return RollingBack, fmt.Sprintf("step %d: %v", st.Step+1, err)
	}
	now := e.now()
	e.mu.Lock()
	e.st.StepStartedAt = now
	e.st.NextAnalysisAt = now.Add(min(step.Warmup+step.Interval, step.Duration))
	e.st.ConsecutiveErrors = 0
	e.mu.Unlock()
	how := e.mode.begin(now, st, step)
	return Analyzing, fmt.Sprintf("step %d/%d: %s, %s", st.Step+1, st.Steps, e.splitText(target), how)
}

func (e *Engine) handleAnalyzing(ctx context.Context) (Phase, string) {
	if why := e.notAlive(ctx); why != "" {
		return RollingBack, fmt.Sprintf("step %d: %s", e.State().Step+1, why)
	}
	return e.mode.analyze(ctx)
}

// stepPassed moves to the next step, or to Promoting after the last one.
func (e *Engine) stepPassed(reason string) (Phase, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.st.Step+1 >= e.st.Steps {
		return Promoting, reason + "; promoting"
	}
	e.st.Step++
	e.st.StepStartedAt = time.Time{}
	e.st.NextAnalysisAt = time.Time{}
	return Progressing, reason
}

func (e *Engine) handlePaused(ctx context.Context) (Phase, string) {
	st := e.State()
	if st.Pause != nil && e.spec.PauseTimeout > 0 {
		deadline := st.Pause.Since.Add(e.spec.PauseTimeout)
		if !e.now().Before(deadline) {
			return RollingBack, fmt.Sprintf("paused for %s (pauseTimeout): %s", e.spec.PauseTimeout, st.Pause.Reason)
		}
		e.wake = deadline
	}
	if st.Pause != nil && st.Pause.Kind == PauseApproval && st.StepStartedAt.IsZero() && st.Step == 0 {
		return Paused, "" // nothing routed yet: the first step waits for approval
	}
	if why := e.notAlive(ctx); why != "" {
		return RollingBack, "paused: " + why
	}
	// Hold the split: after a resume, make sure the gateway really has it.
	if !e.ready {
		want := st.Split
		if err := e.ensure(ctx); err != nil {
			return RollingBack, "paused: " + err.Error()
		}
		if err := e.setSplit(ctx, want); err != nil {
			return RollingBack, "paused: hold split: " + err.Error()
		}
	}
	return Paused, ""
}

func (e *Engine) handlePromoting(ctx context.Context) (Phase, string) {
	st := e.State()
	if why := e.notAlive(ctx); why != "" && !st.PromoteAttempted {
		return RollingBack, "not promoting: " + why
	}
	if !e.now().Before(e.wake) || e.wake.IsZero() {
		err := e.ensure(ctx)
		if err == nil {
			// saved with the intent, before the first call: a run killed inside Promote must leave
			// a state that says the gateway may already be half promoted
			e.mu.Lock()
			e.st.PromoteAttempted = true
			e.mu.Unlock()
			if err = e.intend(Intent{Op: "promote"}); err == nil {
				err = e.call(ctx, e.cfg.Gateway.Promote)
			}
		}
		if err != nil {
			if attempts, last := e.failedAttempt("promote", err, e.cfg.PromoteAttempts); last {
				return RollingBack, fmt.Sprintf("promote: %d attempts failed: %v", attempts, err)
			}
			return Promoting, ""
		}
		e.mu.Lock()
		e.st.Intent = nil
		e.st.Split = providers.Split{}
		e.mu.Unlock()
		how := ""
		if strings.HasPrefix(st.Reason, promotedManually) { // a person decided, not the judge: say so
			how = st.Reason + "; "
		}
		torn := e.teardownControl(context.WithoutCancel(ctx))
		return Promoted, fmt.Sprintf("%scanary is the new stable (%v)%s", how, st.Addresses[providers.Canary], torn)
	}
	return Promoting, ""
}

// failedAttempt counts a failed attempt of op (promote, rollback) and records it; last reports that
// it was the limit-th, else the next attempt waits for the back-off.
func (e *Engine) failedAttempt(op string, err error, limit int) (attempts int, last bool) {
	e.mu.Lock()
	e.st.Attempts++
	attempts = e.st.Attempts
	e.mu.Unlock()
	e.emit(&Event{Type: EvError, Reason: fmt.Sprintf("%s attempt %d: %v", op, attempts, err)})
	if attempts >= limit {
		return attempts, true
	}
	e.wake = e.now().Add(e.backoff(attempts))
	_ = e.save()
	return attempts, false
}

func (e *Engine) backoff(attempt int) time.Duration {
	d := e.cfg.Backoff
	for i := 1; i < attempt && d < 15*time.Second; i++ {
		d *= 2
	}
	return min(d, 15*time.Second)
}

// handleRollingBack deletes the canary and baseline targets on a context that ignores cancellation,
// retrying with backoff, then tears the deployments down.
func (e *Engine) handleRollingBack(ctx context.Context) (Phase, string) {
	if !e.wake.IsZero() && e.now().Before(e.wake) {
		return RollingBack, ""
	}
	ctx = context.WithoutCancel(ctx)
	st := e.State()
	err := e.intend(Intent{Op: "rollback"})
	if err == nil {
		// A 404 here is not "nothing registered": the gateway lost what this rollout changed, and
		// no write succeeded. It is retried and, if it persists, the rollout ends Failed.
		err = e.call(ctx, e.cfg.Gateway.Rollback)
	}
	if err != nil {
		e.log.Error("rollback attempt failed", "attempt", e.State().Attempts+1, "err", err)
		if attempts, last := e.failedAttempt("rollback", err, e.cfg.RollbackAttempts); last {
			return Failed, fmt.Sprintf("%s; rollback failed %d times: %v", st.Reason, attempts, err)
		}
		return RollingBack, ""
	}
	e.mu.Lock()
	e.st.Intent = nil
	e.st.Split = providers.Split{}
	if e.st.Verdict == "" || e.st.Verdict == VerdictPass {
		// The rollout did not end on a failed judgement (abort, error, interrupt).
		e.st.Verdict = ""
	}
	e.mu.Unlock()
	reason := st.Reason
	if st.PromoteAttempted {
		// A failed promotion may have left stable routed to the canary's instances: keep them.
		reason += "; the canary deployment is kept because a promotion was attempted: check the gateway's stable upstreams, then tear it down"
	} else {
		e.teardown(ctx, providers.Canary)
	}
	e.teardownControl(ctx)
	return RolledBack, reason
}

func (e *Engine) teardown(ctx context.Context, c providers.Cohort) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := e.cfg.Deployer.Teardown(cctx, c); err != nil {
		e.log.Warn("teardown", "cohort", c, "err", err)
		e.emit(&Event{Type: EvError, Reason: fmt.Sprintf("teardown %s: %v", c, err)})
	}
}

// applyControls applies pending control requests in order; it stops after the first one that moves
// the rollout (one transition per tick).
func (e *Engine) applyControls() (moved bool, err error) {
	reqs, err := e.cfg.Store.PendingControls()
	if err != nil {
		e.log.Warn("read control requests", "err", err)
		return false, nil
	}
	for _, req := range reqs {
		next, reason, note := e.control(req)
		r := req
		var terr error
		if next != "" {
			terr = e.transition(next, reason)
		}
		// Acknowledged once the new phase is saved: a client that waits for the ack and then reads
		// the state (canaryctl pause prints the phase) sees the change, not the phase before it.
		if err := e.cfg.Store.AckControl(req.ID); err != nil {
			e.log.Warn("ack control request", "err", err)
		}
		e.emit(&Event{Type: EvControl, Control: &r, Reason: note})
		e.log.Info("control request", "action", req.Action, "by", req.By, "note", note)
		if next != "" {
			return true, terr
		}
	}
	return false, nil
}

// control decides what a request does in the current phase: the next phase (empty: none), the reason
// of the transition, and a note for the event.
func (e *Engine) control(req ControlRequest) (next Phase, reason, note string) {
	st := e.State()
	by := req.By
	if by == "" {
		by = "canaryctl " + string(req.Action)
	}
	if req.Reason != "" {
		by += " (" + req.Reason + ")"
	}
	switch req.Action {
	case ActionAbort:
		if st.Phase == RollingBack {
			return "", "", "already rolling back"
		}
		return RollingBack, "aborted by " + by, "applied"
	case ActionPause:
		switch st.Phase {
		case Progressing, Analyzing:
			reason := fmt.Sprintf("paused by %s at step %d/%d (%s); split held", by, st.Step+1, st.Steps, st.Split)
			e.setPause(PauseUser, reason)
			return Paused, reason, "applied"
		case Paused:
			return "", "", "already paused"
		}
		return "", "", fmt.Sprintf("rejected: cannot pause while %s", st.Phase)
	case ActionResume, ActionPromote:
		if st.Phase == Paused && st.Pause != nil && st.Pause.Kind != PauseUser && st.Pause.Kind != PauseInterrupt {
			return e.approve(st, by)
		}
		if req.Action == ActionResume {
			if st.Phase != Paused {
				return "", "", fmt.Sprintf("ignored: not paused (%s)", st.Phase)
			}
			e.restartStep()
			return Progressing, fmt.Sprintf("resumed by %s: step %d restarts", by, st.Step+1), "applied"
		}
		switch st.Phase {
		case Progressing, Analyzing, Paused:
			return Promoting, fmt.Sprintf("%s%s at step %d/%d, skipping the remaining steps", promotedManually, by, st.Step+1, st.Steps), "applied"
		}
		return "", "", fmt.Sprintf("rejected: cannot promote while %s", st.Phase)
	}
	return "", "", "ignored: unknown action"
}

// promotedManually starts the reason of a promotion a person asked for (canaryctl promote).
const promotedManually = "promoted manually by "

// approve answers a pause that waits for a decision: an approval step starts, a marginal step counts
// as passed.
func (e *Engine) approve(st State, by string) (Phase, string, string) {
	switch st.Pause.Kind {
	case PauseApproval:
		e.mu.Lock()
		e.st.Approved = append(e.st.Approved, st.Step)
		e.mu.Unlock()
		e.restartStep()
		return Progressing, fmt.Sprintf("step %d/%d approved by %s", st.Step+1, st.Steps, by), "approved"
	default: // marginal
		next, reason := e.stepPassed(fmt.Sprintf("marginal step %d/%d accepted by %s", st.Step+1, st.Steps, by))
		return next, reason, "approved"
	}
}

func (e *Engine) restartStep() {
	e.mu.Lock()
	e.st.StepStartedAt = time.Time{}
	e.st.NextAnalysisAt = time.Time{}
	e.mu.Unlock()
	e.mode.restart()
}

// failReasons summarizes the metrics that did not pass.
func failReasons(ms []MetricResult) string {
	var parts []string
	for _, m := range ms {
		if m.Classification == "Pass" {
			continue
		}
		s := m.Name + " " + m.Classification
		if m.Critical {
			s += " (critical)"
		}
		if m.Reason != "" {
			s += ": " + m.Reason
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "no failing metric"
	}
	return strings.Join(parts, "; ")
}

func fmtScore(f float64) string {
	if math.IsNaN(f) {
		return "n/a"
	}
	return fmt.Sprintf("%.4g", f)
}

// controlLabel names the control cohort in progress lines: baseline or stable.
func (e *Engine) controlLabel() string { return string(e.spec.ControlCohort()) }

// splitText renders a split as the spec's cohorts see it (Spec.SplitText).
func (e *Engine) splitText(s providers.Split) string { return e.spec.SplitText(s) }

func stepList(ws []float64) string {
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = providers.PercentText(w)
	}
	return strings.Join(s, " -> ")
}
