package analysis

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"testing"
)

// jvmReference is testdata/jvm_reference.json, printed by a one-off JVM harness (not shipped) running
// commons-math3 3.6.1 and Kayenta's own BrentSolver on the JVM (provenance inside the file). Unlike the
// R reference it is compared bit for bit: same algorithm, same libraries' arithmetic.
type jvmReference struct {
	Provenance     map[string]string `json:"provenance"`
	NormalQuantile [][2]num          `json:"normal_quantile"`
	Cases          []struct {
		Name     string `json:"name"`
		Conf     float64
		X, Y     []num
		Interval struct {
			Lower, Upper, Estimate *num
			Error                  string
		}
		PercentilesP        []float64 `json:"percentiles_p"`
		PercentilesX        []num     `json:"percentiles_x"`
		MeanX               num       `json:"mean_x"`
		VarianceX           num       `json:"variance_x"`
		PopulationVarianceX num       `json:"population_variance_x"`
		ClesYX              num       `json:"cles_y_x"`
	} `json:"cases"`
}

func loadJVMReference(t *testing.T) jvmReference {
	t.Helper()
	b, err := os.ReadFile("testdata/jvm_reference.json")
	if err != nil {
		t.Fatalf("read JVM reference: %v", err)
	}
	var ref jvmReference
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatalf("parse JVM reference: %v", err)
	}
	if len(ref.Cases) == 0 || len(ref.NormalQuantile) == 0 || ref.Provenance["java"] == "" {
		t.Fatal("JVM reference is empty or has no provenance: it was generated once on the JVM; see its provenance block")
	}
	return ref
}

func TestNormalQuantileAgainstJVM(t *testing.T) {
	t.Parallel()
	ref := loadJVMReference(t)
	for _, pq := range ref.NormalQuantile {
		p, want := float64(pq[0]), float64(pq[1])
		if got := NormalQuantile(p); !sameFloat(got, want) {
			t.Errorf("NormalQuantile(%v) = %v, commons-math %v (%+d ulp)", p, got, want,
				int64(math.Float64bits(got))-int64(math.Float64bits(want)))
		}
	}
	t.Logf("normal quantile: compared %d values with commons-math", len(ref.NormalQuantile))
}

func TestMannWhitneyAgainstJVM(t *testing.T) {
	t.Parallel()
	ref := loadJVMReference(t)
	for _, c := range ref.Cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			x, y := floats(c.X), floats(c.Y)
			got, err := MannWhitney(x, y, c.Conf)
			if c.Interval.Error != "" {
				if !errors.Is(err, ErrAllTied) {
					t.Fatalf("MannWhitney = %+v, %v; Kayenta threw %q", got, err, c.Interval.Error)
				}
				return
			}
			if err != nil {
				t.Fatalf("MannWhitney: %v", err)
			}
			want := Interval{float64(*c.Interval.Lower), float64(*c.Interval.Upper), float64(*c.Interval.Estimate)}
			if !sameFloat(got.Lower, want.Lower) || !sameFloat(got.Upper, want.Upper) || !sameFloat(got.Estimate, want.Estimate) {
				t.Errorf("MannWhitney = %+v, Kayenta on the JVM %+v", got, want)
			}

			pv := Percentiles(x, c.PercentilesP...)
			for i := range pv {
				if !sameFloat(pv[i], float64(c.PercentilesX[i])) {
					t.Errorf("Percentile(%v) = %v, commons-math %v", c.PercentilesP[i], pv[i], float64(c.PercentilesX[i]))
				}
			}
			if got := Mean(x); !sameFloat(got, float64(c.MeanX)) {
				t.Errorf("Mean = %v, commons-math %v", got, float64(c.MeanX))
			}
			s := Summarize(x)
			if want := math.Sqrt(float64(c.VarianceX)); !sameFloat(s.Std, want) {
				t.Errorf("Std = %v, sqrt(commons-math variance) %v", s.Std, want)
			}
			if got := variance(x, Mean(x), false); !sameFloat(got, float64(c.PopulationVarianceX)) {
				t.Errorf("population variance = %v, commons-math %v", got, float64(c.PopulationVarianceX))
			}
			if got := CLES(y, x); !sameFloat(got, float64(c.ClesYX)) {
				t.Errorf("CLES = %v, Kayenta formula on the JVM %v", got, float64(c.ClesYX))
			}
		})
	}
}
