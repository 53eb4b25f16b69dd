package judge

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParseCanaryConfig: no panics; every rejection is a *ConfigError; an accepted config re-marshals
// and re-parses to the same config.
func FuzzParseCanaryConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/examples/*.json")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		cfgWith(`{"direction": "Increase"}`),
		cfgWith(`{"outliers": {"strategy": "remove", "outlierFactor": 0.5}, "effectSize": {"measure": "cles", "allowedIncrease": 0.7}}`),
		cfgWith(`{"critical": true, "mustHaveData": true, "muted": false, "nanStrategy": "replace"}`),
		`{"metrics": [{"name": "a", "groups": ["x", "y"], "query": {"type": "prometheus", "n": 1.5e300}}],
		  "classifier": {"groupWeights": {"x": 3e9, "y": -0.0}, "scoreThresholds": {"pass": 1e-7}}, "templates": {"t": "<&>"}}`,
		`{"metrics": [{"name": "a"}], "judge": {"name": "NetflixACAJudge-v1.0"}}`,
		`[]`, `null`, `{"metrics": [{"name": "\u00e9\ud800"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseCanaryConfig(data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("rejection %v is a %T, want *ConfigError", err, err)
			}
			return
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshal accepted config: %v", err)
		}
		again, err := ParseCanaryConfig(b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("round trip changed the config:\n%#v\n%#v", cfg, again)
		}
	})
}

// FuzzParseMetricSetPairs: no panics; every rejection is a *ConfigError; accepted pairs re-marshal and
// re-parse to the same values (NaN, ±Inf and -0 included).
func FuzzParseMetricSetPairs(f *testing.F) {
	for _, s := range []string{
		`[{"name": "m", "id": "x", "tags": {"zone": "a"}, "values": {"control": [1, 2.5, "NaN"], "experiment": ["Infinity", "-Infinity", -0.0, 1e3]}}]`,
		`[{"name": "m", "values": {"control": [], "experiment": []}, "scopes": {"control": {"stepMillis": 60000}}, "attributes": null}]`,
		`[{"name": "m", "values": {"control": [null], "experiment": []}}]`,
		`[{"name": "m", "values": {"control": [1e400], "experiment": []}}]`,
		`[]`, `{}`, `[null]`, `[{"name": "a", "tags": null, "id": null, "values": {"control": [5e-324], "experiment": [1.7976931348623157e308]}}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pairs, err := ParseMetricSetPairs(data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("rejection %v is a %T, want *ConfigError", err, err)
			}
			return
		}
		assertPairsRoundTrip(t, pairs)
	})
}
