package judge

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestDeckKeepJudgesLikeKayenta replays every deterministic classifier vector of Kayenta's own suite
// (testdata/kayenta, the vectors of /work/shared/kayenta/vectors) through a canary config as
// Spinnaker's editor (Deck) writes it — outliers.strategy "keep" — parsed by ParseCanaryConfig and
// preprocessed by the judge's own preprocess: the classification and criticality must be
// Kayenta's. Kayenta removes outliers only for "remove" (NetflixACAJudge), so its results on these
// samples are the results with every point kept. The same configs with "remove" are judged too, to
// count the vectors on which a "keep" read as "remove" would have judged differently.
func TestDeckKeepJudgesLikeKayenta(t *testing.T) {
	t.Parallel()
	replayed, wouldDiffer := 0, 0
	for _, v := range loadVectors(t) {
		if v.Kind != "classifier" || isRandomized(v.Expected.Kayenta) {
			continue
		}
		var c classifierVectorConfig
		mustUnmarshalConfig(t, v, &c)
		canary, baseline := nums(v.Canary), nums(v.Baseline)
		if slices.ContainsFunc(append(slices.Clone(canary), baseline...), func(x float64) bool { return math.IsNaN(x) || math.IsInf(x, 0) }) {
			continue // the suite's NaN cases test the classifier on data the judge has already cleaned
		}
		nan := "remove"
		if c.NaNStrategy == "replace" {
			nan = "replace"
		}
		judgeAs := func(strategy string) (classification, error) {
			deck := fmt.Sprintf(`{"name": "deck", "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
  "metrics": [{"name": %q, "groups": ["g"], "scopeName": "default", "analysisConfigurations": {"canary": {
    "direction": %q, "nanStrategy": %q, "critical": %t, "mustHaveData": %t,
    "effectSize": {"measure": %q, "allowedDecrease": %v, "allowedIncrease": %v, "criticalDecrease": %v, "criticalIncrease": %v},
    "outliers": {"strategy": %q, "outlierFactor": 3.0}}}}],
  "classifier": {"groupWeights": {"g": 100}, "scoreThresholds": {"marginal": 50, "pass": 75}}}`,
				c.MetricName, c.Direction, nan, c.IsCriticalMetric, c.IsDataRequired, c.EffectSizeMeasure,
				c.EffectSizeThresh[0], c.EffectSizeThresh[1], c.CriticalThresholds[0], c.CriticalThresholds[1], strategy)
			cfg, err := ParseCanaryConfig([]byte(deck))
			if err != nil {
				t.Fatalf("%s: a Deck config with strategy %q does not load: %v", v.Name, strategy, err)
			}
			a := cfg.Metrics[0].Analysis
			exp, err := preprocess(canary, a)
			if err != nil {
				return classification{}, err
			}
			ctl, err := preprocess(baseline, a)
			if err != nil {
				return classification{}, err
			}
			p := classifierParams{name: c.MetricName, tolerance: c.Tolerance, confLevel: c.ConfLevel, analysis: a,
				canaryLabel: "canary", baselineLabel: "baseline"}
			return classify(p, exp, ctl, rand.New(rand.NewPCG(1, 42)))
		}
		t.Run(v.Name, func(t *testing.T) {
			got, err := judgeAs("keep")
			var want string
			_ = json.Unmarshal(v.Expected.Kayenta["classification"], &want)
			var wantCrit bool
			_ = json.Unmarshal(v.Expected.Kayenta["critical"], &wantCrit)
			if err != nil {
				t.Fatalf("keep: %v; Kayenta: %s", err, want)
			}
			if string(got.label) != want || got.critical != wantCrit {
				t.Fatalf("keep: %s (critical %t), Kayenta: %s (critical %t)", got.label, got.critical, want, wantCrit)
			}
		})
		replayed++
		if removed, err := judgeAs("remove"); err != nil || removed.label != Classification(mustString(v.Expected.Kayenta["classification"])) {
			wouldDiffer++
		}
	}
	t.Logf("Deck \"keep\": %d classifier vectors of Kayenta's suite judged as Kayenta does; read as \"remove\", %d of them would not be", replayed, wouldDiffer)
	if replayed < 20 {
		t.Fatalf("only %d vectors replayed: the vector files are missing or changed", replayed)
	}
}

func mustString(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}
