package rollout

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout/deploy"
)

// The controls (analysis.control): what the canary is compared with.
const (
	// ControlBaseline: a fresh copy of the stable version deployed beside the canary with the same
	// share of traffic (Kayenta's recommendation; the default).
	ControlBaseline = "baseline"
	// ControlStable: no baseline is deployed; the canary is compared with the stable instances that
	// serve the rest of the traffic (or, with gateway.kong.mode bluegreen, with stable observed for
	// one interval before the switch).
	ControlStable = "stable"
)

// Controls lists the valid values of analysis.control.
var Controls = []string{ControlBaseline, ControlStable}

// GatewayCaps are the capabilities of the spec's gateway: what its registered type says of the
// gateway its section configures (full capabilities for an unknown type, which Validate reports).
func (s *Spec) GatewayCaps() providers.GatewayCaps {
	t, ok := providers.LookupGateway(s.Gateway.Type)
	if !ok {
		return providers.FullCaps
	}
	return t.Caps(s.Gateway.Section())
}

// BeforeAfter reports whether steps are judged before/after: the gateway never serves stable and
// canary at the same time (gateway.kong.mode bluegreen), so the canary's windows are compared with
// one window of stable observed before the switch.
func (s *Spec) BeforeAfter() bool { return s.GatewayCaps().BeforeAfterOnly }

// ControlCohort is the cohort the canary is compared with: providers.Baseline or providers.Stable.
// Its data fill providers.Pair.Baseline (the judge's "control" side, whatever the cohort).
func (s *Spec) ControlCohort() providers.Cohort {
	if s.Analysis.Control == ControlStable {
		return providers.Stable
	}
	return providers.Baseline
}

// HasBaseline reports whether a baseline is deployed (analysis.control baseline).
func (s *Spec) HasBaseline() bool { return s.ControlCohort() == providers.Baseline }

// ControlNote says in one sentence what the canary is compared with and why (reports, the log).
func (s *Spec) ControlNote() string {
	switch {
	case s.HasBaseline():
		return "baseline: a fresh copy of the stable version deployed beside the canary with the same share of traffic"
	case s.BeforeAfter():
		return fmt.Sprintf("stable, before/after: %s never serves stable and canary at once, so every interval of the canary is compared with one interval of stable observed just before the switch (no baseline is deployed)", s.GatewayCaps().Setting)
	case s.controlDefaulted:
		return fmt.Sprintf("stable: %s has no baseline cohort, so analysis.control defaults to stable and the canary is compared with the stable instances serving the rest of the traffic (no baseline is deployed)", s.GatewayCaps().Setting)
	}
	return "stable (analysis.control: stable): the canary is compared with the stable instances serving the rest of the traffic (no baseline is deployed)"
}

// setControlDefault fills analysis.control: stable for the Kong modes without a baseline cohort,
// baseline otherwise.
func (s *Spec) setControlDefault() {
	if s.Analysis.Control != "" {
		return
	}
	s.Analysis.Control = ControlBaseline
	if !s.GatewayCaps().Baseline {
		s.Analysis.Control = ControlStable
		s.controlDefaulted = true
	}
}

// ControlDefaulted reports whether analysis.control was left out and set to stable because the
// gateway mode has no baseline cohort (the engine logs it once).
func (s *Spec) ControlDefaulted() bool { return s.controlDefaulted }

// validateDeploy checks deploy: both cohorts with a baseline control, the canary alone (and no
// baseline section) with a stable one.
func (s *Spec) validateDeploy(bad func(string, string, ...any)) []error {
	var err error
	noBaseline := reflect.ValueOf(s.Deploy.Baseline).IsZero()
	switch {
	case s.HasBaseline() || !slices.Contains(Controls, s.Analysis.Control):
		err = s.Deploy.Validate()
	default:
		err = s.Deploy.Canary.Validate("deploy.canary")
		if !noBaseline {
			why := "analysis.control is stable"
			if s.controlDefaulted {
				why += fmt.Sprintf(" (the default for %s)", s.GatewayCaps().Setting)
			}
			bad("deploy.baseline", "not deployed because %s; remove deploy.baseline, or set analysis.control: baseline with a gateway mode that has a baseline", why)
		}
	}
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range flatten(err) {
		var ce *deploy.ConfigError
		if errors.As(e, &ce) {
			msg := ce.Msg
			if noBaseline && ce.Field == "deploy.baseline.type" {
				msg += "; or set analysis.control: stable to deploy no baseline and compare the canary with stable itself"
			}
			e = &SpecError{Field: ce.Field, Msg: msg}
		}
		out = append(out, e)
	}
	return out
}

