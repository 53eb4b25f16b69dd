package judge

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/canaryctl/canaryctl/analysis"
)

// series returns n deterministic values around center (spread ±spread).
func series(n int, center, spread float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = center + spread*float64((i*7)%11-5)/5
	}
	return v
}

// scaled multiplies every value by k (by a power of two: exactly, so mean ratios are exact).
func scaled(v []float64, k float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x * k
	}
	return out
}

func nanSeries(n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = math.NaN()
	}
	return v
}

func mustConfig(t *testing.T, s string) *CanaryConfig {
	t.Helper()
	cfg, err := ParseCanaryConfig([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func seeded() Option { return WithNoise(rand.New(rand.NewPCG(7, 11))) }

// TestJudgeScenarios: whole judgements whose outcome follows by hand from ALGORITHM §5-§10.
func TestJudgeScenarios(t *testing.T) {
	t.Parallel()
	good, bad := series(30, 100, 10), series(30, 300, 10)
	type want struct {
		score          float64
		verdict        Verdict
		reason         string
		classification []Classification
		critical       []bool
		groups         map[string]float64 // group -> score
	}
	tests := []struct {
		name   string
		config string
		th     Thresholds
		pairs  []MetricSetPair
		want   want
	}{
		{
			name:   "all-pass",
			config: `{"metrics": [{"name": "a", "groups": ["g"]}, {"name": "b", "groups": ["g"]}]}`,
			pairs:  []MetricSetPair{{Name: "a", Control: good, Experiment: good}, {Name: "b", Control: good, Experiment: series(30, 101, 10)}},
			want:   want{100, VerdictPass, "", []Classification{Pass, Pass}, []bool{false, false}, map[string]float64{"g": 100}},
		},
		{
			name:   "one-of-three-high",
			config: `{"metrics": [{"name": "a", "groups": ["g"]}, {"name": "b", "groups": ["g"]}, {"name": "c", "groups": ["g"]}]}`,
			pairs: []MetricSetPair{{Name: "a", Control: good, Experiment: good}, {Name: "b", Control: good, Experiment: bad},
				{Name: "c", Control: good, Experiment: good}},
			// 2/3 pass = 66.666… → rounded half-up to 66.67 → Marginal at 75/50.
			want: want{66.67, VerdictMarginal, "", []Classification{Pass, High, Pass}, []bool{false, false, false},
				map[string]float64{"g": 200.0 / 3}},
		},
		{
			name: "critical-high-zeroes-the-score",
			config: `{"metrics": [{"name": "lat", "groups": ["g"], "analysisConfigurations": {"canary": {"critical": true, "direction": "increase"}}},
				{"name": "ok", "groups": ["g"]}]}`,
			pairs: []MetricSetPair{{Name: "lat", Control: good, Experiment: bad}, {Name: "ok", Control: good, Experiment: good}},
			want: want{0, VerdictFail, "Canary Failed: The metric lat was classified as High (Critical)",
				[]Classification{High, Pass}, []bool{true, false}, map[string]float64{"g": 50}},
		},
		{
			name:   "critical-high-below-critical-increase-is-ordinary",
			config: `{"metrics": [{"name": "lat", "groups": ["g"], "analysisConfigurations": {"canary": {"critical": true, "effectSize": {"criticalIncrease": 5}}}}]}`,
			pairs:  []MetricSetPair{{Name: "lat", Control: good, Experiment: bad}},
			want:   want{0, VerdictFail, "", []Classification{High}, []bool{false}, map[string]float64{"g": 0}},
		},
		{
			name:   "direction-decrease-ignores-increase",
			config: `{"metrics": [{"name": "rps", "groups": ["g"], "analysisConfigurations": {"canary": {"direction": "decrease"}}}]}`,
			pairs:  []MetricSetPair{{Name: "rps", Control: good, Experiment: bad}},
			want:   want{100, VerdictPass, "", []Classification{Pass}, []bool{false}, map[string]float64{"g": 100}},
		},
		{
			name:   "error-metric-counts-as-100",
			config: `{"metrics": [{"name": "e", "groups": ["g"], "analysisConfigurations": {"canary": {"critical": true}}}]}`,
			// 12 vs 10, one value each: both "constant", noise added, W is tied at the only shift
			// (Sterbenz) → the classifier throws → Error, never critical; the group has no data → 100.
			pairs: []MetricSetPair{{Name: "e", Control: []float64{10}, Experiment: []float64{12}}},
			want:  want{100, VerdictPass, "", []Classification{Error}, []bool{false}, map[string]float64{"g": 0}},
		},
		{
			name:   "half-nodata-fails",
			config: `{"metrics": [{"name": "a", "groups": ["g"]}, {"name": "b", "groups": ["h"]}]}`,
			pairs:  []MetricSetPair{{Name: "a", Control: good, Experiment: nanSeries(30)}, {Name: "b", Control: good, Experiment: good}},
			want: want{0, VerdictFail, "Canary Failed: 50% or more metrics returned NODATA", []Classification{Nodata, Pass}, []bool{false, false},
				map[string]float64{"g": 0, "h": 100}},
		},
		{
			name:   "critical-nodata-fails",
			config: `{"metrics": [{"name": "a", "groups": ["g"], "analysisConfigurations": {"canary": {"critical": true}}}, {"name": "b", "groups": ["g"]}, {"name": "c", "groups": ["g"]}]}`,
			pairs: []MetricSetPair{{Name: "a", Control: good, Experiment: []float64{}}, {Name: "b", Control: good, Experiment: good},
				{Name: "c", Control: good, Experiment: good}},
			want: want{0, VerdictFail, "Canary Failed: Missing data for a", []Classification{Nodata, Pass, Pass}, []bool{true, false, false},
				map[string]float64{"g": 100}},
		},
		{
			name:   "must-have-data-fails-its-group",
			config: `{"metrics": [{"name": "a", "groups": ["g"], "analysisConfigurations": {"canary": {"mustHaveData": true}}}, {"name": "b", "groups": ["g"]}, {"name": "c", "groups": ["g"]}]}`,
			pairs: []MetricSetPair{{Name: "a", Control: nanSeries(5), Experiment: good}, {Name: "b", Control: good, Experiment: good},
				{Name: "c", Control: good, Experiment: good}},
			want: want{66.67, VerdictMarginal, "", []Classification{NodataFailMetric, Pass, Pass}, []bool{false, false, false},
				map[string]float64{"g": 200.0 / 3}},
		},
		{
			name:   "must-have-data-and-critical-is-critical-nodata",
			config: `{"metrics": [{"name": "a", "groups": ["g"], "analysisConfigurations": {"canary": {"mustHaveData": true, "critical": true}}}, {"name": "b", "groups": ["g"]}, {"name": "c", "groups": ["g"]}]}`,
			pairs: []MetricSetPair{{Name: "a", Control: nanSeries(5), Experiment: good}, {Name: "b", Control: good, Experiment: good},
				{Name: "c", Control: good, Experiment: good}},
			want: want{0, VerdictFail, "Canary Failed: Missing data for a", []Classification{Nodata, Pass, Pass}, []bool{true, false, false},
				map[string]float64{"g": 100}},
		},
		{
			// canary = 4·baseline exactly (a power of two), so the mean ratio is exactly 4: the gates are inclusive.
			name: "effect-gates-are-inclusive",
			config: `{"metrics": [{"name": "up", "groups": ["g"], "analysisConfigurations": {"canary": {"critical": true, "effectSize": {"allowedIncrease": 4, "criticalIncrease": 4}}}},
				{"name": "down", "groups": ["g"], "analysisConfigurations": {"canary": {"effectSize": {"allowedDecrease": 0.25}}}}]}`,
			pairs: []MetricSetPair{{Name: "up", Control: good, Experiment: scaled(good, 4)}, {Name: "down", Control: good, Experiment: scaled(good, 0.25)}},
			want: want{0, VerdictFail, "Canary Failed: The metric up was classified as High (Critical)", []Classification{High, Low},
				[]bool{true, false}, map[string]float64{"g": 0}},
		},
		{
			name: "effect-gates-block-small-effects",
			config: `{"metrics": [{"name": "up", "groups": ["g"], "analysisConfigurations": {"canary": {"effectSize": {"allowedIncrease": 4.0000001}}}},
				{"name": "down", "groups": ["g"], "analysisConfigurations": {"canary": {"effectSize": {"allowedDecrease": 0.2499999}}}}]}`,
			pairs: []MetricSetPair{{Name: "up", Control: good, Experiment: scaled(good, 4)}, {Name: "down", Control: good, Experiment: scaled(good, 0.25)}},
			want:  want{100, VerdictPass, "", []Classification{Pass, Pass}, []bool{false, false}, map[string]float64{"g": 100}},
		},
		{
			name:   "replace-turns-missing-data-into-pass",
			config: `{"metrics": [{"name": "a", "groups": ["g"], "analysisConfigurations": {"canary": {"nanStrategy": "replace", "critical": true}}}]}`,
			pairs:  []MetricSetPair{{Name: "a", Control: good, Experiment: []float64{}}},
			want:   want{100, VerdictPass, "", []Classification{Pass}, []bool{false}, map[string]float64{"g": 100}},
		},
		{
			name:   "muted-metrics-are-reported-not-scored",
			config: `{"metrics": [{"name": "a", "groups": ["g"], "analysisConfigurations": {"canary": {"muted": true, "critical": true}}}, {"name": "b", "groups": ["g"]}]}`,
			pairs:  []MetricSetPair{{Name: "a", Control: good, Experiment: bad}, {Name: "b", Control: good, Experiment: good}},
			want:   want{100, VerdictPass, "", []Classification{High, Pass}, []bool{true, false}, map[string]float64{"g": 100}},
		},
		{
			name:   "only-muted-fails",
			config: `{"metrics": [{"name": "a", "groups": ["g"], "analysisConfigurations": {"canary": {"muted": true}}}]}`,
			pairs:  []MetricSetPair{{Name: "a", Control: good, Experiment: good}},
			want:   want{0, VerdictFail, "", []Classification{Pass}, []bool{false}, map[string]float64{}},
		},
		{
			name:   "weight-for-missing-group-is-lost",
			config: `{"metrics": [{"name": "a", "groups": ["g"]}], "classifier": {"groupWeights": {"elsewhere": 50}}}`,
			pairs:  []MetricSetPair{{Name: "a", Control: good, Experiment: good}},
			want:   want{50, VerdictMarginal, "", []Classification{Pass}, []bool{false}, map[string]float64{"g": 100}},
		},
		{
			name:   "weighted-groups",
			config: `{"metrics": [{"name": "a", "groups": ["lat"]}, {"name": "b", "groups": ["err"]}], "classifier": {"groupWeights": {"lat": 70, "err": 30}}}`,
			pairs:  []MetricSetPair{{Name: "a", Control: good, Experiment: good}, {Name: "b", Control: good, Experiment: bad}},
			want:   want{70, VerdictMarginal, "", []Classification{Pass, High}, []bool{false, false}, map[string]float64{"lat": 100, "err": 0}},
		},
		{
			name:   "custom-thresholds",
			config: `{"metrics": [{"name": "a", "groups": ["lat"]}, {"name": "b", "groups": ["err"]}], "classifier": {"groupWeights": {"lat": 70, "err": 30}}}`,
			th:     Thresholds{Pass: 70, Marginal: 10},
			pairs:  []MetricSetPair{{Name: "a", Control: good, Experiment: good}, {Name: "b", Control: good, Experiment: bad}},
			want:   want{70, VerdictPass, "", []Classification{Pass, High}, []bool{false, false}, map[string]float64{"lat": 100, "err": 0}},
		},
		{
			name:   "one-config-many-pairs",
			config: `{"metrics": [{"name": "a", "groups": ["g"]}]}`,
			pairs: []MetricSetPair{{Name: "a", Tags: map[string]string{"zone": "1"}, Control: good, Experiment: good},
				{Name: "a", Tags: map[string]string{"zone": "2"}, Control: good, Experiment: bad}},
			want: want{50, VerdictMarginal, "", []Classification{Pass, High}, []bool{false, false}, map[string]float64{"g": 50}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			th := tc.th
			if th == (Thresholds{}) {
				th = DefaultThresholds
			}
			res, err := Judge(mustConfig(t, tc.config), th, tc.pairs, seeded())
			if err != nil {
				t.Fatal(err)
			}
			w := tc.want
			if float64(res.Score.Score) != w.score || res.Score.Classification != w.verdict || res.Score.ClassificationReason != w.reason {
				t.Errorf("score %v %s %q, want %v %s %q", res.Score.Score, res.Score.Classification, res.Score.ClassificationReason,
					w.score, w.verdict, w.reason)
			}
			if len(res.Results) != len(w.classification) {
				t.Fatalf("%d results, want %d", len(res.Results), len(w.classification))
			}
			for i, r := range res.Results {
				if r.Classification != w.classification[i] || r.Critical != w.critical[i] {
					t.Errorf("results[%d] %s: %s critical %t, want %s %t (why %+v)", i, r.Name, r.Classification, r.Critical,
						w.classification[i], w.critical[i], r.Why)
				}
			}
			if len(res.GroupScores) != len(w.groups) {
				t.Errorf("group scores %+v, want %v", res.GroupScores, w.groups)
			}
			for _, g := range res.GroupScores {
				if want, ok := w.groups[g.Name]; !ok || math.Abs(float64(g.Score)-want) > 1e-9 {
					t.Errorf("group %s score %v, want %v", g.Name, g.Score, w.groups)
				}
			}
		})
	}
}

func TestJudgeErrorMetricShape(t *testing.T) {
	t.Parallel()
	cfg := mustConfig(t, `{"metrics": [{"name": "e", "groups": ["g"], "analysisConfigurations": {"canary": {"critical": true}}}]}`)
	res, err := Judge(cfg, DefaultThresholds, []MetricSetPair{{Name: "e", ID: "id-1", Control: []float64{10}, Experiment: []float64{12}}}, seeded())
	if err != nil {
		t.Fatal(err)
	}
	r := res.Results[0]
	if r.Classification != Error || r.ClassificationReason != "Metric Classification Failed" || r.ResultMetadata != nil ||
		r.ExperimentMetadata.Stats.Count != 1 || r.Why.Stage != StageError || r.Why.Err == nil || !r.Why.NoiseAdded {
		t.Errorf("%+v", r)
	}
	b, _ := json.Marshal(res)
	if strings.Contains(string(b), "resultMetadata") || !strings.Contains(string(b), `"id":"id-1"`) {
		t.Errorf("json %s", b)
	}
}

func TestJudgeJSONShape(t *testing.T) {
	t.Parallel()
	cfg := mustConfig(t, `{"metrics": [{"name": "zero", "groups": ["g"]}, {"name": "same", "groups": ["g"]}]}`)
	// "zero": baseline all 0 and the canary clearly above → High with a NaN mean ratio (serialised "NaN").
	res, err := Judge(cfg, DefaultThresholds, []MetricSetPair{
		{Name: "zero", Control: make([]float64, 10), Experiment: series(10, 50, 5)},
		{Name: "same", Control: []float64{1, 2, 3}, Experiment: []float64{3, 2, 1}},
	}, seeded())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		JudgeName string `json:"judgeName"`
		Score     struct {
			Score                float64 `json:"score"`
			Classification       string  `json:"classification"`
			ClassificationReason *string `json:"classificationReason"`
		} `json:"score"`
		GroupScores []map[string]any `json:"groupScores"`
		Results     []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	if got.JudgeName != "NetflixACAJudge-v1.0" || got.Score.ClassificationReason == nil || *got.Score.ClassificationReason != "" {
		t.Errorf("json %s", b)
	}
	zero, same := got.Results[0], got.Results[1]
	if zero["classification"] != "High" || zero["resultMetadata"].(map[string]any)["ratio"] != "NaN" ||
		zero["classificationReason"] != "zero was classified as High" {
		t.Errorf("zero: %v", zero)
	}
	if same["classificationReason"] != "The Canary and Baseline data are identical" {
		t.Errorf("same: %v", same)
	}
	for _, k := range []string{"name", "tags", "classification", "groups", "critical", "muted", "experimentMetadata", "controlMetadata", "resultMetadata"} {
		if _, ok := same[k]; !ok {
			t.Errorf("result lacks %q: %v", k, same)
		}
	}
	if _, ok := same["Why"]; ok {
		t.Error("the explanation leaked into Kayenta's JSON")
	}
	gs := got.GroupScores[0]
	if gs["classification"] != "" || gs["classificationReason"] != "" || gs["name"] != "g" {
		t.Errorf("group score %v", gs)
	}
	stats := zero["controlMetadata"].(map[string]any)["stats"].(map[string]any)
	if stats["count"] != 10.0 || stats["mean"] != 0.0 {
		t.Errorf("stats %v", stats)
	}
}

func TestJudgeExplanation(t *testing.T) {
	t.Parallel()
	cfg := mustConfig(t, `{"metrics": [{"name": "lat", "analysisConfigurations": {"canary": {"effectSize": {"measure": "cles"}}}}]}`)
	res, err := Judge(cfg, DefaultThresholds, []MetricSetPair{{Name: "lat", Control: series(30, 100, 10), Experiment: series(30, 300, 10)}})
	if err != nil {
		t.Fatal(err)
	}
	w := res.Results[0].Why
	// The judge's hard-coded parameters: confidence 0.98 and tolerance 0.25 (NetflixACAJudge.scala).
	ci, err := analysis.MannWhitney(series(30, 300, 10), series(30, 100, 10), 0.98)
	if err != nil || ci.Lower != w.CILower || ci.Upper != w.CIUpper || ci.Estimate != w.Estimate || w.Bound != 0.25*math.Abs(ci.Estimate) {
		t.Errorf("explanation %+v does not match Mann-Whitney at 0.98 / tolerance 0.25: %+v (%v)", w, ci, err)
	}
	// Every canary value exceeds every baseline value by 200: CLES 1, estimate 200, CI around it.
	if w.Stage != StageCompared || w.EffectMeasure != CLES || w.Effect != 1 || math.Abs(w.Estimate-200) > 1e-3 ||
		!(w.CILower > w.Bound) || w.Bound != Tolerance*math.Abs(w.Estimate) || w.CanaryCount != 30 || w.NoiseAdded {
		t.Errorf("%+v", w)
	}
	m := 0.0
	for _, v := range series(30, 100, 10) {
		m += v / 30
	}
	if r, want := res.Results[0].Ratio(), (m+200)/m; math.Abs(r-want) > 1e-12 {
		t.Errorf("ratio %v, want %v", r, want)
	}
}

func TestJudgeOutlierRemoval(t *testing.T) {
	t.Parallel()
	cfg := mustConfig(t, `{"metrics": [{"name": "m", "analysisConfigurations": {"canary": {"outliers": {"strategy": "remove", "outlierFactor": 1.5}}}},
		{"name": "k", "analysisConfigurations": {"canary": {}}}]}`)
	spiky := append(series(30, 100, 10), 1e6)
	res, err := Judge(cfg, DefaultThresholds, []MetricSetPair{{Name: "m", Control: series(30, 100, 10), Experiment: spiky},
		{Name: "k", Control: series(30, 100, 10), Experiment: spiky}})
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Results[0].ExperimentMetadata.Stats.Count; c != 30 {
		t.Errorf("with removal: %d canary points, want 30", c)
	}
	if c := res.Results[1].ExperimentMetadata.Stats.Count; c != 31 {
		t.Errorf("without removal: %d canary points, want 31", c)
	}
}

// TestDeckKeepStrategy: Spinnaker's canary config editor (Deck) writes outliers.strategy "keep" (its
// choices are keep and remove). Kayenta removes outliers only for "remove" (NetflixACAJudge; see
// /work/shared/kayenta/ALGORITHM.md §2), so "keep" must load and judge exactly like the default
// "none": same points, same classification, same score; "remove" differs on the same data.
func TestDeckKeepStrategy(t *testing.T) {
	t.Parallel()
	spiky := append(series(30, 100, 10), 1e6, 2e6, 3e6)
	judgeWith := func(strategy string) *Result {
		t.Helper()
		cfg := mustConfig(t, `{"metrics": [{"name": "m", "groups": ["g"], "analysisConfigurations": {"canary": {"direction": "increase", "outliers": {"strategy": "`+strategy+`", "outlierFactor": 3.0}}}}],
			"classifier": {"groupWeights": {"g": 100}}}`)
		if got := cfg.Metrics[0].Analysis.Outliers; strategy != "remove" && got != OutliersKeep {
			t.Fatalf("strategy %q parsed as %q, want %q", strategy, got, OutliersKeep)
		}
		res, err := Judge(cfg, DefaultThresholds, []MetricSetPair{{Name: "m", Control: series(30, 100, 10), Experiment: spiky}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	keep, none, remove := judgeWith("keep"), judgeWith("none"), judgeWith("remove")
	if !reflect.DeepEqual(keep, none) {
		t.Fatalf("keep judged differently from none:\n keep %+v\n none %+v", keep, none)
	}
	if keep.Results[0].ExperimentMetadata.Stats.Count != 33 || remove.Results[0].ExperimentMetadata.Stats.Count >= 33 {
		t.Fatalf("canary points: keep %d, remove %d; want 33 and fewer", keep.Results[0].ExperimentMetadata.Stats.Count, remove.Results[0].ExperimentMetadata.Stats.Count)
	}
}

func TestJudgeRejects(t *testing.T) {
	t.Parallel()
	cfg := mustConfig(t, `{"metrics": [{"name": "a"}, {"name": "b"}]}`)
	tests := []struct {
		name     string
		th       Thresholds
		pairs    []MetricSetPair
		path     string
		sentinel error
	}{
		{"unknown-metric", DefaultThresholds, []MetricSetPair{{Name: "a"}, {Name: "latency"}}, "[1].name", ErrUnknownMetric},
		{"pass-above-100", Thresholds{Pass: 101, Marginal: 50}, nil, "pass", nil},
		{"marginal-negative", Thresholds{Pass: 75, Marginal: -1}, nil, "marginal", nil},
		{"marginal-above-pass", Thresholds{Pass: 50, Marginal: 75}, nil, "marginal", nil},
		{"nan-threshold", Thresholds{Pass: math.NaN(), Marginal: 50}, nil, "pass", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Judge(cfg, tc.th, tc.pairs)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Path != tc.path {
				t.Fatalf("error %v, want a *ConfigError at %q", err, tc.path)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("%v does not wrap %v", err, tc.sentinel)
			}
			if tc.name == "unknown-metric" && !strings.Contains(err.Error(), `"latency" has no metric`) {
				t.Errorf("message %q", err)
			}
		})
	}
}

// TestJudgeNoiseIsInjected: the both-constant case depends only on the injected source.
func TestJudgeNoiseIsInjected(t *testing.T) {
	t.Parallel()
	cfg := mustConfig(t, `{"metrics": [{"name": "c"}]}`)
	pairs := []MetricSetPair{{Name: "c", Control: []float64{1, 1, 1, 1, 1}, Experiment: []float64{10, 10, 10, 10, 10}}}
	run := func() float64 {
		res, err := Judge(cfg, DefaultThresholds, pairs, WithNoise(rand.New(rand.NewPCG(3, 4))))
		if err != nil {
			t.Fatal(err)
		}
		if res.Results[0].Classification != High || !res.Results[0].Why.NoiseAdded {
			t.Fatalf("%+v", res.Results[0])
		}
		return res.Results[0].Ratio()
	}
	a, b := run(), run()
	if a != b || a == 10 {
		t.Errorf("ratios %v, %v: want equal (same seed) and noised (not exactly 10)", a, b)
	}
}

func TestRoundHalfUp2(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want float64 }{
		{2.675, 2.68}, // the double is 2.67499999999999982236431605997495353221893310546875
		{1.005, 1.01},
		{33.335, 33.34},
		{200.0 / 3, 66.67},
		{100.0 / 3, 33.33},
		{99.995, 100},
		{0.004, 0},
		{-0.004, 0},
		{-2.675, -2.68},
		{75, 75},
		{1e-20, 0},
	}
	for _, tc := range tests {
		if got := roundHalfUp2(tc.in); got != tc.want || math.Signbit(got) != math.Signbit(tc.want) {
			t.Errorf("roundHalfUp2(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(roundHalfUp2(math.NaN())) || !math.IsInf(roundHalfUp2(math.Inf(1)), 1) {
		t.Error("NaN/Inf not passed through")
	}
}

func TestParseMetricSetPairs(t *testing.T) {
	t.Parallel()
	pairs, err := ParseMetricSetPairs([]byte(`[{"name": "m", "id": "x", "tags": {"zone": "a"},
		"values": {"control": [1, 2.5, "NaN"], "experiment": ["Infinity", "-Infinity", -0.0, 1e3]},
		"scopes": {"control": {"startTimeIso": "2024-01-01T00:00:00Z", "stepMillis": 60000}},
		"attributes": {"control": {"query": "up"}}}, {"name": "n", "values": {"control": [], "experiment": []}}]`))
	if err != nil {
		t.Fatal(err)
	}
	p := pairs[0]
	if p.Name != "m" || p.ID != "x" || p.Tags["zone"] != "a" || len(p.Control) != 3 || !math.IsNaN(p.Control[2]) ||
		!math.IsInf(p.Experiment[0], 1) || !math.IsInf(p.Experiment[1], -1) || !math.Signbit(p.Experiment[2]) || p.Experiment[3] != 1000 ||
		!strings.Contains(string(p.Scopes), "stepMillis") || !strings.Contains(string(p.Attributes), "up") {
		t.Errorf("%+v", p)
	}
	if pairs[1].Control == nil || pairs[1].Experiment == nil || pairs[1].Tags != nil {
		t.Errorf("%+v", pairs[1])
	}
	assertPairsRoundTrip(t, pairs)
}

func TestParseMetricSetPairsRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, path, contains string
	}{
		{"null-value", `[{"name": "a", "values": {"control": [1], "experiment": [1, null]}}]`, "[0].values.experiment[1]", `"NaN"`},
		{"string-value", `[{"name": "a", "values": {"control": ["nan"], "experiment": []}}]`, "[0].values.control[0]", `"nan" (a string)`},
		{"bool-value", `[{"name": "a", "values": {"control": [true], "experiment": []}}]`, "[0].values.control[0]", "true (a boolean)"},
		{"huge-value", `[{"name": "a", "values": {"control": [1e400], "experiment": []}}]`, "[0].values.control[0]", "out of range"},
		{"missing-experiment", `[{"name": "a", "values": {"control": []}}]`, "[0].values.experiment", "canary"},
		{"missing-values", `[{"name": "a"}]`, "[0].values", "missing"},
		{"values-list", `[{"name": "a", "values": [[1], [2]]}]`, "[0].values", "want an object"},
		{"series-object", `[{"name": "a", "values": {"control": {"0": 1}, "experiment": []}}]`, "[0].values.control", "want a list"},
		{"missing-name", `[{"values": {"control": [], "experiment": []}}]`, "[0].name", "missing"},
		{"tags-list", `[{"name": "a", "tags": ["x"], "values": {"control": [], "experiment": []}}]`, "[0].tags", "want an object"},
		{"tag-number", `[{"name": "a", "tags": {"x": 1}, "values": {"control": [], "experiment": []}}]`, "[0].tags.x", "a string"},
		{"not-a-list", `{"name": "a"}`, "", "want a list"},
		{"pair-null", `[null]`, "[0]", "got null"},
		{"truncated", `[{"name": "a", "values": {"control": [1, 2`, "", "invalid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseMetricSetPairs([]byte(tc.in))
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Path != tc.path || ce.Source != SourcePairs {
				t.Fatalf("error %v, want a metric set pairs *ConfigError at %q", err, tc.path)
			}
			if !strings.Contains(err.Error(), tc.contains) || strings.Contains(err.Error(), "\n") {
				t.Errorf("message %q lacks %q or has several lines", err, tc.contains)
			}
		})
	}
}

func assertPairsRoundTrip(t *testing.T, pairs []MetricSetPair) {
	t.Helper()
	b, err := json.Marshal(pairs)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	again, err := ParseMetricSetPairs(b)
	if err != nil {
		t.Fatalf("re-parse of %s: %v", b, err)
	}
	if len(again) != len(pairs) {
		t.Fatalf("%d pairs after round trip, want %d", len(again), len(pairs))
	}
	for i := range pairs {
		p, q := pairs[i], again[i]
		if p.Name != q.Name || p.ID != q.ID || len(p.Tags) != len(q.Tags) || string(p.Scopes) != string(q.Scopes) ||
			string(p.Attributes) != string(q.Attributes) || !sameFloats(p.Control, q.Control) || !sameFloats(p.Experiment, q.Experiment) {
			t.Fatalf("pair %d changed:\n%+v\n%+v", i, p, q)
		}
		for k, v := range p.Tags {
			if q.Tags[k] != v {
				t.Fatalf("pair %d tag %q changed", i, k)
			}
		}
	}
}

func sameFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !(math.IsNaN(a[i]) && math.IsNaN(b[i])) || math.Signbit(a[i]) != math.Signbit(b[i]) {
			return false
		}
	}
	return true
}
