package rollout

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
)

// StateSchemaVersion is the version of state.json, events.jsonl and the JSON report. A reader must
// refuse a version it does not know; fields are only ever added within a version. Version 2 put the
// units into the names of numbers (a split in percent: canaryPercent; weightsPercent,
// errorRatePercent); version 1 is still read (legacy.go), so a rollout started before resumes.
const StateSchemaVersion = 2

// previousSchemaVersion is the version before the units were in the names; DecodeState reads it.
const previousSchemaVersion = 1

// Verdict is the outcome of one judgement: pass, marginal or fail (see Thresholds).
type Verdict string

// The verdicts. VerdictError marks an interval whose metrics or judgement failed.
const (
	VerdictPass     Verdict = "pass"
	VerdictMarginal Verdict = "marginal"
	VerdictFail     Verdict = "fail"
	VerdictError    Verdict = "error"
)

// VerdictFor classifies a score with the thresholds: <= marginal fails, >= pass passes.
func VerdictFor(score float64, th Thresholds) Verdict {
	switch {
	case math.IsNaN(score) || score <= th.Marginal:
		return VerdictFail
	case score >= th.Pass:
		return VerdictPass
	default:
		return VerdictMarginal
	}
}

// Number is a float64 that encodes NaN and ±Inf as JSON null.
type Number float64

// MarshalJSON writes null for values JSON cannot hold.
func (n Number) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

// UnmarshalJSON reads null as NaN.
func (n *Number) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Number(math.NaN())
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*n = Number(f)
	return nil
}

// State is everything needed to continue a rollout after a crash; it is state.json.
type State struct {
	SchemaVersion int    `json:"schemaVersion"`
	Service       string `json:"service"`
	RunID         string `json:"runId"`
	Phase         Phase  `json:"phase"`
	// Step is the index (from 0) of the current step; Steps is their number, Weights their weights (%).
	Step    int       `json:"step"`
	Steps   int       `json:"steps"`
	Weights []float64 `json:"weightsPercent"`
	// Control: what the canary is compared with, "baseline" or "stable" (analysis.control; empty in
	// states written before the field existed: baseline). Interval.Baseline, Cohorts and the
	// metrics' baseline values hold the control's data.
	Control string `json:"control,omitempty"`
	// ControlWindow: before/after judging (gateway.kong.mode bluegreen): when stable was observed
	// before the switch; every interval of the canary is compared with it.
	ControlWindow *TimeWindow `json:"controlWindow,omitempty"`
	// StepStartedAt: when the current step's split was set; zero before.
	StepStartedAt time.Time `json:"stepStartedAt,omitzero"`
	// NextAnalysisAt: when the next judgement of the step is due.
	NextAnalysisAt time.Time `json:"nextAnalysisAt,omitzero"`
	// Split: the split last confirmed at the gateway.
	Split providers.Split `json:"split"`
	// Intent: the gateway change under way (recorded before the call, cleared after it).
	Intent *Intent `json:"intent,omitempty"`
	// Addresses of the deployed cohorts (for teardown and resume).
	Addresses map[providers.Cohort][]string `json:"addresses,omitempty"`
	// Gateway: what the gateway looked like before the rollout, recorded before Deploying changed
	// anything (GatewayRecorder; the Kong adapter's Original); a rollback, an abort and a resumed
	// run restore exactly that.
	Gateway json.RawMessage `json:"gateway,omitempty"`
	// Approved: steps whose manual approval was given.
	Approved []int      `json:"approved,omitempty"`
	Pause    *PauseInfo `json:"pause,omitempty"`
	// ConsecutiveErrors: failed metric fetches or judgements in a row.
	ConsecutiveErrors int `json:"consecutiveErrors"`
	// Attempts: failed gateway attempts of the current phase (rollback, promote).
	Attempts int `json:"attempts,omitempty"`
	// PromoteAttempted: a Promote call was made; a rollback after it keeps the canary deployment.
	PromoteAttempted bool `json:"promoteAttempted,omitempty"`
	// Score and Verdict of the last judgement.
	Score   *Number `json:"score,omitempty"`
	Verdict Verdict `json:"verdict,omitempty"`
	// Reason: why the rollout is where it is (set on pause, rollback, promotion, failure).
	Reason string `json:"reason,omitempty"`
	// Interrupted: a SIGINT/SIGTERM/SIGHUP started the rollback or pause.
	Interrupted bool       `json:"interrupted,omitempty"`
	Intervals   []Interval `json:"intervals"`
	StartedAt   time.Time  `json:"startedAt"`
	UpdatedAt   time.Time  `json:"updatedAt"`
	FinishedAt  time.Time  `json:"finishedAt,omitzero"`
	// PID of the process that last wrote the state.
	PID int `json:"pid"`
	// NotStarted: the rollout could not run (a deployment, the gateway or the metrics source failed)
	// and rolled back before any traffic moved to the canary.
	NotStarted bool `json:"notStarted,omitempty"`
}

// Intent is a gateway change recorded before it is made, so that a resumed run knows what may have
// happened.
type Intent struct {
	Op     string           `json:"op"` // set-split, set-upstreams, promote, rollback
	Split  *providers.Split `json:"split,omitempty"`
	Cohort providers.Cohort `json:"cohort,omitempty"`
	Addrs  []string         `json:"addrs,omitempty"`
	At     time.Time        `json:"at"`
}

// Pause kinds.
const (
	PauseUser      = "user"      // canaryctl pause
	PauseApproval  = "approval"  // a step with approval: true waits to start
	PauseMarginal  = "marginal"  // a step ended marginal and onMarginal is pause
	PauseInterrupt = "interrupt" // SIGINT/SIGTERM/SIGHUP with --on-interrupt pause
)

