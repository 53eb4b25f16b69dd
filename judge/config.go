package judge

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// JudgeName is the only judge implemented: Kayenta's NetflixACAJudge.
const JudgeName = "NetflixACAJudge-v1.0"

// Direction says which change of a metric is bad.
type Direction string

// Directions (Kayenta's analysisConfigurations.canary.direction).
const (
	Increase Direction = "increase" // only an increase is flagged (High)
	Decrease Direction = "decrease" // only a decrease is flagged (Low)
	Either   Direction = "either"   // both are flagged (default)
)

// NaNStrategy says what happens to NaN (missing) data points before the comparison.
type NaNStrategy string

// NaN strategies. Kayenta's default value is the string "none", which behaves like "remove".
const (
	NaNRemove  NaNStrategy = "remove"  // drop NaN points (default)
	NaNReplace NaNStrategy = "replace" // replace NaN points with 0
)

// OutlierStrategy says whether outliers are removed before the comparison.
type OutlierStrategy string

// Outlier strategies.
const (
	OutliersKeep   OutlierStrategy = "none"   // keep every point (default)
	OutliersRemove OutlierStrategy = "remove" // IQR removal with reduced sensitivity
	// outliersKeepDeck is what Spinnaker's canary config editor writes for "keep": read as none.
	outliersKeepDeck = "keep"
)

// EffectMeasure names the effect size that gates High/Low classifications.
type EffectMeasure string

// Effect size measures.
const (
	MeanRatio EffectMeasure = "meanRatio" // mean(canary)/mean(baseline) (default)
	CLES      EffectMeasure = "cles"      // common-language effect size P(canary > baseline)
)

// Defaults of analysisConfigurations.canary (Kayenta NetflixACAJudge.scala, ALGORITHM §2).
const (
	DefaultOutlierFactor = 3.0
	defaultRatioGate     = 1.0 // effect-size gates for meanRatio
	defaultCLESGate      = 0.5 // effect-size gates for cles
)

// CanaryConfig is a Kayenta canary config as the judge sees it: metrics with their resolved
// analysis settings, templates and the classifier's group weights.
//
// Unknown keys: keys Kayenta defines but the judge does not use (id, applications, createdTimestamp,
// updatedTimestamp, configVersion, judge.judgeConfigurations, analysisConfigurations other than
// "canary", ...) and any other key outside analysisConfigurations.canary are accepted and ignored, as
// Kayenta does. Inside analysisConfigurations.canary, its "outliers" and its "effectSize" every key the
// judge reads is known, so an unknown key there is a typo that Kayenta would silently ignore (falling
// back to a default); it is rejected.
type CanaryConfig struct {
	Name        string
	Description string
	Judge       string // judge.name; always JudgeName once parsed
	Metrics     []MetricConfig
	Templates   map[string]string // nil when absent or empty
	Classifier  ClassifierConfig
}

// ClassifierConfig is the config's "classifier" object.
type ClassifierConfig struct {
	// GroupWeights are percentages per group; groups without a weight share what is left of 100.
	// nil when absent or empty.
	GroupWeights map[string]float64
	// ScoreThresholds is parsed and kept, but, exactly as in Kayenta, the judge does not read it: the
	// thresholds come with the judge request (canaryctl judge --pass/--marginal).
	ScoreThresholds *Thresholds
}

// MetricConfig is one entry of the config's "metrics".
type MetricConfig struct {
	Name      string
	Query     json.RawMessage // kept verbatim (compact) for the metrics provider; nil when absent
	Groups    []string        // never nil
	ScopeName string
	Analysis  MetricAnalysis // analysisConfigurations.canary with defaults applied
}

