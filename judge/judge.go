// Package judge is a faithful port of Kayenta's NetflixACAJudge (spinnaker/kayenta at a69573be): it
// classifies every metric set pair with the Mann-Whitney classifier (tolerance 0.25, confidence 0.98),
// scores the results with the weighted-sum scorer and returns Kayenta's CanaryJudgeResult. The package
// is pure: no I/O, no logging; the only randomness (Kayenta's noise for two constant samples) comes
// from an injectable source (WithNoise).
//
// Valid input gives Kayenta's results. Where it deliberately differs, it refuses input that Kayenta
// would crash on or silently misread, with a *ConfigError naming the JSON path, the value and what is
// allowed (exit code 2 on the command line):
//
//   - analysisConfigurations.canary and its "outliers" and "effectSize": a string, number or null where
//     a boolean belongs; a direction, nanStrategy, outliers.strategy or effectSize.measure outside the
//     allowed (case-sensitive) values; a list or null instead of an object; an integer literal beyond
//     32 bits (Kayenta's ClassCastException on a Long; 3000000000.0 is accepted); a non-finite number;
//     an unknown key (a typo Kayenta ignores, falling back to a default); outlierFactor <= 0 (also when
//     the strategy is "none", where Kayenta would not notice).
//   - The config: no metrics, a metric without a name, two metrics with the same name (Kayenta uses the
//     first), a judge.name other than NetflixACAJudge-v1.0, a query that is not an object, non-string
//     groups or templates, non-number group weights or score thresholds (Jackson would coerce a "50"
//     string; we want a number).
//   - Metric set pairs: a null data point (Kayenta's NullPointerException), any string other than "NaN",
//     "Infinity", "-Infinity", numbers beyond the float64 range, missing "control"/"experiment", and a
//     pair whose name has no metric config (ErrUnknownMetric; Kayenta fails the whole judgement too).
//   - Thresholds outside 0..100 or marginal above pass.
//
// Everything else Kayenta defines but the judge does not read (id, applications, createdTimestamp,
// configVersion, scopeName, query, templates, judge.judgeConfigurations, other judges' entries under
// analysisConfigurations, pair scopes and attributes, ...) is accepted; unknown keys outside
// analysisConfigurations.canary are ignored like Kayenta does. classifier.scoreThresholds is parsed but,
// as in Kayenta, the thresholds of the judge request are used.
package judge

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/canaryctl/canaryctl/analysis"
)

// Result is Kayenta's CanaryJudgeResult. Its JSON uses Kayenta's field names; NaN is "NaN", a null
// classificationReason or resultMetadata is omitted.
type Result struct {
	JudgeName   string         `json:"judgeName"`
	Score       Score          `json:"score"`
	GroupScores []GroupScore   `json:"groupScores"`
	Results     []MetricResult `json:"results"`
}

// Score is the summary score and its verdict.
type Score struct {
	Score                Float   `json:"score"`
	Classification       Verdict `json:"classification"`
	ClassificationReason string  `json:"classificationReason"` // "" if none
}

// MetricResult is Kayenta's CanaryAnalysisResult for one metric set pair.
type MetricResult struct {
	Name                 string            `json:"name"`
	ID                   string            `json:"id,omitempty"`
	Tags                 map[string]string `json:"tags"`
	Classification       Classification    `json:"classification"`
	ClassificationReason string            `json:"classificationReason,omitempty"`
	Groups               []string          `json:"groups"`
	Critical             bool              `json:"critical"`
	Muted                bool              `json:"muted"`
	ExperimentMetadata   Metadata          `json:"experimentMetadata"`
	ControlMetadata      Metadata          `json:"controlMetadata"`
	ResultMetadata       *ResultMetadata   `json:"resultMetadata,omitempty"` // nil for Error

	// Why explains the classification (interval, estimate, bound, effect); not part of Kayenta's JSON.
	Why Explanation `json:"-"`
}

// Metadata wraps the statistics of one preprocessed series.
type Metadata struct {
	Stats Stats `json:"stats"`
}

// Stats are Kayenta's metadata statistics of a preprocessed series (all 0 when empty).
type Stats struct {
	Count int   `json:"count"`
	Mean  Float `json:"mean"`
	Min   Float `json:"min"`
	Std   Float `json:"std"`
	Max   Float `json:"max"`
}

// ResultMetadata holds the reported mean ratio canary/baseline (NaN if a mean is 0).
type ResultMetadata struct {
	Ratio Float `json:"ratio"`
}

// Option configures Judge.
type Option func(*options)

type options struct {
	noise     NormalSource
	confLevel float64
}

// WithNoise sets the source of the Gaussian noise Kayenta adds when both samples of a metric are
// constant (tests pass a seeded *rand.Rand). The default is math/rand/v2's auto-seeded global source,
// which, like Kayenta's unseeded scala.util.Random, makes that case non-deterministic.
func WithNoise(src NormalSource) Option { return func(o *options) { o.noise = src } }

// WithConfLevel sets the confidence level of every metric's Mann-Whitney interval instead of
// ConfLevel (0.98), e.g. 1-(1-ConfLevel)/M to judge M routes at the false-alarm rate of one
// (canaryctl analyze --route-label, a Bonferroni split). A level outside (0, 1) is ignored.
func WithConfLevel(c float64) Option {
	return func(o *options) {
		if c > 0 && c < 1 {
			o.confLevel = c
		}
	}
}

type globalNormal struct{}

