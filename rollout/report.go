package rollout

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
)

// Report is the final report of a rollout (`run -o json`): every interval with every metric's
// classification, numbers and reason, grouped by step.
type Report struct {
	SchemaVersion int        `json:"schemaVersion"`
	Service       string     `json:"service"`
	RunID         string     `json:"runId"`
	Phase         Phase      `json:"phase"`
	Verdict       Verdict    `json:"verdict,omitempty"`
	Score         *Number    `json:"score,omitempty"`
	Reason        string     `json:"reason,omitempty"`
	Interrupted   bool       `json:"interrupted,omitempty"`
	StartedAt     time.Time  `json:"startedAt"`
	FinishedAt    time.Time  `json:"finishedAt,omitzero"`
	Thresholds    Thresholds `json:"thresholds"`
	// Mode is how the steps were judged (analysis.mode): kayenta (interval scores) or sequential
	// (request-level looks; intervals carry a decision and no score).
	Mode string `json:"mode"`
	// Control is what the canary was compared with: baseline or stable (analysis.control); the
	// intervals' baseline values and samples are the control's. ControlNote says why, in a sentence;
	// ControlWindow is the window of stable observed before a before/after switch (bluegreen).
	Control       string       `json:"control"`
	ControlNote   string       `json:"controlNote"`
	ControlWindow *TimeWindow  `json:"controlWindow,omitempty"`
	Steps         []StepReport `json:"steps"`
	// Errors: with phase NotStarted, every problem that kept the rollout from running (one per spec
	// problem, or the deployment, gateway or metrics error).
	Errors []string `json:"errors,omitempty"`
}

// NotStarted is the phase of a report whose rollout could not run: the spec was invalid, or a
// deployment, the gateway or the metrics source failed before any traffic moved to the canary (the
// state machine then ended RolledBack; nothing was judged). It is not a phase of the state machine.
const NotStarted Phase = "NotStarted"

// StepReport is one step of the report.
type StepReport struct {
	Index     int             `json:"index"` // from 0
	Weight    float64         `json:"weightPercent"`
	Split     providers.Split `json:"split"`
	Outcome   string          `json:"outcome"` // passed, failed, marginal, skipped, running, not-reached
	Intervals []Interval      `json:"intervals"`
}

// NewReport builds the report of a rollout from its spec and state.
func NewReport(spec *Spec, st State) Report {
	r := Report{SchemaVersion: StateSchemaVersion, Service: st.Service, RunID: st.RunID, Phase: st.Phase,
		Verdict: st.Verdict, Score: st.Score, Reason: st.Reason, Interrupted: st.Interrupted,
		StartedAt: st.StartedAt, FinishedAt: st.FinishedAt, Thresholds: spec.Analysis.Thresholds,
		Mode: spec.Analysis.Mode, Control: spec.Analysis.Control, ControlNote: spec.ControlNote(), ControlWindow: st.ControlWindow}
	if r.Control == "" {
		r.Control = ControlBaseline
	}
	if st.Phase == RolledBack && st.NotStarted && !st.Interrupted {
		r.Phase = NotStarted
		r.Errors = []string{OneLine(st.Reason)}
	}
	if r.Mode == "" {
		r.Mode = ModeKayenta
	}
	for i, s := range spec.Steps {
		sr := StepReport{Index: i, Weight: s.Weight, Split: spec.SplitFor(i), Intervals: []Interval{}}
		for _, iv := range st.Intervals {
			if iv.Step == i {
				sr.Intervals = append(sr.Intervals, iv)
			}
		}
		sr.Outcome = stepOutcome(st, i, sr.Intervals)
		r.Steps = append(r.Steps, sr)
	}
	return r
}