// MetricAnalysis is a metric's analysisConfigurations.canary, every default resolved.
type MetricAnalysis struct {
	Direction        Direction
	NaNStrategy      NaNStrategy
	Outliers         OutlierStrategy
	OutlierFactor    float64
	Critical         bool
	MustHaveData     bool
	Muted            bool
	EffectMeasure    EffectMeasure
	AllowedIncrease  float64 // High requires effect >= this
	AllowedDecrease  float64 // Low requires effect <= this
	CriticalIncrease float64 // a critical metric's High is critical when effect >= this
	CriticalDecrease float64 // a critical metric's Low is critical when effect <= this
}

// DefaultAnalysis returns Kayenta's defaults for a metric without analysisConfigurations.canary.
func DefaultAnalysis() MetricAnalysis {
	return MetricAnalysis{
		Direction: Either, NaNStrategy: NaNRemove, Outliers: OutliersKeep, OutlierFactor: DefaultOutlierFactor,
		EffectMeasure: MeanRatio, AllowedIncrease: defaultRatioGate, AllowedDecrease: defaultRatioGate,
		CriticalIncrease: defaultRatioGate, CriticalDecrease: defaultRatioGate,
	}
}

// Metric returns the config of the metric called name (the first, as Kayenta's find does; names are
// unique in a parsed config).
func (c *CanaryConfig) Metric(name string) (*MetricConfig, bool) {
	for i := range c.Metrics {
		if c.Metrics[i].Name == name {
			return &c.Metrics[i], true
		}
	}
	return nil, false
}

