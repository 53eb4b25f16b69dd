package rollout

import (
	"fmt"

	"github.com/canaryctl/canaryctl/analysis/sequential"
)

// lastRoutes is the latest interval's route rows (analysis.routes), nil without any.
func (r Report) lastRoutes() []RouteResult {
	for i := len(r.Steps) - 1; i >= 0; i-- {
		ivs := r.Steps[i].Intervals
		for j := len(ivs) - 1; j >= 0; j-- {
			if len(ivs[j].Routes) > 0 {
				return ivs[j].Routes
			}
		}
	}
	return nil
}

// routeSuite is JUnit's view of the routes: one testcase per route of the latest interval that has
// them, failed when the route failed, skipped when it had too little traffic to judge, passed
// otherwise (an undecided route passes: a route is never failed for lack of data).
func (r Report) routeSuite() (junitSuite, bool) {
	rows := r.lastRoutes()
	if len(rows) == 0 {
		return junitSuite{}, false
	}
	s := junitSuite{Name: "canaryctl " + r.Service + " routes", Time: "0"}
	for _, row := range rows {
		c := junitCase{Name: "route " + row.Route, Classname: s.Name, Time: "0",
			SystemOut: fmt.Sprintf("verdict %s; requests canary %d %s %d; 5xx canary %s%% %s %s%%; alpha %.2g; %s", row.Verdict,
				row.CanaryRequests, r.Control, row.ControlRequests, fmtScore(float64(row.CanaryErrorPercent)), r.Control,
				fmtScore(float64(row.ControlErrorPercent)), row.Alpha, row.Reason)}
		switch {
		case row.Verdict == VerdictFail:
			c.Failure = &junitMessage{Message: row.Reason, Type: "fail", Text: decisionReasons(sequential.Report{Decisions: row.Decisions}, sequential.Fail)}
			s.Fail++
		case row.TooLittleTraffic:
			c.Skipped = &junitMessage{Message: row.Reason}
			s.Skipped++
		}
		s.Cases = append(s.Cases, c)
	}
	s.Tests = len(s.Cases)
	return s, true
}