func stepOutcome(st State, i int, ivs []Interval) string {
	var last *Interval
	if len(ivs) > 0 {
		last = &ivs[len(ivs)-1]
	}
	switch {
	case i < st.Step:
		if last != nil && last.Verdict == VerdictMarginal {
			return "accepted"
		}
		return "passed"
	case i > st.Step:
		if st.Phase == Promoted {
			return "skipped"
		}
		return "not-reached"
	}
	// the current step
	switch {
	case st.Phase == Promoted && last != nil && last.Final && last.Verdict == VerdictPass:
		return "passed"
	case st.Phase == Promoted && last != nil && last.Final && last.Verdict == VerdictMarginal:
		return "accepted"
	case st.Phase == Promoted:
		return "skipped"
	case last != nil && last.Verdict == VerdictFail:
		return "failed"
	case last != nil && last.Final && last.Verdict == VerdictMarginal:
		return "marginal"
	case st.Phase == RolledBack || st.Phase == Failed:
		if last == nil {
			return "not-reached"
		}
		return "aborted"
	}
	return "running"
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// JUnit XML, the subset CI servers read.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Name    string       `xml:"name,attr"`
	Tests   int          `xml:"tests,attr"`
	Fail    int          `xml:"failures,attr"`
	Errors  int          `xml:"errors,attr"`
	Time    string       `xml:"time,attr"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Fail      int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr,omitempty"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the report as JUnit XML: one test suite per step, one test case per interval
// (a failure for a failed interval, an error for an interval whose metrics could not be judged), and
// one test case for the rollout's outcome.
func (r Report) WriteJUnit(w io.Writer) error {
	top := junitSuites{Name: "canaryctl " + r.Service}
	total := 0.0
	for _, s := range r.Steps {
		suite := junitSuite{Name: fmt.Sprintf("%s step %d (%s)", r.Service, s.Index+1, providers.PercentText(s.Weight))}
		dur := 0.0
		for i, iv := range s.Intervals {
			// A case lasts from the previous judgement of the step (the first: from its window's start).
			from := iv.Start
			if i > 0 {
				from = s.Intervals[i-1].At
			}
			d := iv.At.Sub(from).Seconds()
			dur += math.Max(d, 0)
			c := junitCase{Name: fmt.Sprintf("interval %d", iv.Index), Classname: suite.Name, Time: secs(d),
				SystemOut: fmt.Sprintf("split %s; samples %s %d canary %d; score %s; verdict %s",
					iv.Split, r.Control, iv.Baseline, iv.Canary, fmtScore(float64(iv.Score)), iv.Verdict)}
			if iv.Reason != "" { // analysis.mode sequential: the look's sentence instead of a score
				c.SystemOut = fmt.Sprintf("split %s; requests %s %d canary %d; verdict %s; %s", iv.Split, r.Control, iv.Baseline, iv.Canary, iv.Verdict, iv.Reason)
			}
			switch {
			case iv.Verdict == VerdictFail && iv.Sequential != nil:
				c.Failure = &junitMessage{Message: iv.Reason, Type: "fail", Text: decisionReasons(*iv.Sequential, sequential.Fail)}
				suite.Fail++
			case iv.Verdict == VerdictNeedMoreData && iv.Final && iv.Sequential != nil && iv.Sequential.Verdict == sequential.NeedMoreData &&
				i == len(s.Intervals)-1 && s.Outcome != "passed" && s.Outcome != "accepted":
				c.Failure = &junitMessage{Message: iv.Reason, Type: "need-more-data", Text: iv.Reason}
				suite.Fail++
			case iv.Verdict == VerdictFail:
				c.Failure = &junitMessage{Message: fmt.Sprintf("score %s <= marginal %s", fmtScore(float64(iv.Score)), fmtScore(r.Thresholds.Marginal)),
					Type: "fail", Text: failReasons(iv.Metrics)}
				suite.Fail++
			case iv.Verdict == VerdictMarginal:
				if iv.Final {
					c.Failure = &junitMessage{Message: fmt.Sprintf("final score %s below pass %s", fmtScore(float64(iv.Score)), fmtScore(r.Thresholds.Pass)),
						Type: "marginal", Text: failReasons(iv.Metrics)}
					suite.Fail++
				}
			case iv.Verdict == VerdictError:
				c.Error = &junitMessage{Message: iv.Error, Type: "error"}
				suite.Errors++
			}
			suite.Cases = append(suite.Cases, c)
		}
		if len(s.Intervals) == 0 {
			suite.Cases = append(suite.Cases, junitCase{Name: "step", Classname: suite.Name, Time: "0",
				Skipped: &junitMessage{Message: s.Outcome}})
			suite.Skipped++
		}
		suite.Tests = len(suite.Cases)
		suite.Time = secs(dur)
		total += dur
		top.Tests += suite.Tests
		top.Fail += suite.Fail
		top.Errors += suite.Errors
		top.Suites = append(top.Suites, suite)
	}
	if rs, ok := r.routeSuite(); ok { // analysis.routes: a testcase per route
		top.Tests += rs.Tests
		top.Fail += rs.Fail
		top.Suites = append(top.Suites, rs)
	}
	outcome := junitCase{Name: "rollout", Classname: "canaryctl " + r.Service, Time: "0",
		SystemOut: fmt.Sprintf("phase %s; verdict %s; %s", r.Phase, r.Verdict, r.Reason)}
	if r.Phase != Promoted {
		outcome.Failure = &junitMessage{Message: fmt.Sprintf("rollout ended %s", r.Phase), Type: string(r.Phase), Text: r.Reason}
		if r.Phase == NotStarted {
			outcome.Failure.Message = "rollout could not run: " + r.Reason
			outcome.Failure.Text = strings.Join(r.Errors, "\n")
		}
	}
	top.Suites = append(top.Suites, junitSuite{Name: "canaryctl " + r.Service, Tests: 1, Fail: b2i(outcome.Failure != nil),
		Time: "0", Cases: []junitCase{outcome}})
	top.Tests++
	top.Fail += b2i(outcome.Failure != nil)
	top.Time = secs(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(top); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func secs(d float64) string { return fmt.Sprintf("%.3f", math.Max(d, 0)) }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// SpinnakerPrefix starts the one line that Spinnaker's Run Job stage reads from a job's output.
const SpinnakerPrefix = "SPINNAKER_CONFIG_JSON="

// Spinnaker is the JSON object of the Spinnaker line.
type Spinnaker struct {
	Service     string          `json:"service"`
	RunID       string          `json:"runId"`
	Phase       Phase           `json:"phase"`
	Promoted    bool            `json:"promoted"`
	Mode        string          `json:"mode,omitempty"`    // kayenta or sequential (no scores then)
	Control     string          `json:"control,omitempty"` // baseline or stable: what the canary was compared with
	Verdict     Verdict         `json:"verdict,omitempty"`
	Score       *Number         `json:"score,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	Interrupted bool            `json:"interrupted,omitempty"`
	Steps       []SpinnakerStep `json:"steps"`
	Errors      []string        `json:"errors,omitempty"` // phase NotStarted: what kept the rollout from running
}