// PauseInfo says why and since when a rollout is paused.
type PauseInfo struct {
	Kind   string    `json:"kind"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// Interval is one judgement of a step.
type Interval struct {
	Step     int             `json:"step"`  // index from 0
	Index    int             `json:"index"` // from 1 within the step
	At       time.Time       `json:"at"`
	Start    time.Time       `json:"start"`
	End      time.Time       `json:"end"`
	Split    providers.Split `json:"split"`
	Baseline int             `json:"baselineSamples"`
	Canary   int             `json:"canarySamples"`
	Score    Number          `json:"score"`
	Verdict  Verdict         `json:"verdict"`
	Final    bool            `json:"final,omitempty"`
	Metrics  []MetricResult  `json:"metrics,omitempty"`
	Error    string          `json:"error,omitempty"`
	// Reason is the sentence of a sequential look (analysis.mode sequential); Sequential its full
	// explanation: per test what was compared, the requests, the effect, the interval, the tolerance
	// and margin, the e-values and the requests still needed.
	Reason     string             `json:"reason,omitempty"`
	Sequential *sequential.Report `json:"sequential,omitempty"`
	// Routes: each route's verdict (analysis.routes, mode sequential), the worst first.
	Routes []RouteResult `json:"routes,omitempty"`
	// Cohorts: baseline's and canary's requests in the window (count, P50, P99, 5xx rate), for
	// request-based metrics sources; in mode sequential, the requests of the step's looks so far.
	Cohorts map[providers.Cohort]CohortStats `json:"cohorts,omitempty"`
	// ControlWindow: before/after judging: the window of stable the canary's window [Start, End)
	// was compared with.
	ControlWindow *TimeWindow `json:"controlWindow,omitempty"`
	// Control is "stable" when stable, not a baseline, was the control (analysis.control stable):
	// Baseline (baselineSamples), the metrics' baseline values and Cohorts then hold stable's data.
	// Absent for a baseline control.
	Control string `json:"control,omitempty"`
	// Ingest: what the request log (kong-log) dropped, rejected or left out in the window. An
	// interval whose entries were dropped is not judged (need-more-data).
	Ingest *providers.Ingest `json:"ingest,omitempty"`
}

// MetricResult is one metric's classification in one judgement, with its numbers and the reason.
type MetricResult struct {
	Name           string `json:"name"`
	Group          string `json:"group,omitempty"`
	Classification string `json:"classification"` // Kayenta's: Pass, High, Low, Nodata, NodataFailMetric, Error
	Critical       bool   `json:"critical,omitempty"`
	Reason         string `json:"reason,omitempty"`
	// Numbers: means of the two series after preprocessing and counts of their points, the ratio of
	// the means canary/baseline.
	BaselineMean  Number `json:"baselineMean"`
	CanaryMean    Number `json:"canaryMean"`
	BaselineCount int    `json:"baselineCount"`
	CanaryCount   int    `json:"canaryCount"`
	Ratio         Number `json:"ratio"`
	// Unit of the means: "ms" (latency), "%" (error rate), "" for a query (what it returns).
	Unit string `json:"unit,omitempty"`
	// Confidence interval of the shift (canary − baseline), when computed, in EffectUnit: Mann-Whitney's
	// in the metric's unit (mode kayenta); percentage points "pp" or a rate ratio "ratio" (the 5xx
	// guard) in mode sequential.
	CILower    *Number `json:"ciLower,omitempty"`
	CIUpper    *Number `json:"ciUpper,omitempty"`
	Estimate   *Number `json:"estimate,omitempty"`
	EffectUnit string  `json:"effectUnit,omitempty"`
}

// Event is one line of events.jsonl.
type Event struct {
	V       int             `json:"v"`
	Time    time.Time       `json:"time"`
	Service string          `json:"service"`
	RunID   string          `json:"runId"`
	Type    string          `json:"type"`
	Phase   Phase           `json:"phase"`
	From    Phase           `json:"from,omitempty"`
	Step    int             `json:"step"`
	Split   providers.Split `json:"split"`
	Reason  string          `json:"reason,omitempty"`
	// Set for their event types only.
	Interval *Interval        `json:"interval,omitempty"`
	Control  *ControlRequest  `json:"control,omitempty"`
	Intent   *Intent          `json:"intent,omitempty"`
	Observed *providers.Split `json:"observed,omitempty"`
}

// Event types.
const (
	EvStarted    = "started"    // a new rollout began
	EvResumed    = "resumed"    // a run continued a recorded rollout; Observed is the gateway's split
	EvTransition = "transition" // From -> Phase
	EvInterval   = "interval"   // a judgement; Interval holds it
	EvIntent     = "intent"     // a gateway change is about to be made
	EvControl    = "control"    // a control request was applied (or rejected: Reason)
	EvError      = "error"      // a failed call that the engine will retry or count
	EvNotify     = "notify"     // a webhook failed (Reason)
)

// Action is a control request's verb.
type Action string

// The control actions.
const (
	ActionPause   Action = "pause"
	ActionResume  Action = "resume"
	ActionPromote Action = "promote"
	ActionAbort   Action = "abort"
)

// Valid reports whether a is a known action.
func (a Action) Valid() bool {
	return a == ActionPause || a == ActionResume || a == ActionPromote || a == ActionAbort
}

// ControlRequest asks the running rollout to pause, resume, promote or abort.
type ControlRequest struct {
	ID     string    `json:"id"`
	Action Action    `json:"action"`
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"` // who asked (user@host, CI job)
	Reason string    `json:"reason,omitempty"`
}
