package sim

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/canaryctl/canaryctl/analysis"
	"github.com/canaryctl/canaryctl/rollout"
)

// Report is the outcome of Run.
type Report struct {
	Rollouts int      `json:"rollouts"`
	Seed     uint64   `json:"seed"`
	Results  []Result `json:"results"`
	// Elapsed is the wall time of the simulation; CPUSeconds the CPU time (user + system) of the
	// process that ran it, when known. Both depend on the machine and its load.
	Elapsed    string  `json:"elapsed"`
	CPUSeconds float64 `json:"cpuSeconds,omitempty"`
}

// Result summarizes one scenario's rollouts.
type Result struct {
	Scenario    string `json:"scenario"`
	Class       string `json:"class,omitempty"`
	Description string `json:"description,omitempty"`
	Expect      string `json:"expect"`
	File        string `json:"file,omitempty"`
	// ScenarioSHA256: the SHA-256 of the scenario file that was run (hex).
	ScenarioSHA256 string  `json:"scenarioSHA256,omitempty"`
	RPS            float64 `json:"rps"`
	// The policy the engine ran: mode, step weights (%), alpha (sequential).
	Mode  string    `json:"mode"`
	Steps []float64 `json:"steps"`
	Alpha float64   `json:"alpha,omitempty"`

	Rollouts   int `json:"rollouts"`
	Promoted   int `json:"promoted"`
	RolledBack int `json:"rolledBack"`
	Paused     int `json:"paused"`
	Undecided  int `json:"undecided"`
	Failed     int `json:"failed"`
	// Rate is the false rollback rate (expect promote) or the detection rate (expect rollback: the
	// rollouts rolled back, within Target.Within of the onset when set), with its 95% Wilson interval
	// and the 95% Clopper-Pearson (exact) interval, whose upper end the targets use.
	Rate            float64 `json:"rate"`
	RateLow         float64 `json:"rateLow"`
	RateHigh        float64 `json:"rateHigh"`
	RateLowerCP     float64 `json:"rateLowerClopperPearson"`
	RateUpperCP     float64 `json:"rateUpperClopperPearson"`
	PausedRate      float64 `json:"pausedRate"`
	PromotedRate    float64 `json:"promotedRate"`
	MedianSeconds   float64 `json:"medianSeconds"` // time to verdict, every rollout
	P90Seconds      float64 `json:"p90Seconds"`
	MedianRollbackS float64 `json:"medianRollbackSeconds,omitempty"` // from the regression's onset, rolled-back rollouts
	P90RollbackS    float64 `json:"p90RollbackSeconds,omitempty"`
	// HalfRolledBackS: the time from the onset by which half of all rollouts were rolled back (the
	// median over every rollout, one not rolled back counting as never; +Inf, and left out of JSON, if never).
	HalfRolledBackS float64 `json:"-"`
	MeanExposed     float64 `json:"meanCanaryRequests"`
	MedianExposed   float64 `json:"medianCanaryRequests"`
	RollbacksBy     []Count `json:"rollbacksBy,omitempty"` // the failed metrics of rollbacks
	PausesBy        []Count `json:"pausesBy,omitempty"`    // pause kinds
	// Examples: the engine's reason for the first rollout of each outcome (what a user would read).
	Examples map[Outcome]string `json:"examples,omitempty"`
	Target   Target             `json:"target"`
	Met      bool               `json:"met"`
	Missed   []string           `json:"missed,omitempty"`
}

// Count is how many rollouts had a label.
type Count struct {
	Label string `json:"label"`
	N     int    `json:"n"`
}

