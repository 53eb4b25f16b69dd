package judge

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// cfgWith builds a config with one metric whose analysisConfigurations.canary is canary (raw JSON).
func cfgWith(canary string) string {
	return `{"metrics": [
		{"name": "ok", "analysisConfigurations": {"canary": {}}},
		{"name": "m2", "groups": ["g"], "analysisConfigurations": {"canary": {}}},
		{"name": "bad", "groups": ["g"], "analysisConfigurations": {"canary": ` + canary + `}}]}`
}

const canaryPath = "metrics[2].analysisConfigurations.canary"

func TestParseCanaryConfigRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		config   string
		path     string   // ConfigError.Path
		contains []string // in the message, besides the path
	}{
		{"string-for-boolean", cfgWith(`{"critical": "true"}`), canaryPath + ".critical",
			[]string{`"true" (a string)`, "true or false without quotes"}},
		{"number-for-boolean", cfgWith(`{"mustHaveData": 1}`), canaryPath + ".mustHaveData", []string{"1 (a number)", "true or false"}},
		{"null-boolean", cfgWith(`{"muted": null}`), canaryPath + ".muted", []string{"got null", "true or false"}},
		{"wrong-case-direction", cfgWith(`{"direction": "Increase"}`), canaryPath + ".direction",
			[]string{`"Increase"`, `"increase", "decrease", "either"`, "case-sensitive"}},
		{"unknown-direction", cfgWith(`{"direction": "up"}`), canaryPath + ".direction", []string{`"up"`, `"increase"`}},
		{"null-direction", cfgWith(`{"direction": null}`), canaryPath + ".direction", []string{"got null", `"either"`}},
		{"unknown-nan-strategy", cfgWith(`{"nanStrategy": "drop"}`), canaryPath + ".nanStrategy", []string{`"drop"`, `"replace"`}},
		{"unknown-outlier-strategy", cfgWith(`{"outliers": {"strategy": "trim"}}`), canaryPath + ".outliers.strategy",
			[]string{`"trim"`, `"none", "keep", "remove"`}},
		{"unknown-effect-measure", cfgWith(`{"effectSize": {"measure": "CLES"}}`), canaryPath + ".effectSize.measure",
			[]string{`"CLES"`, `"meanRatio", "cles"`}},
		{"list-instead-of-object", cfgWith(`[{"direction": "increase"}]`), canaryPath,
			[]string{"a list", "want an object"}},
		{"list-for-outliers", cfgWith(`{"outliers": [{"strategy": "remove"}]}`), canaryPath + ".outliers", []string{"a list", "want an object"}},
		{"null-canary", cfgWith(`null`), canaryPath, []string{"got null", "want an object"}},
		{"outlier-factor-zero", cfgWith(`{"outliers": {"strategy": "remove", "outlierFactor": 0}}`), canaryPath + ".outliers.outlierFactor",
			[]string{"got 0.0", "> 0"}},
		{"outlier-factor-negative", cfgWith(`{"outliers": {"outlierFactor": -1.5}}`), canaryPath + ".outliers.outlierFactor",
			[]string{"got -1.5", "> 0"}},
		{"outlier-factor-string", cfgWith(`{"outliers": {"outlierFactor": "3"}}`), canaryPath + ".outliers.outlierFactor",
			[]string{`"3" (a string)`, "a number > 0"}},
		{"integer-too-large", cfgWith(`{"effectSize": {"allowedIncrease": 3000000000}}`), canaryPath + ".effectSize.allowedIncrease",
			[]string{"3000000000", "too large", "3000000000.0"}},
		{"float-out-of-range", cfgWith(`{"effectSize": {"allowedDecrease": 1e999}}`), canaryPath + ".effectSize.allowedDecrease",
			[]string{"1e999", "out of range"}},
		{"null-number", cfgWith(`{"effectSize": {"criticalIncrease": null}}`), canaryPath + ".effectSize.criticalIncrease",
			[]string{"got null", "a number"}},
		{"unknown-key-typo", cfgWith(`{"criticial": true}`), canaryPath + ".criticial", []string{"unknown key", "critical"}},
		{"unknown-key-case", cfgWith(`{"Direction": "increase"}`), canaryPath + ".Direction", []string{`did you mean "direction"`}},
		{"unknown-effect-key", cfgWith(`{"effectSize": {"allowedIncrase": 1.2}}`), canaryPath + ".effectSize.allowedIncrase",
			[]string{"unknown key", "allowedIncrease"}},
		{"invalid-json", `{"metrics": [`, "", []string{"invalid JSON", "line 1"}},
		{"empty-document", ``, "", []string{"empty"}},
		{"trailing-data", `{"metrics": [{"name": "a"}]} {}`, "", []string{"unexpected data after"}},
		{"root-list", `[{"name": "a"}]`, "", []string{"a list", "want an object"}},
		{"missing-metrics", `{"name": "x"}`, "metrics", []string{"missing"}},
		{"metrics-object", `{"metrics": {"name": "a"}}`, "metrics", []string{"an object", "want a list"}},
		{"no-metrics", `{"metrics": []}`, "metrics", []string{"at least one metric"}},
		{"metric-without-name", `{"metrics": [{"groups": ["g"]}]}`, "metrics[0].name", []string{"missing"}},
		{"metric-empty-name", `{"metrics": [{"name": " "}]}`, "metrics[0].name", []string{"empty"}},
		{"metric-null-name", `{"metrics": [{"name": null}]}`, "metrics[0].name", []string{"got null"}},
		{"duplicate-metric", `{"metrics": [{"name": "a"}, {"name": "a"}]}`, "metrics[1].name", []string{"metrics[0]", "unique"}},
		{"group-not-string", `{"metrics": [{"name": "a", "groups": ["g", 7]}]}`, "metrics[0].groups[1]", []string{"7 (a number)"}},
		{"groups-string", `{"metrics": [{"name": "a", "groups": "g"}]}`, "metrics[0].groups", []string{`"g" (a string)`, "want a list"}},
		{"query-string", `{"metrics": [{"name": "a", "query": "up"}]}`, "metrics[0].query", []string{"want an object"}},
		{"analysis-list", `{"metrics": [{"name": "a", "analysisConfigurations": []}]}`, "metrics[0].analysisConfigurations", []string{"a list"}},
		{"weight-string", `{"metrics": [{"name": "a"}], "classifier": {"groupWeights": {"g": "50"}}}`, "classifier.groupWeights.g",
			[]string{`"50" (a string)`, "a number"}},
		{"weight-out-of-range", `{"metrics": [{"name": "a"}], "classifier": {"groupWeights": {"g": -1e309}}}`, "classifier.groupWeights.g",
			[]string{"out of range"}},
		{"threshold-bool", `{"metrics": [{"name": "a"}], "classifier": {"scoreThresholds": {"pass": true}}}`, "classifier.scoreThresholds.pass",
			[]string{"true (a boolean)"}},
		{"template-not-string", `{"metrics": [{"name": "a"}], "templates": {"t": 1}}`, "templates.t", []string{"a string"}},
		{"other-judge", `{"metrics": [{"name": "a"}], "judge": {"name": "dredd-v1.0"}}`, "judge.name",
			[]string{`"dredd-v1.0"`, JudgeName}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ParseCanaryConfig([]byte(tc.config))
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is a %T, want *ConfigError", err, err)
			}
			if !ce.InvalidInput() {
				t.Error("InvalidInput() = false")
			}
			if ce.Path != tc.path {
				t.Errorf("path %q, want %q (error: %v)", ce.Path, tc.path, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "canary config: "+tc.path) {
				t.Errorf("message %q does not start with the path", msg)
			}
			for _, s := range tc.contains {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q lacks %q", msg, s)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message has several lines: %q", msg)
			}
		})
	}
}

