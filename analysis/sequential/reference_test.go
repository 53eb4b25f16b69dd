package sequential

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

type reference struct {
	Paired []struct {
		Plus, Zero, Minus  int64
		M                  float64
		LogFailE, LogPassE float64
	}
	Bounds []struct {
		Plus, Zero, Minus int64
		Alpha, Beta       float64
		Lower, Upper      float64
	}
	Ratio []struct {
		Batches   [][4]int64
		Tolerance float64
		LogE      float64
	}
}

func loadReference(t *testing.T) reference {
	t.Helper()
	b, err := os.ReadFile("testdata/reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var r reference
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Paired) == 0 || len(r.Bounds) == 0 || len(r.Ratio) == 0 {
		t.Fatal("reference.json has empty sections")
	}
	return r
}

func TestReferenceEValues(t *testing.T) {
	t.Parallel()
	ref := loadReference(t)
	for _, c := range ref.Paired {
		counts := Counts{Plus: c.Plus, Zero: c.Zero, Minus: c.Minus}
		if got := logFailE(counts, c.M); math.Abs(got-c.LogFailE) > 1e-9*max(1, math.Abs(c.LogFailE)) {
			t.Errorf("logFailE(%+v, %v) = %.15g, want %.15g", counts, c.M, got, c.LogFailE)
		}
		if got := logPassE(counts, c.M); math.Abs(got-c.LogPassE) > 1e-9*max(1, math.Abs(c.LogPassE)) {
			t.Errorf("logPassE(%+v, %v) = %.15g, want %.15g", counts, c.M, got, c.LogPassE)
		}
	}
}

func TestReferenceBounds(t *testing.T) {
	t.Parallel()
	for _, c := range loadReference(t).Bounds {
		counts := Counts{Plus: c.Plus, Zero: c.Zero, Minus: c.Minus}
		// 60 bisection steps on [-1, 1] locate the bound to 2e-18; the tolerance covers rounding.
		if got := LowerBound(counts, c.Alpha); math.Abs(got-c.Lower) > 1e-9 {
			t.Errorf("LowerBound(%+v) = %.12g, want %.12g", counts, got, c.Lower)
		}
		if got := UpperBound(counts, c.Beta); math.Abs(got-c.Upper) > 1e-9 {
			t.Errorf("UpperBound(%+v) = %.12g, want %.12g", counts, got, c.Upper)
		}
	}
}

func TestReferenceRatio(t *testing.T) {
	t.Parallel()
	for _, c := range loadReference(t).Ratio {
		rt, err := NewRatioTest(RatioConfig{Alpha: 0.01, Tolerance: c.Tolerance})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range c.Batches {
			rt.Add(b[0], b[1], b[2], b[3])
		}
		if got := math.Log(rt.EValue()); math.Abs(got-c.LogE) > 1e-9*max(1, math.Abs(c.LogE)) {
			t.Errorf("ratio e-value for %v at %v: log %.15g, want %.15g", c.Batches, c.Tolerance, got, c.LogE)
		}
	}
}
