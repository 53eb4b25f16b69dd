package rollout

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// analysisMode is how the steps of a rollout are judged. The engine's phase handlers call it and never
// ask which mode runs: Progressing calls prepare before the step's split is set and begin after it,
// Analyzing calls analyze on every tick, and a step that starts over (resume, approval) calls restart.
//
// A mode reaches the engine's state, clock, sources and event log through e (*Engine), and keeps what
// it observed of the current step in memory: a resumed rollout restarts its step.
type analysisMode interface {
	// check refuses an engine configuration the mode cannot run with (a missing data source).
	check(cfg Config) error
	// prepare runs in Progressing before the step's split is set: done false holds the rollout in
	// next (Progressing: tick again at e.wake; RollingBack: give up) with reason.
	prepare(ctx context.Context, st State, step StepSpec) (done bool, next Phase, reason string)
	// begin starts judging a step whose split was set at now; it returns what the move to Analyzing
	// says after "step i/n: split, ".
	begin(now time.Time, st State, step StepSpec) string
	// analyze is one tick of Analyzing: the next phase and the reason of the move (Analyzing and ""
	// to wait for e.wake).
	analyze(ctx context.Context) (Phase, string)
	// restart forgets what the mode observed of the current step.
	restart()
}

// The analysis modes the engine runs, by the name Spec.judging returns. A new mode implements
// analysisMode and adds its constructor here (and its name to Modes if it is chosen by analysis.mode).
var analysisModes = map[string]func(e *Engine) analysisMode{
	ModeKayenta:     func(e *Engine) analysisMode { m := &intervals{e: e}; m.src = concurrent{e}; return m },
	ModeSequential:  func(e *Engine) analysisMode { return &looks{e: e} },
	modeBeforeAfter: newBeforeAfter,
}

// modeBeforeAfter names Kayenta intervals judged against one window of stable observed before the
// switch: the mode of a gateway that never serves stable and canary at once (GatewayCaps.BeforeAfterOnly).
const modeBeforeAfter = "before-after"

// judging names the analysis mode that runs the spec's steps (a key of analysisModes).
func (s *Spec) judging() string {
	if s.Analysis.Mode == ModeKayenta && s.BeforeAfter() {
		return modeBeforeAfter
	}
	return s.Analysis.Mode
}

// newAnalysisMode builds the engine's analysis mode; an unknown mode is an error naming the valid ones.
func newAnalysisMode(e *Engine) (analysisMode, error) {
	build, ok := analysisModes[e.spec.judging()]
	if !ok {
		return nil, fmt.Errorf("unknown analysis.mode %q; use %s", e.spec.Analysis.Mode, strings.Join(Modes, " or "))
	}
	m := build(e)
	return m, m.check(e.cfg)
}

// analysisModeNames lists the registered modes (tests assert every one is reachable from a spec).
func analysisModeNames() []string {
	names := make([]string, 0, len(analysisModes))
	for n := range analysisModes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
