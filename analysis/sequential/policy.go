package sequential

import "time"

// The engine policy around an Analyzer, used by the rollout engine (rollout, analysis.mode
// sequential), which its simulator (rollout/sim) runs as it is. The statistics do not depend on
// them; they decide when an engine looks and how long it lets a step bake.
const (
	// DefaultLookInterval: how often the engine fetches new requests and looks.
	DefaultLookInterval = 250 * time.Millisecond
	// DefaultMinBake: a Pass advances a step only once the step has baked this long (or its whole
	// duration, if shorter).
	DefaultMinBake = time.Minute
	// DefaultMaxBake: an undecided step is extended up to this long; then the rollout pauses.
	DefaultMaxBake = 15 * time.Minute
	// DefaultExpandFactor: an undecided step that has baked its duration moves on to a larger,
	// non-final step when SafeToExpand(DefaultExpandFactor) holds.
	DefaultExpandFactor = 5.0
	// ExpandCheckEvery: how often, after the step's duration, SafeToExpand is asked.
	ExpandCheckEvery = 10 * time.Second
)

// DefaultStepWeights returns the engine's default steps, in percent of traffic sent to the canary
// (rollout.DefaultStepWeights is this list). Every step is judged; a step above 50% is judged as 50%
// canary against 50% baseline (JudgedShare), so the simulator's default schedule judges 2.5, 10 and 50.
func DefaultStepWeights() []float64 { return []float64{2.5, 10, 100} }

// JudgedShare is the canary's share of traffic, in percent, while a step of weight w is judged: the
// baseline gets the same share, so it is w up to 50 and 50 above.
func JudgedShare(w float64) float64 { return min(w, 50) }