func summarize(sc *Scenario, spec *rollout.Spec, rs []Rollout) Result {
	res := Result{Scenario: sc.Name, Class: sc.Class, Description: sc.Description, Expect: sc.Expect, File: sc.File, ScenarioSHA256: sc.SHA256,
		RPS: sc.Rate.RPS, Mode: spec.Analysis.Mode, Rollouts: len(rs), Target: sc.Target}
	for _, s := range spec.Steps {
		res.Steps = append(res.Steps, s.Weight)
	}
	if spec.Analysis.Mode == rollout.ModeSequential {
		res.Alpha = spec.Analysis.Sequential.Alpha
	}
	var times, rbTimes, exposed []float64
	var sumExp float64
	by, pauses := map[string]int{}, map[string]int{}
	res.Examples = map[Outcome]string{}
	hits := 0
	for _, r := range rs {
		if _, ok := res.Examples[r.Outcome]; !ok {
			res.Examples[r.Outcome] = r.Reason
		}
		switch r.Outcome {
		case Promoted:
			res.Promoted++
		case RolledBack:
			res.RolledBack++
			rbTimes = append(rbTimes, r.SinceOnset)
			for _, w := range r.Why {
				by[w]++
			}
			if sc.Target.Within == 0 || r.SinceOnset >= 0 && r.SinceOnset <= sc.Target.Within.Seconds() {
				hits++
			}
		case Paused:
			res.Paused++
			for _, w := range r.Why {
				pauses[w]++
			}
		case Undecided:
			res.Undecided++
		case Failed:
			res.Failed++
		}
		times = append(times, r.Seconds)
		exposed = append(exposed, float64(r.Exposed))
		sumExp += float64(r.Exposed)
	}
	n := len(rs)
	if sc.Expect == ExpectPromote {
		hits = res.RolledBack
	}
	res.Rate = float64(hits) / float64(n)
	res.RateLow, res.RateHigh = wilson(hits, n)
	res.RateLowerCP, res.RateUpperCP = clopperPearson(hits, n)
	res.PausedRate = float64(res.Paused) / float64(n)
	res.PromotedRate = float64(res.Promoted) / float64(n)
	res.MedianSeconds = analysis.Percentile(times, 50)
	res.P90Seconds = analysis.Percentile(times, 90)
	if len(rbTimes) > 0 {
		res.MedianRollbackS = analysis.Percentile(rbTimes, 50)
		res.P90RollbackS = analysis.Percentile(rbTimes, 90)
	}
	res.MeanExposed = sumExp / float64(n)
	res.MedianExposed = analysis.Percentile(exposed, 50)
	res.HalfRolledBackS = math.Inf(1)
	if k := (n + 1) / 2; len(rbTimes) >= k {
		res.HalfRolledBackS = sortedCopy(rbTimes)[k-1]
	}
	res.RollbacksBy, res.PausesBy = counts(by), counts(pauses)
	res.Missed = res.check()
	res.Met = len(res.Missed) == 0
	return res
}

// check compares the result with its targets and says what was missed.
func (r Result) check() []string {
	t := r.Target
	var missed []string
	if r.Expect == ExpectPromote {
		if r.Rate > t.MaxFalseRollbacks {
			missed = append(missed, fmt.Sprintf("false rollbacks %s > %s", pct(r.Rate), pct(t.MaxFalseRollbacks)))
		}
		if r.RateUpperCP > t.MaxUpperBound {
			missed = append(missed, fmt.Sprintf("upper bound %s > %s", pct(r.RateUpperCP), pct(t.MaxUpperBound)))
		}
		return missed
	}
	if r.Rate < t.MinDetection {
		w := ""
		if t.Within > 0 {
			w = " within " + rollout.FormatDuration(t.Within)
		}
		missed = append(missed, fmt.Sprintf("detection%s %s < %s", w, pct(r.Rate), pct(t.MinDetection)))
	}
	// The median over every rollout, one not rolled back counting as never: half of all rollouts must
	// be rolled back in time.
	switch {
	case t.MedianRollback <= 0:
	case math.IsInf(r.HalfRolledBackS, 1):
		missed = append(missed, fmt.Sprintf("fewer than half rolled back (median time to roll back: never, want < %s)", rollout.FormatDuration(t.MedianRollback)))
	case r.HalfRolledBackS >= t.MedianRollback.Seconds():
		missed = append(missed, fmt.Sprintf("median time to roll back %s ≥ %s", secs(r.HalfRolledBackS), rollout.FormatDuration(t.MedianRollback)))
	}
	return missed
}

func counts(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{Label: k, N: v})
	}
	slices.SortFunc(out, func(a, b Count) int { return cmp.Or(b.N-a.N, strings.Compare(a.Label, b.Label)) })
	return out
}

// wilson is the 95% Wilson score interval of k successes in n trials.
func wilson(k, n int) (lo, hi float64) {
	const z = 1.959963984540054
	p, nf := float64(k)/float64(n), float64(n)
	c := (p + z*z/(2*nf)) / (1 + z*z/nf)
	h := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / (1 + z*z/nf)
	return max(0, c-h), min(1, c+h)
}

// clopperPearson is the two-sided 95% Clopper-Pearson (exact) interval of k successes in n trials:
// the 2.5% quantile of Beta(k, n-k+1) and the 97.5% quantile of Beta(k+1, n-k).
func clopperPearson(k, n int) (lo, hi float64) {
	lo, hi = 0, 1
	if k > 0 {
		lo = distuv.Beta{Alpha: float64(k), Beta: float64(n - k + 1)}.Quantile(0.025)
	}
	if k < n {
		hi = distuv.Beta{Alpha: float64(k + 1), Beta: float64(n - k)}.Quantile(0.975)
	}
	return lo, hi
}

// ReadReport reads a report WriteJSON wrote.
func ReadReport(r io.Reader) (*Report, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var rep Report
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("read simulation report: %w", err)
	}
	if rep.Rollouts <= 0 || len(rep.Results) == 0 {
		return nil, errors.New("read simulation report: no results; give a file written by canaryctl simulate -o json or --results")
	}
	return &rep, nil
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write simulation report: %w", err)
	}
	return nil
}