// validateControl checks analysis.control against the gateway and the steps.
func (s *Spec) validateControl(bad func(string, string, ...any)) {
	c := s.Analysis.Control
	if !slices.Contains(Controls, c) {
		bad("analysis.control", "unknown control %q; use baseline (a fresh copy of stable, the default) or stable", c)
		return
	}
	caps := s.GatewayCaps()
	if !caps.Baseline && c == ControlBaseline {
		bad("analysis.control", "%s has no baseline cohort; remove analysis.control (it defaults to stable for this mode) or use %s", caps.Setting, caps.Instead)
	}
	if !caps.BeforeAfterOnly {
		return
	}
	if len(s.Steps) != 1 || s.Steps[0].Weight != 100 {
		bad("steps", "%s switches all traffic at once; use steps: [{weight: 100}] (the canary is judged against stable observed before the switch) or %s for gradual steps", caps.Setting, caps.Instead)
	}
	if s.Analysis.Mode == ModeSequential {
		bad("analysis.mode", "sequential compares canary and control requests served at the same time, which %s never has; use analysis.mode: kayenta (before/after windows) or leave analysis.mode out", caps.Setting)
	}
	for i, st := range s.Steps {
		if st.Lookback != 0 && st.Lookback != st.Interval {
			bad(fmt.Sprintf("steps[%d].lookback", i), "before/after judging compares windows of one interval (%s) each; leave lookback out", st.Interval)
		}
	}
}

// NewDeployer builds the deployer of the spec's cohorts: baseline and canary, or the canary alone
// when analysis.control is stable.
func (s *Spec) NewDeployer(opts deploy.Options) (*deploy.Deployer, error) {
	if s.HasBaseline() {
		return deploy.New(s.Deploy, opts)
	}
	return deploy.NewTargets(map[providers.Cohort]deploy.Target{providers.Canary: s.Deploy.Canary}, opts)
}

// intervalControl is Interval.Control: "stable" for a stable control, empty for a baseline.
func (s *Spec) intervalControl() string {
	if s.HasBaseline() {
		return ""
	}
	return ControlStable
}

// SplitText renders a split; without a baseline its (zero) share is left out.
func (s *Spec) SplitText(sp providers.Split) string {
	if s.HasBaseline() || sp.Baseline != 0 {
		return sp.String()
	}
	return fmt.Sprintf("stable %s canary %s", providers.Percent(sp.Stable()), providers.Percent(sp.Canary))
}

// deployingText is the reason of the move to Deploying.
func (s *Spec) deployingText() string {
	if s.HasBaseline() {
		return "deploying baseline and canary"
	}
	return "deploying the canary (control: stable, no baseline)"
}

// deployedText is the reason of the move from Deploying to Progressing.
func (s *Spec) deployedText(addrs map[providers.Cohort][]string) string {
	if s.HasBaseline() {
		return fmt.Sprintf("deployed baseline %v and canary %v", addrs[providers.Baseline], addrs[providers.Canary])
	}
	return fmt.Sprintf("deployed canary %v; control: stable (no baseline)", addrs[providers.Canary])
}

// teardownControl tears down the deployed cohorts other than the canary (the baseline, if any) and
// says so for the reason of the transition ("": none).
func (e *Engine) teardownControl(ctx context.Context) string {
	note := ""
	for _, c := range e.deployedCohorts() {
		if c != providers.Canary {
			e.teardown(ctx, c)
			note += fmt.Sprintf("; %s torn down", c)
		}
	}
	return note
}

// deployedCohorts are the cohorts the engine deploys and tears down.
func (e *Engine) deployedCohorts() []providers.Cohort {
	if e.spec.HasBaseline() {
		return []providers.Cohort{providers.Baseline, providers.Canary}
	}
	return []providers.Cohort{providers.Canary}
}

// gatewayCohorts are the cohorts registered at the gateway.
func (e *Engine) gatewayCohorts() []providers.Cohort {
	if e.spec.HasBaseline() {
		return providers.Cohorts
	}
	return []providers.Cohort{providers.Stable, providers.Canary}
}

// ControlReader is implemented by metrics sources that know which cohort they read as the control
// (RequestMetrics, the Prometheus provider); the engine refuses one that disagrees with the spec.
type ControlReader interface {
	Control() providers.Cohort
}

// CohortSeries is implemented by metrics sources that fetch one cohort's series over a window.
// Before/after judging (gateway.kong.mode bluegreen) needs it: the control's window and the
// canary's are different time ranges.
type CohortSeries interface {
	CohortSeries(ctx context.Context, m providers.Metric, c providers.Cohort, w providers.Window) ([]float64, error)
}

// TimeWindow is a judged time range.
type TimeWindow struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// beforeAfter is Kayenta intervals judged before/after: the gateway never serves stable and canary at
// the same time (gateway.kong.mode bluegreen), so every interval of the canary is compared with one
// window of stable observed, all traffic on stable, just before the switch.
type beforeAfter struct {
	*intervals
	// ctrl: the window of stable this process observed before the switch (nil: not yet).
	ctrl *TimeWindow
}

func newBeforeAfter(e *Engine) analysisMode {
	b := &beforeAfter{intervals: &intervals{e: e}}
	b.src = b
	return b
}