func TestParseCanaryConfigDefaults(t *testing.T) {
	t.Parallel()
	meanRatioDefaults := DefaultAnalysis()
	clesDefaults := DefaultAnalysis()
	clesDefaults.EffectMeasure = CLES
	clesDefaults.AllowedIncrease, clesDefaults.AllowedDecrease, clesDefaults.CriticalIncrease, clesDefaults.CriticalDecrease = 0.5, 0.5, 0.5, 0.5
	tests := []struct {
		name   string
		metric string
		want   MetricAnalysis
	}{
		{"no-analysis", `{"name": "m"}`, meanRatioDefaults},
		{"no-canary", `{"name": "m", "analysisConfigurations": {"other-judge": {"x": 1}}}`, meanRatioDefaults},
		{"empty-canary", `{"name": "m", "analysisConfigurations": {"canary": {}}}`, meanRatioDefaults},
		{"cles-gates-default-to-half", `{"name": "m", "analysisConfigurations": {"canary": {"effectSize": {"measure": "cles"}}}}`, clesDefaults},
		{"nan-none-is-remove", `{"name": "m", "analysisConfigurations": {"canary": {"nanStrategy": "none"}}}`, meanRatioDefaults},
		{"everything", `{"name": "m", "analysisConfigurations": {"canary": {"direction": "increase", "nanStrategy": "replace",
			"outliers": {"strategy": "remove", "outlierFactor": 1.5}, "critical": true, "mustHaveData": true, "muted": true,
			"effectSize": {"measure": "meanRatio", "allowedIncrease": 1.1, "allowedDecrease": 0.9, "criticalIncrease": 2, "criticalDecrease": 0.5}}}}`,
			MetricAnalysis{Direction: Increase, NaNStrategy: NaNReplace, Outliers: OutliersRemove, OutlierFactor: 1.5,
				Critical: true, MustHaveData: true, Muted: true, EffectMeasure: MeanRatio,
				AllowedIncrease: 1.1, AllowedDecrease: 0.9, CriticalIncrease: 2, CriticalDecrease: 0.5}},
		{"integer-gate-is-double", `{"name": "m", "analysisConfigurations": {"canary": {"effectSize": {"allowedIncrease": 2147483647}}}}`,
			func() MetricAnalysis { a := DefaultAnalysis(); a.AllowedIncrease = 2147483647; return a }()},
		{"large-decimal-is-double", `{"name": "m", "analysisConfigurations": {"canary": {"effectSize": {"allowedIncrease": 3000000000.0}}}}`,
			func() MetricAnalysis { a := DefaultAnalysis(); a.AllowedIncrease = 3e9; return a }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ParseCanaryConfig([]byte(`{"metrics": [` + tc.metric + `]}`))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Metrics[0].Analysis; got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if cfg.Metrics[0].Groups == nil {
				t.Error("groups is nil, want empty")
			}
		})
	}
}