// TableHeader is the header of the markdown table (the README's decision table).
const TableHeader = "| scenario | traffic | canary | mode | rolled back [95% exact CI] | paused | promoted | time to verdict: median / P90 | rollback after onset: median / P90 | why | target |"

// TableRule is the line under TableHeader.
const TableRule = "|---|---|---|---|---|---|---|---|---|---|---|"

// WriteMarkdown writes one table row per scenario, under a line saying how it was produced.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d rollouts per scenario, seed %d, the real engine on a virtual clock (`canaryctl simulate`).\n\n", r.Rollouts, r.Seed)
	b.WriteString(TableHeader + "\n" + TableRule + "\n")
	for _, res := range r.Results {
		b.WriteString(res.row() + "\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write simulation report: %w", err)
	}
	return nil
}

func (r Result) row() string {
	canary := "good"
	if r.Expect == ExpectRollback {
		canary = "bad"
	}
	mode := r.Mode
	if r.Alpha > 0 {
		mode += fmt.Sprintf(" α=%g", r.Alpha)
	}
	rb := "—"
	if r.RolledBack > 0 {
		rb = secs(r.MedianRollbackS) + " / " + secs(r.P90RollbackS)
	}
	var why []string
	for i, c := range r.RollbacksBy {
		if i == 2 {
			break
		}
		why = append(why, fmt.Sprintf("%s %d", c.Label, c.N))
	}
	for i, c := range r.PausesBy {
		if i == 1 {
			break
		}
		why = append(why, fmt.Sprintf("paused %s %d", c.Label, c.N))
	}
	if r.Undecided > 0 {
		why = append(why, fmt.Sprintf("undecided %d", r.Undecided))
	}
	if r.Failed > 0 {
		why = append(why, fmt.Sprintf("failed %d", r.Failed))
	}
	target := "✅ " + r.targetText()
	if !r.Met {
		target = "❌ " + strings.Join(r.Missed, "; ")
	}
	return fmt.Sprintf("| %s | %s req/s | %s | %s | %s [%s, %s] | %s | %s | %s / %s | %s | %s | %s |",
		r.Scenario, trimFloat(r.RPS), canary, mode, pct(r.Rate), pct(r.RateLowerCP), pct(r.RateUpperCP),
		pct(r.PausedRate), pct(r.PromotedRate), secs(r.MedianSeconds), secs(r.P90Seconds), rb,
		cmp.Or(strings.Join(why, ", "), "—"), target)
}

func (r Result) targetText() string {
	t := r.Target
	if r.Expect == ExpectPromote {
		return fmt.Sprintf("≤ %s (upper ≤ %s)", pct(t.MaxFalseRollbacks), pct(t.MaxUpperBound))
	}
	s := "≥ " + pct(t.MinDetection)
	if t.Within > 0 {
		s += " within " + rollout.FormatDuration(t.Within)
	}
	if t.MedianRollback > 0 {
		s += ", median < " + rollout.FormatDuration(t.MedianRollback)
	}
	return s
}

func pct(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }

func secs(s float64) string {
	switch {
	case s < 0:
		return "before onset"
	case s < 100:
		return fmt.Sprintf("%.1f s", s)
	}
	return fmt.Sprintf("%.0f s", s)
}

func trimFloat(v float64) string { return fmt.Sprintf("%g", v) }

// The README's decision table sits between these markers; ReplaceTable rewrites what is between them.
const (
	TableBegin = "<!-- canaryctl simulate: begin (generated by make sim; do not edit) -->"
	TableEnd   = "<!-- canaryctl simulate: end -->"
)

// ErrNoTableMarkers: the document lacks TableBegin or TableEnd.
var ErrNoTableMarkers = errors.New("no simulation table markers")

// ReplaceTable returns doc with the text between TableBegin and TableEnd replaced by the report's
// markdown.
func (r *Report) ReplaceTable(doc []byte) ([]byte, error) {
	s := string(doc)
	i := strings.Index(s, TableBegin)
	j := strings.Index(s, TableEnd)
	if i < 0 || j < i {
		return nil, fmt.Errorf("replace the decision table: %w: add a line %q and a line %q where it goes", ErrNoTableMarkers, TableBegin, TableEnd)
	}
	var b strings.Builder
	b.WriteString(s[:i+len(TableBegin)])
	b.WriteString("\n")
	if err := r.WriteMarkdown(&b); err != nil {
		return nil, err
	}
	b.WriteString(s[j:])
	return []byte(b.String()), nil
}

// Table returns the text between the markers of doc (for tests of the README).
func Table(doc []byte) (string, error) {
	s := string(doc)
	i := strings.Index(s, TableBegin)
	j := strings.Index(s, TableEnd)
	if i < 0 || j < i {
		return "", fmt.Errorf("read the decision table: %w", ErrNoTableMarkers)
	}
	return s[i+len(TableBegin) : j], nil
}
