package judge

import (
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
)

// Verdict is the classification of the summary score.
type Verdict string

// Verdicts (Kayenta's ThresholdScoreClassifier).
const (
	VerdictPass     Verdict = "Pass"
	VerdictMarginal Verdict = "Marginal"
	VerdictFail     Verdict = "Fail"
)

// Thresholds classify the summary score: >= Pass is Pass, >= Marginal is Marginal, else Fail. In Kayenta
// they come with the execution request (not from the canary config's classifier.scoreThresholds).
type Thresholds struct {
	Pass     float64 `json:"pass"`
	Marginal float64 `json:"marginal"`
}

// DefaultThresholds are canaryctl's defaults (the values of Kayenta's own examples).
var DefaultThresholds = Thresholds{Pass: 75, Marginal: 50}

// Validate checks 0 <= Marginal <= Pass <= 100. Kayenta accepts anything; a marginal threshold above
// the pass threshold makes Marginal unreachable, which is a mistake worth stopping for.
func (t Thresholds) Validate() error {
	bad := func(path, format string, args ...any) error {
		return &ConfigError{Source: SourceThresholds, Path: path, Problem: fmt.Sprintf(format, args...)}
	}
	if !(t.Pass >= 0 && t.Pass <= 100) {
		return bad("pass", "got %v; want a score between 0 and 100", t.Pass)
	}
	if !(t.Marginal >= 0 && t.Marginal <= 100) {
		return bad("marginal", "got %v; want a score between 0 and 100", t.Marginal)
	}
	if t.Marginal > t.Pass {
		return bad("marginal", "got %v, above pass %v; want marginal <= pass", t.Marginal, t.Pass)
	}
	return nil
}

// Classify maps a summary score to a verdict.
func (t Thresholds) Classify(score float64) Verdict {
	switch {
	case score >= t.Pass:
		return VerdictPass
	case score >= t.Marginal:
		return VerdictMarginal
	default:
		return VerdictFail
	}
}

// GroupScore is the score of one metric group: the share of its scored metrics that passed.
type GroupScore struct {
	Name                 string  `json:"name"`
	Score                Float   `json:"score"`
	Classification       string  `json:"classification"`       // always "" (as in Kayenta)
	ClassificationReason string  `json:"classificationReason"` // always "" (as in Kayenta)
	NoData               bool    `json:"-"`                    // no Pass/High/Low/NodataFailMetric metric: counts as 100
	Counts               []Count `json:"-"`                    // classifications of the group's metrics
}

// Count is how many metrics of a group got a classification.
type Count struct {
	Classification Classification
	N              int
}

// scoreInput is what the scorer needs of a metric result.
type scoreInput struct {
	classification Classification
	groups         []string
	critical       bool
	muted          bool
	reason         *string
}

// scoreResult is WeightedSumScorer's output.
type scoreResult struct {
	summary float64
	reason  *string // nil when the score was not forced to 0
	groups  []GroupScore
}

// weightedSum is Kayenta's ScoringHelper + WeightedSumScorer (ALGORITHM §10).
func weightedSum(weights map[string]float64, results []scoreInput) scoreResult {
	var scored []scoreInput
	for _, r := range results {
		if !r.muted {
			scored = append(scored, r)
		}
	}

	// Group scores, groups in order of first appearance.
	var order []string
	labels := map[string][]Classification{}
	for _, r := range scored {
		for _, g := range r.groups {
			if _, ok := labels[g]; !ok {
				order = append(order, g)
			}
			labels[g] = append(labels[g], r.classification)
		}
	}
	groups := make([]GroupScore, 0, len(order))
	for _, g := range order {
		groups = append(groups, groupScore(g, labels[g]))
	}

	out := scoreResult{groups: groups}
	for _, r := range scored {
		if r.critical && r.classification != Pass {
			reason := "null" // Kayenta concatenates a null reason
			if r.reason != nil {
				reason = *r.reason
			}
			out.reason = strp("Canary Failed: " + reason)
			return out
		}
	}
	nodata := 0
	for _, r := range scored {
		if r.classification == Nodata {
			nodata++
		}
	}
	if len(scored) > 0 && float64(nodata)/float64(len(scored))*100 >= 50 {
		out.reason = strp("Canary Failed: 50% or more metrics returned NODATA")
		return out
	}

	keys := make([]string, 0, len(weights))
	for g := range weights {
		keys = append(keys, g)
	}
	sort.Strings(keys)
	weightSum := 0.0
	for _, g := range keys {
		weightSum += weights[g]
	}
	unweighted := 0
	for _, g := range order {
		if _, ok := weights[g]; !ok {
			unweighted++
		}
	}
	defaultWeight := 0.0
	if unweighted > 0 {
		defaultWeight = (100 - weightSum) / float64(unweighted)
	}
	summary := 0.0
	for _, gs := range groups {
		w, ok := weights[gs.Name]
		if !ok {
			w = defaultWeight
		}
		s := float64(gs.Score)
		if gs.NoData {
			s = 100
		}
		summary += s * (w / 100)
	}
	out.summary = roundHalfUp2(summary)
	return out
}

func groupScore(name string, labels []Classification) GroupScore {
	n := map[Classification]int{}
	var seen []Classification
	for _, l := range labels {
		if n[l] == 0 {
			seen = append(seen, l)
		}
		n[l]++
	}
	gs := GroupScore{Name: name}
	for _, l := range seen {
		gs.Counts = append(gs.Counts, Count{Classification: l, N: n[l]})
	}
	total := n[Pass] + n[High] + n[Low] + n[NodataFailMetric]
	if total == 0 {
		gs.NoData = true
		return gs
	}
	gs.Score = Float(float64(n[Pass]) / float64(total) * 100)
	return gs
}

// roundHalfUp2 is commons-math Precision.round(x, 2): BigDecimal(Double.toString(x)).setScale(2,
// HALF_UP).doubleValue() — half away from zero on the shortest decimal representation, so 2.675 → 2.68
// although the double 2.675 is slightly below it. NaN and ±Inf are returned unchanged.
func roundHalfUp2(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(x, 'g', -1, 64))
	if !ok {
		return x
	}
	neg := r.Sign() < 0
	r.Abs(r)
	r.Mul(r, big.NewRat(100, 1))
	r.Add(r, big.NewRat(1, 2))
	n := new(big.Int).Quo(r.Num(), r.Denom()) // floor of a non-negative rational
	f, _ := new(big.Rat).SetFrac(n, big.NewInt(100)).Float64()
	if neg && f != 0 { // BigDecimal has no negative zero
		f = -f
	}
	return f
}