func (globalNormal) NormFloat64() float64 { return rand.NormFloat64() }

// Judge runs Kayenta's NetflixACAJudge: every pair (in order) is classified against the metric config
// of the same name, then scored with cfg's group weights and classified with th. A pair without a
// metric config (ErrUnknownMetric) or invalid thresholds give a *ConfigError; nothing is judged then.
func Judge(cfg *CanaryConfig, th Thresholds, pairs []MetricSetPair, opts ...Option) (*Result, error) {
	o := options{noise: globalNormal{}, confLevel: ConfLevel}
	for _, opt := range opts {
		opt(&o)
	}
	if cfg == nil {
		return nil, &ConfigError{Source: SourceConfig, Problem: "no canary config given"}
	}
	if err := th.Validate(); err != nil {
		return nil, err
	}
	// Resolve every pair's metric first: Kayenta fails the whole judgement on a missing one.
	metrics := make([]*MetricConfig, len(pairs))
	for i, p := range pairs {
		m, ok := cfg.Metric(p.Name)
		if !ok {
			return nil, &ConfigError{Source: SourcePairs, Path: pathKey(pathIndex("", i), "name"), Err: ErrUnknownMetric,
				Problem: fmt.Sprintf("%s has no metric of that name in the canary config (metrics: %s)", quote(p.Name), metricNames(cfg))}
		}
		metrics[i] = m
	}
	res := &Result{JudgeName: JudgeName, Results: make([]MetricResult, 0, len(pairs))}
	inputs := make([]scoreInput, 0, len(pairs))
	for i, p := range pairs {
		mr, err := judgeMetric(metrics[i], p, o.noise, o.confLevel)
		if err != nil {
			return nil, err
		}
		res.Results = append(res.Results, mr)
		in := scoreInput{classification: mr.Classification, groups: mr.Groups, critical: mr.Critical, muted: mr.Muted}
		if mr.ClassificationReason != "" {
			in.reason = &mr.ClassificationReason
		}
		inputs = append(inputs, in)
	}
	sr := weightedSum(cfg.Classifier.GroupWeights, inputs)
	res.GroupScores = sr.groups
	res.Score = Score{Score: Float(sr.summary), Classification: th.Classify(sr.summary)}
	if sr.reason != nil {
		res.Score.ClassificationReason = *sr.reason
	}
	return res, nil
}

// judgeMetric is NetflixACAJudge.classifyMetric: preprocessing, statistics, classification. Errors of
// the comparison become an Error classification; preprocessing errors fail the judgement.
func judgeMetric(m *MetricConfig, p MetricSetPair, noise NormalSource, confLevel float64) (MetricResult, error) {
	a := m.Analysis
	experiment, err := preprocess(p.Experiment, a)
	if err != nil {
		return MetricResult{}, fmt.Errorf("judge metric %q: canary: %w", p.Name, err)
	}
	control, err := preprocess(p.Control, a)
	if err != nil {
		return MetricResult{}, fmt.Errorf("judge metric %q: baseline: %w", p.Name, err)
	}
	tags := p.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	groups := m.Groups
	if groups == nil {
		groups = []string{}
	}
	mr := MetricResult{
		Name: p.Name, ID: p.ID, Tags: tags, Groups: groups, Muted: a.Muted,
		ExperimentMetadata: Metadata{Stats: stats(experiment)},
		ControlMetadata:    Metadata{Stats: stats(control)},
	}
	params := classifierParams{name: p.Name, tolerance: Tolerance, confLevel: confLevel, analysis: a,
		canaryLabel: "Canary", baselineLabel: "Baseline"}
	c, err := classify(params, experiment, control, noise)
	if err != nil {
		c = errClassification(c.why, err)
		mr.Classification, mr.ClassificationReason, mr.Why = c.label, *c.reason, c.why
		return mr, nil
	}
	mr.Classification, mr.Critical, mr.Why = c.label, c.critical, c.why
	if c.reason != nil {
		mr.ClassificationReason = *c.reason
	}
	mr.ResultMetadata = &ResultMetadata{Ratio: Float(c.deviation)}
	return mr, nil
}

// preprocess removes or replaces NaN, then removes outliers if configured (ALGORITHM §3).
func preprocess(v []float64, a MetricAnalysis) ([]float64, error) {
	if a.NaNStrategy == NaNReplace {
		v = analysis.ReplaceNaN(v, 0)
	} else {
		v = analysis.RemoveNaN(v)
	}
	if a.Outliers == OutliersRemove {
		return analysis.RemoveOutliersIQR(v, a.OutlierFactor)
	}
	return v, nil
}

func stats(v []float64) Stats {
	s := analysis.Summarize(v)
	return Stats{Count: s.Count, Mean: Float(s.Mean), Min: Float(s.Min), Std: Float(s.Std), Max: Float(s.Max)}
}

func metricNames(cfg *CanaryConfig) string {
	const max = 10
	var q []string
	for i, m := range cfg.Metrics {
		if i == max {
			q = append(q, fmt.Sprintf("and %d more", len(cfg.Metrics)-max))
			break
		}
		q = append(q, quote(m.Name))
	}
	return strings.Join(q, ", ")
}

// Ratio returns the result's mean ratio, NaN when there is none (Error).
func (r *MetricResult) Ratio() float64 {
	if r.ResultMetadata == nil {
		return math.NaN()
	}
	return float64(r.ResultMetadata.Ratio)
}