// TestParseRealKayentaConfigs: Kayenta's own configs (testdata/examples, with provenance) are accepted,
// including the keys the judge ignores, and mean what they mean to Kayenta.
func TestParseRealKayentaConfigs(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/examples/*.json")
	if len(files) < 2 {
		t.Fatalf("example configs missing: %v", files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := ParseCanaryConfig(b)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Classifier.GroupWeights["pod-group"] != 100 || cfg.Templates["standard-template"] == "" {
				t.Errorf("classifier/templates not read: %+v %+v", cfg.Classifier, cfg.Templates)
			}
			if th := cfg.Classifier.ScoreThresholds; th == nil || *th != (Thresholds{Pass: 75, Marginal: 50}) {
				t.Errorf("scoreThresholds %+v", th)
			}
			for _, m := range cfg.Metrics {
				if !m.Analysis.Critical || m.Analysis.Direction != Increase || m.ScopeName != "default" ||
					!reflect.DeepEqual(m.Groups, []string{"pod-group"}) {
					t.Errorf("metric %q: %+v", m.Name, m)
				}
				var q struct {
					Type, MetricName, CustomFilterTemplate string
				}
				if err := json.Unmarshal(m.Query, &q); err != nil || q.Type != "prometheus" || q.MetricName == "" ||
					q.CustomFilterTemplate != "standard-template" {
					t.Errorf("metric %q: query %s (%v)", m.Name, m.Query, err)
				}
			}
			if strings.Contains(f, "muted") {
				if !cfg.Metrics[0].Analysis.Muted || cfg.Metrics[1].Analysis.Muted {
					t.Errorf("muted flags: %+v", cfg.Metrics)
				}
			}
			assertRoundTrip(t, cfg)
		})
	}
}

// TestParseCanaryConfigIgnoresKayentaKeys: legitimate Kayenta keys the judge does not use are accepted.
func TestParseCanaryConfigIgnoresKayentaKeys(t *testing.T) {
	t.Parallel()
	cfg, err := ParseCanaryConfig([]byte(`{"id": "abc", "name": "n", "applications": ["app"], "createdTimestamp": 1712345678901,
		"updatedTimestamp": 1712345678901, "createdTimestampIso": "2024-04-05T19:34:38.901Z", "configVersion": "1",
		"judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {"x": 1}},
		"metrics": [{"name": "m", "scopeName": "default", "query": {"type": "prometheus", "metricName": "up", "labelBindings": []},
			"analysisConfigurations": {"canary": {"direction": "decrease"}, "anotherJudge": [1, 2]}}],
		"classifier": {"groupWeights": {}}, "somethingNew": {"nested": [null]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "n" || cfg.Metrics[0].Analysis.Direction != Decrease || cfg.Classifier.GroupWeights != nil {
		t.Errorf("%+v", cfg)
	}
	// Group weights and score thresholds are Java Doubles in Kayenta: large integers are fine there.
	cfg, err = ParseCanaryConfig([]byte(`{"metrics": [{"name": "m"}], "classifier": {"groupWeights": {"g": 3000000000},
		"scoreThresholds": {"pass": 95}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Classifier.GroupWeights["g"] != 3e9 || *cfg.Classifier.ScoreThresholds != (Thresholds{Pass: 95}) {
		t.Errorf("%+v", cfg.Classifier)
	}
}

func assertRoundTrip(t *testing.T, cfg *CanaryConfig) {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	again, err := ParseCanaryConfig(b)
	if err != nil {
		t.Fatalf("re-parse of %s: %v", b, err)
	}
	if !reflect.DeepEqual(cfg, again) {
		t.Fatalf("round trip changed the config:\n%+v\n%+v\n(json %s)", cfg, again, b)
	}
}