// SpinnakerStep summarizes one step.
type SpinnakerStep struct {
	Weight    float64 `json:"weightPercent"`
	Outcome   string  `json:"outcome"`
	Intervals int     `json:"intervals"`
	Score     *Number `json:"score,omitempty"` // of the last interval with a score (none in sequential mode)
}

// scoreOf is n, or nil when n is not a number (a sequential look, an unjudged interval): Spinnaker
// expressions compare scores with numbers, and null is not one.
func scoreOf(n *Number) *Number {
	if n == nil || math.IsNaN(float64(*n)) || math.IsInf(float64(*n), 0) {
		return nil
	}
	return n
}

// SpinnakerLine renders the report as exactly one line "SPINNAKER_CONFIG_JSON={...}" with a newline.
func (r Report) SpinnakerLine() string {
	s := Spinnaker{Service: r.Service, RunID: r.RunID, Phase: r.Phase, Promoted: r.Phase == Promoted,
		Mode: r.Mode, Control: r.Control, Verdict: r.Verdict, Score: scoreOf(r.Score), Reason: OneLine(r.Reason), Interrupted: r.Interrupted, Steps: []SpinnakerStep{}, Errors: r.Errors}
	for _, st := range r.Steps {
		ss := SpinnakerStep{Weight: st.Weight, Outcome: st.Outcome, Intervals: len(st.Intervals)}
		for _, iv := range st.Intervals {
			if n := iv.Score; iv.Verdict != VerdictError && scoreOf(&n) != nil {
				ss.Score = &n
			}
		}
		s.Steps = append(s.Steps, ss)
	}
	// The encoder never emits a raw newline inside the value (strings are escaped).
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return SpinnakerPrefix + fmt.Sprintf(`{"phase":%q,"error":%q}`, r.Phase, err.Error()) + "\n"
	}
	return SpinnakerPrefix + strings.TrimRight(buf.String(), "\n") + "\n"
}

// SpinnakerNotStarted is the Spinnaker line of a run that failed before its rollout started (invalid
// spec, a rollout of the service already running, ...): phase "NotStarted" and the error as reason.
func SpinnakerNotStarted(service string, err error) string {
	return NotStartedReport(service, time.Time{}, err).SpinnakerLine()
}

// NotStartedReport is the report of a run that failed before its rollout started (an invalid spec,
// an unreachable gateway or metrics source, a rollout of the service already running, ...): phase
// NotStarted, no steps, and every problem of err in Errors (one per spec problem), so that the JSON
// report, the JUnit file and the Spinnaker line exist whatever happened.
func NotStartedReport(service string, at time.Time, err error) Report {
	r := Report{SchemaVersion: StateSchemaVersion, Service: service, Phase: NotStarted, StartedAt: at, FinishedAt: at,
		Steps: []StepReport{}}
	if err == nil {
		return r
	}
	r.Reason = OneLine(err.Error())
	var errs SpecErrors
	if errors.As(err, &errs) {
		for _, e := range errs {
			r.Errors = append(r.Errors, OneLine(e.Error()))
		}
		r.Reason = "invalid spec: " + strings.Join(r.Errors, "; ")
		return r
	}
	r.Errors = []string{r.Reason}
	return r
}