// ParseCanaryConfig parses a Kayenta canary config (JSON). Valid configs mean exactly what they mean to
// Kayenta; configs that Kayenta would crash on or silently misread are rejected with a *ConfigError
// naming the JSON path, the bad value and what is allowed.
func ParseCanaryConfig(data []byte) (*CanaryConfig, error) {
	d := decoder{source: SourceConfig}
	doc, err := d.parse(data)
	if err != nil {
		return nil, err
	}
	root, err := d.object(doc, "", `{"metrics": [...], ...}`)
	if err != nil {
		return nil, err
	}
	cfg := &CanaryConfig{Judge: JudgeName}
	if cfg.Name, err = d.optString(root, "name", "", "", "a string"); err != nil {
		return nil, err
	}
	if cfg.Description, err = d.optString(root, "description", "", "", "a string"); err != nil {
		return nil, err
	}
	if err := d.judge(root, cfg); err != nil {
		return nil, err
	}
	mv, ok := root["metrics"]
	if !ok {
		return nil, d.fail("metrics", "missing; want a list of metrics, each {\"name\": ..., \"analysisConfigurations\": {\"canary\": {...}}}")
	}
	ml, err := d.list(mv, "metrics", "of metric objects")
	if err != nil {
		return nil, err
	}
	if len(ml) == 0 {
		return nil, d.fail("metrics", "the list is empty; want at least one metric")
	}
	seen := map[string]int{}
	for i, v := range ml {
		m, err := d.metric(v, pathIndex("metrics", i))
		if err != nil {
			return nil, err
		}
		if j, dup := seen[m.Name]; dup {
			return nil, d.fail(pathKey(pathIndex("metrics", i), "name"),
				"%s is also the name of metrics[%d]; names must be unique (Kayenta would silently use only the first)", quote(m.Name), j)
		}
		seen[m.Name] = i
		cfg.Metrics = append(cfg.Metrics, m)
	}
	if tv, ok := root["templates"]; ok {
		if cfg.Templates, err = d.stringMap(tv, "templates", `{"<name>": "<filter template>"}`); err != nil {
			return nil, err
		}
	}
	if err := d.classifier(root, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (d decoder) judge(root map[string]any, cfg *CanaryConfig) error {
	j, err := d.optObject(root, "judge", "", `{"name": "`+JudgeName+`"}`)
	if err != nil || j == nil {
		return err
	}
	name, err := d.optString(j, "name", "judge", JudgeName, "a string")
	if err != nil {
		return err
	}
	if name != JudgeName {
		return d.fail("judge.name", "got %s; the only judge implemented is %q (omit judge.name for it)", describe(j["name"]), JudgeName)
	}
	return nil
}

func (d decoder) metric(v any, path string) (MetricConfig, error) {
	var mc MetricConfig
	m, err := d.object(v, path, `{"name": ..., "analysisConfigurations": {"canary": {...}}}`)
	if err != nil {
		return mc, err
	}
	nv, ok := m["name"]
	if !ok {
		return mc, d.fail(pathKey(path, "name"), "missing; every metric needs a name (metric set pairs are matched to it)")
	}
	if mc.Name, err = d.str(nv, pathKey(path, "name"), "a non-empty string"); err != nil {
		return mc, err
	}
	if strings.TrimSpace(mc.Name) == "" {
		return mc, d.fail(pathKey(path, "name"), "got an empty string; want a non-empty metric name")
	}
	if qv, ok := m["query"]; ok {
		q, err := d.object(qv, pathKey(path, "query"), `{"type": "prometheus", ...}`)
		if err != nil {
			return mc, err
		}
		mc.Query = raw(q)
	}
	mc.Groups = []string{}
	if gv, ok := m["groups"]; ok {
		gl, err := d.list(gv, pathKey(path, "groups"), `of group names, e.g. ["latency"]`)
		if err != nil {
			return mc, err
		}
		for i, g := range gl {
			s, err := d.str(g, pathIndex(pathKey(path, "groups"), i), "a group name (a string)")
			if err != nil {
				return mc, err
			}
			mc.Groups = append(mc.Groups, s)
		}
	}
	if mc.ScopeName, err = d.optString(m, "scopeName", path, "", "a string"); err != nil {
		return mc, err
	}
	mc.Analysis = DefaultAnalysis()
	ac, err := d.optObject(m, "analysisConfigurations", path, `{"canary": {...}}`)
	if err != nil || ac == nil {
		return mc, err
	}
	acPath := pathKey(path, "analysisConfigurations")
	canary, err := d.optObject(ac, "canary", acPath, `{"direction": ..., "critical": ..., ...}`)
	if err != nil || canary == nil {
		return mc, err
	}
	mc.Analysis, err = d.analysis(canary, pathKey(acPath, "canary"))
	return mc, err
}

func (d decoder) analysis(c map[string]any, path string) (MetricAnalysis, error) {
	a := DefaultAnalysis()
	if err := d.knownKeys(c, path, "direction", "nanStrategy", "outliers", "critical", "mustHaveData", "muted", "effectSize"); err != nil {
		return a, err
	}
	dir, err := d.oneOf(c, "direction", path, string(Either), string(Increase), string(Decrease), string(Either))
	if err != nil {
		return a, err
	}
	a.Direction = Direction(dir)
	ns, err := d.oneOf(c, "nanStrategy", path, string(NaNRemove), "none", string(NaNRemove), string(NaNReplace))
	if err != nil {
		return a, err
	}
	if ns == string(NaNReplace) {
		a.NaNStrategy = NaNReplace
	}
	if a.Critical, err = d.optBool(c, "critical", path); err != nil {
		return a, err
	}
	if a.MustHaveData, err = d.optBool(c, "mustHaveData", path); err != nil {
		return a, err
	}
	if a.Muted, err = d.optBool(c, "muted", path); err != nil {
		return a, err
	}
	out, err := d.optObject(c, "outliers", path, `{"strategy": "remove", "outlierFactor": 3.0}`)
	if err != nil {
		return a, err
	}
	if out != nil {
		op := pathKey(path, "outliers")
		if err := d.knownKeys(out, op, "strategy", "outlierFactor"); err != nil {
			return a, err
		}
		// Kayenta removes outliers for "remove" only and keeps them for anything else; Spinnaker's
		// canary config editor (Deck) offers "keep" and "remove", and Kayenta's default is "none".
		st, err := d.oneOf(out, "strategy", op, string(OutliersKeep), string(OutliersKeep), outliersKeepDeck, string(OutliersRemove))
		if err != nil {
			return a, err
		}
		if st == outliersKeepDeck {
			st = string(OutliersKeep)
		}
		a.Outliers = OutlierStrategy(st)
		if a.OutlierFactor, err = d.optNumber(out, "outlierFactor", op, DefaultOutlierFactor, "a number > 0 (default 3.0)"); err != nil {
			return a, err
		}
		if !(a.OutlierFactor > 0) {
			return a, d.fail(pathKey(op, "outlierFactor"), "got %s; want a number > 0 (the IQR factor, default 3.0)", fmtNum(a.OutlierFactor))
		}
	}
	es, err := d.optObject(c, "effectSize", path, `{"measure": "meanRatio", "allowedIncrease": 1.1, ...}`)
	if err != nil || es == nil {
		return a, err
	}
	ep := pathKey(path, "effectSize")
	if err := d.knownKeys(es, ep, "measure", "allowedIncrease", "allowedDecrease", "criticalIncrease", "criticalDecrease"); err != nil {
		return a, err
	}
	meas, err := d.oneOf(es, "measure", ep, string(MeanRatio), string(MeanRatio), string(CLES))
	if err != nil {
		return a, err
	}
	a.EffectMeasure = EffectMeasure(meas)
	gate := defaultRatioGate
	if a.EffectMeasure == CLES {
		gate = defaultCLESGate
	}
	for _, f := range []struct {
		key string
		dst *float64
	}{
		{"allowedIncrease", &a.AllowedIncrease},
		{"allowedDecrease", &a.AllowedDecrease},
		{"criticalIncrease", &a.CriticalIncrease},
		{"criticalDecrease", &a.CriticalDecrease},
	} {
		if *f.dst, err = d.optNumber(es, f.key, ep, gate, "a number (an effect-size gate, e.g. 1.2)"); err != nil {
			return a, err
		}
	}
	return a, nil
}

func (d decoder) classifier(root map[string]any, cfg *CanaryConfig) error {
	cl, err := d.optObject(root, "classifier", "", `{"groupWeights": {"<group>": 50}}`)
	if err != nil || cl == nil {
		return err
	}
	gw, err := d.optObject(cl, "groupWeights", "classifier", `{"<group>": <percent>}`)
	if err != nil {
		return err
	}
	for g, v := range gw {
		w, err := d.double(v, pathKey("classifier.groupWeights", g), "a weight in percent (a number)")
		if err != nil {
			return err
		}
		if cfg.Classifier.GroupWeights == nil {
			cfg.Classifier.GroupWeights = map[string]float64{}
		}
		cfg.Classifier.GroupWeights[g] = w
	}
	st, err := d.optObject(cl, "scoreThresholds", "classifier", `{"pass": 75, "marginal": 50}`)
	if err != nil || st == nil {
		return err
	}
	var th Thresholds
	p := "classifier.scoreThresholds"
	for _, f := range []struct {
		key string
		dst *float64
	}{{"pass", &th.Pass}, {"marginal", &th.Marginal}} {
		if v, ok := st[f.key]; ok {
			if *f.dst, err = d.double(v, pathKey(p, f.key), "a score 0..100"); err != nil {
				return err
			}
		}
	}
	cfg.Classifier.ScoreThresholds = &th
	return nil
}

// fmtNum renders a float for messages and Kayenta-style JSON: integral values keep a ".0" so that they
// read back as doubles (Jackson reads "3000000000" as a Long but "3000000000.0" as a Double).
func fmtNum(f float64) string {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !math.IsInf(f, 0) && !math.IsNaN(f) && !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

// kfloat is a float64 that marshals Kayenta-style (see fmtNum); NaN and ±Inf are not valid here.
type kfloat float64

func (f kfloat) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return nil, fmt.Errorf("judge: cannot encode %v in a canary config", float64(f))
	}
	return []byte(fmtNum(float64(f))), nil
}

// MarshalJSON writes the config in Kayenta's shape with every analysis setting explicit, so that
// ParseCanaryConfig reads back the same config.
func (c *CanaryConfig) MarshalJSON() ([]byte, error) {
	type outliers struct {
		Strategy      OutlierStrategy `json:"strategy"`
		OutlierFactor kfloat          `json:"outlierFactor"`
	}
	type effectSize struct {
		Measure          EffectMeasure `json:"measure"`
		AllowedIncrease  kfloat        `json:"allowedIncrease"`
		AllowedDecrease  kfloat        `json:"allowedDecrease"`
		CriticalIncrease kfloat        `json:"criticalIncrease"`
		CriticalDecrease kfloat        `json:"criticalDecrease"`
	}
	type canary struct {
		Direction    Direction   `json:"direction"`
		NaNStrategy  NaNStrategy `json:"nanStrategy"`
		Outliers     outliers    `json:"outliers"`
		Critical     bool        `json:"critical"`
		MustHaveData bool        `json:"mustHaveData"`
		Muted        bool        `json:"muted"`
		EffectSize   effectSize  `json:"effectSize"`
	}
	type metric struct {
		Name                   string            `json:"name"`
		Query                  json.RawMessage   `json:"query,omitempty"`
		Groups                 []string          `json:"groups"`
		ScopeName              string            `json:"scopeName,omitempty"`
		AnalysisConfigurations map[string]canary `json:"analysisConfigurations"`
	}
	type thresholds struct {
		Pass     kfloat `json:"pass"`
		Marginal kfloat `json:"marginal"`
	}
	type classifier struct {
		GroupWeights    map[string]kfloat `json:"groupWeights,omitempty"`
		ScoreThresholds *thresholds       `json:"scoreThresholds,omitempty"`
	}
	type judge struct {
		Name                string         `json:"name"`
		JudgeConfigurations map[string]any `json:"judgeConfigurations"`
	}
	out := struct {
		Name        string            `json:"name,omitempty"`
		Description string            `json:"description,omitempty"`
		Judge       judge             `json:"judge"`
		Metrics     []metric          `json:"metrics"`
		Templates   map[string]string `json:"templates,omitempty"`
		Classifier  classifier        `json:"classifier"`
	}{Name: c.Name, Description: c.Description, Judge: judge{Name: JudgeName, JudgeConfigurations: map[string]any{}},
		Templates: c.Templates}
	for _, m := range c.Metrics {
		a := m.Analysis
		groups := m.Groups
		if groups == nil {
			groups = []string{}
		}
		out.Metrics = append(out.Metrics, metric{Name: m.Name, Query: m.Query, Groups: groups, ScopeName: m.ScopeName,
			AnalysisConfigurations: map[string]canary{"canary": {
				Direction: a.Direction, NaNStrategy: a.NaNStrategy,
				Outliers: outliers{Strategy: a.Outliers, OutlierFactor: kfloat(a.OutlierFactor)},
				Critical: a.Critical, MustHaveData: a.MustHaveData, Muted: a.Muted,
				EffectSize: effectSize{Measure: a.EffectMeasure, AllowedIncrease: kfloat(a.AllowedIncrease),
					AllowedDecrease: kfloat(a.AllowedDecrease), CriticalIncrease: kfloat(a.CriticalIncrease),
					CriticalDecrease: kfloat(a.CriticalDecrease)},
			}}})
	}
	if len(c.Classifier.GroupWeights) > 0 {
		out.Classifier.GroupWeights = map[string]kfloat{}
		for g, w := range c.Classifier.GroupWeights {
			out.Classifier.GroupWeights[g] = kfloat(w)
		}
	}
	if t := c.Classifier.ScoreThresholds; t != nil {
		out.Classifier.ScoreThresholds = &thresholds{Pass: kfloat(t.Pass), Marginal: kfloat(t.Marginal)}
	}
	return json.Marshal(out)
}
