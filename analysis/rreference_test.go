package analysis

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// rReference is testdata/r_reference.json, produced once by testdata/gen_reference.R (R 4.2.2,
// provenance inside the file).
type rReference struct {
	Provenance map[string]string `json:"provenance"`
	Cases      []struct {
		Name       string `json:"name"`
		X          []num  `json:"x"`
		Y          []num  `json:"y"`
		WilcoxTest struct {
			ConfInt  []num `json:"conf_int"`
			PValue   num   `json:"p_value"`
			Estimate num   `json:"estimate"`
		} `json:"wilcox_test"`
		KayentaEmulation struct {
			ConfInt  []num `json:"conf_int"`
			Estimate num   `json:"estimate"`
		} `json:"kayenta_emulation"`
	} `json:"cases"`
}

// Tolerances against R. The interval uses qnorm, which is one ulp away from commons-math's quantile
// that Kayenta (and this package) use, so the bounds agree to ~1e-11 rather than bit for bit; 1e-9
// relative leaves room without hiding a different root-finder path (which moves a bound by ~1e-5 or
// more). The estimate needs no quantile: it must equal the R emulation of Kayenta exactly. The p-value
// goes through pnorm (R: Cody's algorithm, here math.Erfc), hence a relative tolerance.
const (
	rBoundRelTol  = 1e-9
	rPValueRelTol = 1e-9
)

func TestAgainstR(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/r_reference.json")
	if err != nil {
		t.Fatalf("read R reference: %v", err)
	}
	var ref rReference
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatalf("parse R reference: %v", err)
	}
	if len(ref.Cases) < 15 || ref.Provenance["r_version"] == "" {
		t.Fatalf("R reference has %d cases and provenance %v: regenerate it with gen_reference.R", len(ref.Cases), ref.Provenance)
	}
	for _, c := range ref.Cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			x, y := floats(c.X), floats(c.Y)
			got, err := MannWhitney(x, y, 0.98)
			if err != nil {
				t.Fatalf("MannWhitney: %v", err)
			}
			wantLo, wantHi := float64(c.WilcoxTest.ConfInt[0]), float64(c.WilcoxTest.ConfInt[1])
			if !closeRel(got.Lower, wantLo, rBoundRelTol) || !closeRel(got.Upper, wantHi, rBoundRelTol) {
				t.Errorf("interval [%v, %v], R conf.int [%v, %v]", got.Lower, got.Upper, wantLo, wantHi)
			}
			// R's own conf.int and the emulation's are the same computation; keep the data honest.
			if !sameFloat(wantLo, float64(c.KayentaEmulation.ConfInt[0])) || !sameFloat(wantHi, float64(c.KayentaEmulation.ConfInt[1])) {
				t.Errorf("reference file inconsistent: wilcox.test %v vs emulation %v", c.WilcoxTest.ConfInt, c.KayentaEmulation.ConfInt)
			}
			if want := float64(c.KayentaEmulation.Estimate); !sameFloat(got.Estimate, want) {
				t.Errorf("estimate %v, R kayenta_emulation %v (R's uncorrected estimate: %v)", got.Estimate, want, float64(c.WilcoxTest.Estimate))
			}
			p, err := MannWhitneyPValue(x, y)
			if err != nil {
				t.Fatalf("MannWhitneyPValue: %v", err)
			}
			if want := float64(c.WilcoxTest.PValue); !closeRel(p, want, rPValueRelTol) {
				t.Errorf("p-value %v, R %v", p, want)
			}
			t.Logf("bounds rel. diff %.2g %.2g, p rel. diff %.2g", relDiff(got.Lower, wantLo), relDiff(got.Upper, wantHi),
				relDiff(p, float64(c.WilcoxTest.PValue)))
		})
	}
}

func relDiff(a, b float64) float64 {
	if a == b {
		return 0
	}
	return math.Abs(a-b) / math.Max(math.Abs(a), math.Abs(b))
}

// TestAgainstRLarge compares the 100k vs 100k benchmark samples with R's wilcox.test on the same
// doubles (written with -benchdata and timed by testdata/bench_wilcox.R, R 4.2.2, 2026-11-22; the R
// output is recorded in testdata/BENCHMARKS.md).
func TestAgainstRLarge(t *testing.T) {
	t.Parallel()
	x, y := benchSamples(100_000)
	// Fingerprint of the samples R saw; if math/rand/v2's stream ever changes, re-run the R script.
	var sx, sy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
	}
	if sx != 2323904.822999978 || sy != 2274684.1060000071 {
		t.Fatalf("benchmark samples changed (sums %.17g, %.17g): regenerate the R numbers with testdata/bench_wilcox.R", sx, sy)
	}
	const rLower, rUpper, rP = 0.38203732951577657, 0.58295342187659438, 4.6073256275445337e-29
	got, err := MannWhitney(x, y, 0.98)
	if err != nil {
		t.Fatal(err)
	}
	if !closeRel(got.Lower, rLower, rBoundRelTol) || !closeRel(got.Upper, rUpper, rBoundRelTol) {
		t.Errorf("interval [%v, %v], R [%v, %v]", got.Lower, got.Upper, rLower, rUpper)
	}
	p, err := MannWhitneyPValue(x, y)
	if err != nil || !closeRel(p, rP, rPValueRelTol) {
		t.Errorf("p-value %v (%v), R %v", p, err, rP)
	}
}