func (b *beforeAfter) check(cfg Config) error {
	if _, ok := cfg.Metrics.(CohortSeries); !ok {
		return fmt.Errorf("new engine: %w", errNoCohortSeries)
	}
	return nil
}

// prepare is Progressing of a before/after step until its control window has been observed:
// all traffic on stable (the split is set to zero first, e.g. after a resume found the switch made),
// for one interval. The window is kept in memory and in the state; a resumed run observes a new
// one, since a request log does not survive the process.
func (b *beforeAfter) prepare(ctx context.Context, st State, step StepSpec) (done bool, next Phase, reason string) {
	e := b.e
	now := e.now()
	if b.ctrl == nil {
		if st.Split != (providers.Split{}) {
			if err := e.setSplit(ctx, providers.Split{}); err != nil {
				return false, RollingBack, fmt.Sprintf("step %d: observe stable before the switch: %v", st.Step+1, err)
			}
			now = e.now()
		}
		w := TimeWindow{Start: now, End: now.Add(step.Interval)}
		b.ctrl = &w
		e.mu.Lock()
		e.st.ControlWindow = &w
		e.mu.Unlock()
		e.log.Info("observing stable before the switch (before/after judging)", "from", w.Start, "until", w.End)
		e.wake = w.End
		if err := e.save(); err != nil {
			return false, RollingBack, fmt.Sprintf("step %d: %v", st.Step+1, err)
		}
		return false, Progressing, ""
	}
	if now.Before(b.ctrl.End) {
		e.wake = b.ctrl.End
		return false, Progressing, ""
	}
	return true, "", ""
}

func (b *beforeAfter) begin(now time.Time, st State, step StepSpec) string {
	if b.ctrl == nil {
		return b.intervals.begin(now, st, step)
	}
	return fmt.Sprintf("warm-up %s; judged against stable observed %s..%s before the switch",
		step.Warmup, b.ctrl.Start.Format(time.RFC3339), b.ctrl.End.Format(time.RFC3339))
}

// restart: a restarted before/after step observes stable afresh: an old control window would add
// the pause to the drift between the windows.
func (b *beforeAfter) restart() { b.ctrl = nil }

// lookback: every window of the canary has the length of the control window.
func (b *beforeAfter) lookback(step StepSpec) time.Duration { return step.Interval }

func (b *beforeAfter) controlWindow() *TimeWindow {
	if b.ctrl == nil {
		return nil
	}
	cw := *b.ctrl
	return &cw
}

// pair fetches a metric for a before/after interval: stable over the control window, the canary
// over w.
func (b *beforeAfter) pair(ctx context.Context, def providers.Metric, w providers.Window) (providers.Pair, error) {
	e := b.e
	if b.ctrl == nil {
		return concurrent{e}.pair(ctx, def, w)
	}
	cs, ok := e.cfg.Metrics.(CohortSeries)
	if !ok {
		return providers.Pair{}, errNoCohortSeries
	}
	cw := providers.Window{Start: b.ctrl.Start, End: b.ctrl.End, Step: w.Step}
	var p providers.Pair
	err := e.call(ctx, func(c context.Context) (err error) {
		p.Baseline, err = cs.CohortSeries(c, def, providers.Stable, cw)
		return err
	})
	if err != nil && !errors.Is(err, providers.ErrNoData) {
		return providers.Pair{}, fmt.Errorf("stable before the switch: %w", err)
	}
	err = e.call(ctx, func(c context.Context) (err error) {
		p.Canary, err = cs.CohortSeries(c, def, providers.Canary, w)
		return err
	})
	if err != nil && !errors.Is(err, providers.ErrNoData) {
		return providers.Pair{}, fmt.Errorf("canary: %w", err)
	}
	return p, nil
}

// count summarizes stable over the control window and the canary over w.
func (b *beforeAfter) count(ctx context.Context, iv *Interval, w providers.Window, pairs []MetricPair) {
	e := b.e
	if b.ctrl == nil {
		concurrent{e}.count(ctx, iv, w, pairs)
		return
	}
	cs, ok := e.cfg.Metrics.(CohortSummarizer)
	if !ok {
		countPoints(iv, pairs)
		return
	}
	cw := providers.Window{Start: b.ctrl.Start, End: b.ctrl.End, Step: w.Step}
	var before, after map[providers.Cohort]CohortStats
	err := e.call(ctx, func(c context.Context) (err error) { before, err = cs.Cohorts(c, cw); return err })
	if err == nil {
		err = e.call(ctx, func(c context.Context) (err error) { after, err = cs.Cohorts(c, w); return err })
	}
	var cohorts map[providers.Cohort]CohortStats
	if err == nil {
		cohorts = map[providers.Cohort]CohortStats{providers.Stable: before[providers.Stable], providers.Canary: after[providers.Canary]}
	}
	e.setCohorts(iv, cohorts, err)
}

var errNoCohortSeries = errors.New("before/after judging needs a metrics source that fetches one cohort at a time (builtin, kong-log or prometheus)")
