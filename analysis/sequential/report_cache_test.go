package sequential

import (
	"reflect"
	"testing"
)

// TestReportCacheMatchesAFreshReport: the Report kept between slots is the one a fresh computation
// gives at every look, across steps, and a caller changing its copy changes no later Report.
func TestReportCacheMatchesAFreshReport(t *testing.T) {
	t.Parallel()
	a, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	c, b := newTraffic(11, 0.02, 5, 0), newTraffic(12, 0.005, 0, 0)
	for look := range 400 {
		if look == 200 {
			a.NewStep()
		}
		a.Observe(Batch{Canary: c.samples(look % 3), Baseline: b.samples(look % 2)})
		got := a.Report()
		if want := a.newReport(); !reflect.DeepEqual(got, want) {
			t.Fatalf("look %d: cached report\n%+v\nfresh\n%+v", look, got, want)
		}
		for i := range got.Decisions { // a caller scribbling over its copy
			got.Decisions[i].Reason = "changed"
			if u := got.Decisions[i].Upper; u != nil {
				*u = -1
			}
		}
		if again, want := a.Report(), a.newReport(); !reflect.DeepEqual(again, want) {
			t.Fatalf("look %d: a changed copy changed the next report:\n%+v\nwant\n%+v", look, again, want)
		}
	}
}
