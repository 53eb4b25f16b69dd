package rollout

import (
	"fmt"
	"slices"
)

// Phase is where a rollout stands. The engine runs one handler per phase; a handler returns the next
// phase (or the same one to wait), and every change goes through the transition table below.
type Phase string

// The phases of a rollout.
const (
	Pending     Phase = "Pending"     // spec accepted, nothing deployed yet
	Deploying   Phase = "Deploying"   // starting baseline and canary, registering them at the gateway
	Progressing Phase = "Progressing" // setting the split of the current step, then warming up
	Analyzing   Phase = "Analyzing"   // judging canary against baseline every interval of the step
	Paused      Phase = "Paused"      // split held; waiting for resume, promote or abort
	Promoting   Phase = "Promoting"   // canary becomes stable at the gateway; baseline and old stable go
	Promoted    Phase = "Promoted"    // terminal: the canary is the new stable
	RollingBack Phase = "RollingBack" // canary and baseline targets deleted, deployments torn down
	RolledBack  Phase = "RolledBack"  // terminal: all traffic on stable
	Failed      Phase = "Failed"      // terminal: the rollback could not be confirmed; a human must look
)

// Phases lists every phase in lifecycle order.
var Phases = []Phase{Pending, Deploying, Progressing, Analyzing, Paused, Promoting, Promoted, RollingBack, RolledBack, Failed}

// transitions is the table of legal phase changes. A handler staying in its phase is not a transition.
var transitions = map[Phase][]Phase{
	Pending:     {Deploying, RollingBack},
	Deploying:   {Progressing, RollingBack},
	Progressing: {Analyzing, Paused, Promoting, RollingBack},
	Analyzing:   {Progressing, Paused, Promoting, RollingBack},
	Paused:      {Progressing, Promoting, RollingBack},
	Promoting:   {Promoted, RollingBack},
	RollingBack: {RolledBack, Failed},
	Promoted:    nil,
	RolledBack:  nil,
	Failed:      nil,
}

// Transitions returns the phases that may follow p.
func Transitions(p Phase) []Phase { return slices.Clone(transitions[p]) }

// CanTransition reports whether the table allows from → to.
func CanTransition(from, to Phase) bool { return slices.Contains(transitions[from], to) }

// Terminal reports whether p ends the rollout.
func (p Phase) Terminal() bool { return p == Promoted || p == RolledBack || p == Failed }

// Valid reports whether p is a known phase.
func (p Phase) Valid() bool { _, ok := transitions[p]; return ok }

// TransitionError is an illegal phase change: a bug in a handler, never the user's input.
type TransitionError struct{ From, To Phase }

func (e *TransitionError) Error() string {
	return fmt.Sprintf("illegal transition %s -> %s", e.From, e.To)
}
