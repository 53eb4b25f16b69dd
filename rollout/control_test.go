package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/fake"
	"github.com/canaryctl/canaryctl/providers/kong"
	"github.com/canaryctl/canaryctl/rollout/deploy"
)

const canaryOnlySpec = `
service: checkout
stable: {addresses: ["http://127.0.0.1:9001"]}
deploy:
  canary: {type: static, addresses: ["http://127.0.0.1:9003"]}
`

const kongGateway = `
gateway:
  type: kong
  kong: {admin: "http://127.0.0.1:8001", service: checkout, mode: %MODE%, greenUpstream: checkout-green, log: {flush: 100ms}}
metrics: {type: kong-log}
`

func kongLines(mode string) string { return strings.ReplaceAll(kongGateway, "%MODE%", mode) }

// TestControlSpec: analysis.control's defaults and its one-line errors, each naming the field and
// the fix.
func TestControlSpec(t *testing.T) {
	t.Parallel()
	baselineDeploy := "  baseline: {type: static, addresses: [\"http://127.0.0.1:9002\"]}\n"
	cases := []struct {
		name        string
		yaml        string
		field, fix  string // the one error expected; "" = valid
		control     string
		defaulted   bool
		mode        string
		splits      []providers.Split
		beforeAfter bool
	}{
		{name: "default is baseline", yaml: minimalSpec + gatewayLine, control: "baseline", mode: ModeSequential,
			splits: []providers.Split{{Canary: 250, Baseline: 250}, {Canary: 1000, Baseline: 1000}, {Canary: 5000, Baseline: 5000}}},
		{name: "stable on the builtin proxy: canary only, at most half", yaml: canaryOnlySpec + gatewayLine + "analysis: {control: stable}\n",
			control: "stable", mode: ModeSequential, splits: []providers.Split{{Canary: 250}, {Canary: 1000}, {Canary: 5000}}},
		{name: "canary-plugin defaults to stable", yaml: canaryOnlySpec + kongLines("canary-plugin"), control: "stable", defaulted: true,
			mode: ModeSequential, splits: []providers.Split{{Canary: 250}, {Canary: 1000}, {Canary: 5000}}},
		{name: "bluegreen defaults to stable, kayenta and before/after", yaml: canaryOnlySpec + kongLines("bluegreen") + "steps: [{weight: 100}]\n",
			control: "stable", defaulted: true, mode: ModeKayenta, splits: []providers.Split{{Canary: 10000}}, beforeAfter: true},
		{name: "unknown control", yaml: minimalSpec + gatewayLine + "analysis: {control: fresh}\n",
			field: "analysis.control", fix: "use baseline (a fresh copy of stable, the default) or stable"},
		{name: "canary-plugin with an explicit baseline", yaml: minimalSpec + kongLines("canary-plugin") + "analysis: {control: baseline}\n",
			field: "analysis.control", fix: "remove analysis.control (it defaults to stable for this mode) or use gateway.kong.mode targets"},
		{name: "bluegreen with an explicit baseline", yaml: minimalSpec + kongLines("bluegreen") + "analysis: {control: baseline}\nsteps: [{weight: 100}]\n",
			field: "analysis.control", fix: "gateway.kong.mode bluegreen has no baseline cohort"},
		{name: "canary-plugin with a baseline deployment", yaml: canaryOnlySpec + baselineDeploy + kongLines("canary-plugin"),
			field: "deploy.baseline", fix: "(the default for gateway.kong.mode canary-plugin); remove deploy.baseline"},
		{name: "stable control with a baseline deployment", yaml: minimalSpec + gatewayLine + "analysis: {control: stable}\n",
			field: "deploy.baseline", fix: "not deployed because analysis.control is stable; remove deploy.baseline"},
		{name: "baseline control without a baseline deployment", yaml: canaryOnlySpec + gatewayLine,
			field: "deploy.baseline.type", fix: "or set analysis.control: stable to deploy no baseline"},
		{name: "bluegreen with gradual steps", yaml: canaryOnlySpec + kongLines("bluegreen") + "steps: [{weight: 10}, {weight: 100}]\n",
			field: "steps", fix: "use steps: [{weight: 100}]"},
		{name: "bluegreen with the default steps", yaml: canaryOnlySpec + kongLines("bluegreen"),
			field: "steps", fix: "switches all traffic at once"},
		{name: "bluegreen with sequential", yaml: canaryOnlySpec + kongLines("bluegreen") + "analysis: {mode: sequential}\nsteps: [{weight: 100}]\n",
			field: "analysis.mode", fix: "use analysis.mode: kayenta (before/after windows)"},
		{name: "bluegreen with a lookback", yaml: canaryOnlySpec + kongLines("bluegreen") + "steps: [{weight: 100, lookback: 3m}]\n",
			field: "steps[0].lookback", fix: "leave lookback out"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSpec(strings.NewReader(tc.yaml))
			if tc.field != "" {
				if err == nil {
					t.Fatalf("no error, want one on %s", tc.field)
				}
				lines := strings.Split(err.Error(), "\n")
				if len(lines) != 1 {
					t.Fatalf("%d problems, want one:\n%v", len(lines), err)
				}
				var se *SpecError
				if !errors.As(err, &se) || se.Field != tc.field || !strings.Contains(se.Msg, tc.fix) {
					t.Fatalf("error %q, want field %s with %q", err, tc.field, tc.fix)
				}
				if ii, ok := err.(interface{ InvalidInput() bool }); !ok || !ii.InvalidInput() {
					t.Fatalf("error %T does not map to exit code 2", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Analysis.Control != tc.control || s.ControlDefaulted() != tc.defaulted || s.Analysis.Mode != tc.mode || s.BeforeAfter() != tc.beforeAfter {
				t.Fatalf("control %q defaulted %v mode %q beforeAfter %v", s.Analysis.Control, s.ControlDefaulted(), s.Analysis.Mode, s.BeforeAfter())
			}
			for i, want := range tc.splits {
				if got := s.SplitFor(i); got != want {
					t.Errorf("step %d split %v, want %v", i, got, want)
				}
			}
			if len(tc.splits) != len(s.Steps) {
				t.Errorf("%d steps, want %d", len(s.Steps), len(tc.splits))
			}
			if note := s.ControlNote(); !strings.HasPrefix(note, tc.control) {
				t.Errorf("control note %q does not start with %s", note, tc.control)
			}
		})
	}
}

// timedLog is a request log that answers by time: requests in [since, until).
type timedLog struct {
	mu   sync.Mutex
	reqs []providers.Request
}

func (l *timedLog) Requests(_ context.Context, since, until time.Time) ([]providers.Request, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []providers.Request
	for _, q := range l.reqs {
		if !q.Time.Before(since) && q.Time.Before(until) {
			out = append(out, q)
		}
	}
	return out, nil
}

// steady adds one request per second and cohort from start for d, with the given latency in ms.
func (l *timedLog) steady(c providers.Cohort, start time.Time, d time.Duration, latency float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for at := start; at.Before(start.Add(d)); at = at.Add(time.Second) {
		l.reqs = append(l.reqs, providers.Request{Time: at, Cohort: c, Status: 200, Latency: ms(latency)})
	}
}

// meanSeries is a series function like proxy.Series for the mean latency: one point per step and
// side (baseline, canary), NaN for a step without requests; ErrNoData without any request.
func meanSeries(reqs []providers.Request, _ providers.Metric, w providers.Window) (providers.Pair, error) {
	n := int(w.End.Sub(w.Start) / w.Step)
	if w.End.Sub(w.Start)%w.Step != 0 {
		n++
	}
	sum := [2][]float64{make([]float64, n), make([]float64, n)}
	cnt := [2][]int{make([]int, n), make([]int, n)}
	seen := false
	for _, q := range reqs {
		side := -1
		switch q.Cohort {
		case providers.Baseline:
			side = 0
		case providers.Canary:
			side = 1
		}
		if side < 0 || q.Time.Before(w.Start) || !q.Time.Before(w.End) {
			continue
		}
		i := int(q.Time.Sub(w.Start) / w.Step)
		sum[side][i] += float64(q.Latency) / float64(time.Millisecond)
		cnt[side][i]++
		seen = true
	}
	if !seen {
		return providers.Pair{}, providers.ErrNoData
	}
	out := [2][]float64{make([]float64, n), make([]float64, n)}
	for s := range out {
		for i := range out[s] {
			out[s][i] = math.NaN()
			if cnt[s][i] > 0 {
				out[s][i] = sum[s][i] / float64(cnt[s][i])
			}
		}
	}
	return providers.Pair{Baseline: out[0], Canary: out[1]}, nil
}

// askingMetrics records the windows each cohort is fetched for.
type askingMetrics struct {
	*RequestMetrics
	mu   sync.Mutex
	asks map[providers.Cohort][]TimeWindow
}

func (a *askingMetrics) CohortSeries(ctx context.Context, m providers.Metric, c providers.Cohort, w providers.Window) ([]float64, error) {
	a.mu.Lock()
	a.asks[c] = append(a.asks[c], TimeWindow{Start: w.Start, End: w.End})
	a.mu.Unlock()
	return a.RequestMetrics.CohortSeries(ctx, m, c, w)
}

// noBaselineSpec: latency only (mean, judged by ratioJudge), one metric.
func noBaselineSpec(t *testing.T, gw GatewaySpec, metrics string, weights ...float64) *Spec {
	t.Helper()
	s := &Spec{
		Service: "checkout",
		Stable:  StableSpec{Addresses: []string{"http://127.0.0.1:18000"}},
		Deploy:  deploy.Config{Canary: deploy.Target{Type: deploy.Static, Addresses: []string{"http://127.0.0.1:18002"}}},
		Gateway: gw,
		Metrics: MetricsSpec{Type: metrics},
		Analysis: AnalysisSpec{Mode: ModeKayenta, Metrics: []MetricSpec{{Name: "latency", Kind: providers.LatencyQuantile, Quantile: 0.5,
			EffectSize: EffectSize{AllowedIncrease: 1.2}}}},
	}
	if gw.Type == "builtin" {
		s.Analysis.Control = ControlStable
	}
	for _, w := range weights {
		s.Steps = append(s.Steps, StepSpec{Weight: w, Duration: 3 * time.Minute, Interval: time.Minute, Warmup: 30 * time.Second})
	}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestControlStableRollout: with analysis.control stable no baseline is deployed, registered or torn
// down, only the canary gets a share, the judged control values are stable's requests, and the
// state, report and progress lines say control stable.
func TestControlStableRollout(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name          string
		canaryLatency float64
		want          Phase
	}{
		{"good canary is promoted", 10, Promoted},
		{"slow canary is rolled back", 30, RolledBack},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := noBaselineSpec(t, GatewaySpec{Type: "builtin", Listen: "127.0.0.1:18080"}, "builtin", 2.5, 10, 100)
			log := &timedLog{}
			log.steady(providers.Stable, t0, time.Hour, 10)
			log.steady(providers.Baseline, t0, time.Hour, 1000) // must never be read: there is no baseline
			log.steady(providers.Canary, t0, time.Hour, tc.canaryLatency)
			rm, err := NewRequestMetrics(RequestMetricsConfig{Log: log, Series: meanSeries, Control: spec.ControlCohort()})
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, spec, func(c *Config) { c.Metrics = rm })
			if got := h.finish(); got != tc.want {
				t.Fatalf("ended %s (%s), want %s", got, h.eng.State().Reason, tc.want)
			}
			for _, call := range h.deployer.Calls() {
				if strings.HasSuffix(call, string(providers.Baseline)) {
					t.Errorf("deployer call %q: no baseline may be deployed or torn down", call)
				}
			}
			if slices.Contains(h.gw.Calls(), "SetUpstreams baseline") {
				t.Errorf("gateway calls %v register a baseline", h.gw.Calls())
			}
			for _, sp := range h.gw.SplitHistory() {
				if sp.Baseline != 0 || sp.Canary > 5000 {
					t.Errorf("split %v: want no baseline share and the canary at most half", sp)
				}
			}
			if want := []providers.Split{{}, {Canary: 250}}; !slices.Equal(h.gw.SplitHistory()[:2], want) {
				t.Errorf("splits %v, want %v first", h.gw.SplitHistory(), want)
			}
			st := h.eng.State()
			if st.Control != ControlStable {
				t.Errorf("state control %q", st.Control)
			}
			judged := 0
			for _, iv := range st.Intervals {
				if _, ok := iv.Cohorts[providers.Stable]; !ok || iv.Baseline != iv.Cohorts[providers.Stable].Requests || iv.Baseline == 0 {
					t.Errorf("interval %d/%d: cohorts %v, control samples %d: want stable's", iv.Step, iv.Index, iv.Cohorts, iv.Baseline)
				}
				for _, m := range iv.Metrics {
					judged++
					if float64(m.BaselineMean) != 10 || float64(m.CanaryMean) != tc.canaryLatency {
						t.Errorf("interval %d/%d: control mean %v canary mean %v, want stable's 10 and %v", iv.Step, iv.Index, m.BaselineMean, m.CanaryMean, tc.canaryLatency)
					}
				}
			}
			if judged == 0 {
				t.Fatal("nothing was judged")
			}
			if !strings.Contains(h.progress.String(), "| samples stable ") || strings.Contains(h.progress.String(), "baseline") {
				t.Errorf("progress lines must name stable as the control:\n%s", h.progress.String())
			}
			var rep map[string]any
			var buf strings.Builder
			if err := NewReport(spec, st).WriteJSON(&buf); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(buf.String()), &rep); err != nil {
				t.Fatal(err)
			}
			if rep["control"] != "stable" || !strings.Contains(rep["controlNote"].(string), "no baseline is deployed") {
				t.Errorf("report control %v note %v", rep["control"], rep["controlNote"])
			}
			// the CI and Spinnaker outputs name the control too
			var ju strings.Builder
			if err := NewReport(spec, st).WriteJUnit(&ju); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(ju.String(), "; samples stable ") || strings.Contains(ju.String(), "samples baseline") {
				t.Errorf("JUnit cases must name stable as the control:\n%s", ju.String())
			}
			if line := NewReport(spec, st).SpinnakerLine(); !strings.Contains(line, `"control":"stable"`) {
				t.Errorf("Spinnaker line lacks the control: %s", line)
			}
			if tc.want == RolledBack && !slices.Contains(h.deployer.Calls(), "Teardown canary") {
				t.Errorf("rollback did not tear the canary down: %v", h.deployer.Calls())
			}
		})
	}
}

// TestBeforeAfter: gateway.kong.mode bluegreen. Stable is observed for one interval with all traffic
// on it; then the switch; every judged window of the canary has the interval's length, starts after
// the switch and is compared with that window of stable.
func TestBeforeAfter(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name          string
		canaryLatency float64
		want          Phase
	}{
		{"good green is promoted", 10, Promoted},
		{"slow green is switched back", 30, RolledBack},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gw := GatewaySpec{Type: "kong", Sections: map[string]any{"kong": &kong.Spec{Admin: "http://127.0.0.1:8001", Service: "checkout", Mode: kong.ModeBlueGreen, GreenUpstream: "checkout-green"}}}
			spec := noBaselineSpec(t, gw, "kong-log", 100)
			if !spec.BeforeAfter() || spec.Analysis.Control != ControlStable {
				t.Fatalf("spec: beforeAfter %v control %s", spec.BeforeAfter(), spec.Analysis.Control)
			}
			log := &timedLog{}
			// Stable serves 10 ms; after the switch nothing reaches it. A "stable" that got slower
			// after the switch would be read only by a wrong window: give it 1000 ms there.
			rm, err := NewRequestMetrics(RequestMetricsConfig{Log: log, Series: meanSeries, Control: spec.ControlCohort()})
			if err != nil {
				t.Fatal(err)
			}
			am := &askingMetrics{RequestMetrics: rm, asks: map[providers.Cohort][]TimeWindow{}}
			h := newHarness(t, spec, func(c *Config) { c.Metrics = am })
			h.until(Progressing)
			h.tick(t.Context()) // registers stable and the canary, starts observing stable
			st := h.eng.State()
			if st.Phase != Progressing || st.ControlWindow == nil || h.gw.Current() != (providers.Split{}) {
				t.Fatalf("phase %s control window %v split %v: want stable observed first, split 0", st.Phase, st.ControlWindow, h.gw.Current())
			}
			cw := *st.ControlWindow
			if cw.End.Sub(cw.Start) != time.Minute {
				t.Fatalf("control window %v, want one interval", cw)
			}
			log.steady(providers.Stable, cw.Start, time.Minute, 10)
			log.steady(providers.Stable, cw.End, time.Hour, 1000)
			log.steady(providers.Canary, cw.End, time.Hour, tc.canaryLatency)
			if got := h.finish(); got != tc.want {
				t.Fatalf("ended %s (%s), want %s", got, h.eng.State().Reason, tc.want)
			}
			// (the fake gateway records its Promote/Rollback as a third split)
			if want := []providers.Split{{}, {Canary: 10000}}; !slices.Equal(h.gw.SplitHistory()[:2], want) {
				t.Errorf("splits %v, want %v first: all or nothing", h.gw.SplitHistory(), want)
			}
			st = h.eng.State()
			if len(am.asks[providers.Stable]) == 0 || len(am.asks[providers.Canary]) == 0 {
				t.Fatalf("fetches %v", am.asks)
			}
			for _, w := range am.asks[providers.Stable] {
				if w != cw {
					t.Errorf("stable fetched over %v, want the control window %v", w, cw)
				}
			}
			for _, w := range am.asks[providers.Canary] {
				if w.End.Sub(w.Start) != time.Minute || w.Start.Before(st.StepStartedAt.Add(spec.Steps[0].Warmup)) {
					t.Errorf("canary fetched over %v: want one interval after the switch (%s) and its warm-up", w, st.StepStartedAt)
				}
			}
			for _, iv := range st.Intervals {
				if iv.ControlWindow == nil || *iv.ControlWindow != cw {
					t.Errorf("interval %d: control window %v, want %v", iv.Index, iv.ControlWindow, cw)
				}
				for _, m := range iv.Metrics {
					if float64(m.BaselineMean) != 10 {
						t.Errorf("interval %d: control mean %v, want stable's 10 from before the switch", iv.Index, m.BaselineMean)
					}
				}
			}
			rep := NewReport(spec, st)
			if rep.Control != ControlStable || rep.ControlWindow == nil || !strings.Contains(rep.ControlNote, "before/after") {
				t.Errorf("report control %q window %v note %q", rep.Control, rep.ControlWindow, rep.ControlNote)
			}
		})
	}
}

// TestBeforeAfterRestartObservesAgain: a before/after step restarted after a pause (and a resumed
// run) switches back to blue and observes a new control window before switching again.
func TestBeforeAfterRestartObservesAgain(t *testing.T) {
	t.Parallel()
	gw := GatewaySpec{Type: "kong", Sections: map[string]any{"kong": &kong.Spec{Admin: "http://127.0.0.1:8001", Service: "checkout", Mode: kong.ModeBlueGreen, GreenUpstream: "checkout-green"}}}
	spec := noBaselineSpec(t, gw, "kong-log", 100)
	log := &timedLog{}
	log.steady(providers.Stable, t0, 2*time.Hour, 10)
	log.steady(providers.Canary, t0, 2*time.Hour, 10)
	rm, err := NewRequestMetrics(RequestMetricsConfig{Log: log, Series: meanSeries, Control: spec.ControlCohort()})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, spec, func(c *Config) { c.Metrics = rm })
	h.until(Analyzing)
	first := *h.eng.State().ControlWindow
	h.post(ActionPause)
	h.until(Paused)
	h.clock.Advance(10 * time.Minute)
	h.post(ActionResume)
	h.until(Progressing)
	h.tick(t.Context())
	st := h.eng.State()
	if h.gw.Current() != (providers.Split{}) || st.ControlWindow == nil || !st.ControlWindow.Start.After(first.End) {
		t.Fatalf("after resume: split %v, control window %v (first %v): want blue again and a new window", h.gw.Current(), st.ControlWindow, first)
	}
	second := *st.ControlWindow
	// a crash and run --resume: a new process observes again
	h.until(Analyzing)
	h.eng.Close()
	h.open()
	if err := h.eng.Resume(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.until(Analyzing)
	third := *h.eng.State().ControlWindow
	if third.Start.Before(second.End) || third == second {
		t.Fatalf("after run --resume the control window is %v, want one after %v", third, second)
	}
	if got := h.finish(); got != Promoted {
		t.Fatalf("ended %s: %s", got, h.eng.State().Reason)
	}
	want := []providers.Split{{}, {Canary: 10000}, {}, {Canary: 10000}, {}, {Canary: 10000}}
	if hist := h.gw.SplitHistory(); len(hist) < len(want) || !slices.Equal(hist[:len(want)], want) {
		t.Errorf("splits %v, want %v first: blue before every control window", hist, want)
	}
}

// TestBeforeAfterNeedsCohortSeries: a metrics source that can only fetch both cohorts over one
// window cannot judge before/after; the engine refuses it before anything is deployed.
func TestBeforeAfterNeedsCohortSeries(t *testing.T) {
	t.Parallel()
	gw := GatewaySpec{Type: "kong", Sections: map[string]any{"kong": &kong.Spec{Admin: "http://127.0.0.1:8001", Service: "checkout", Mode: kong.ModeBlueGreen, GreenUpstream: "g"}}}
	spec := noBaselineSpec(t, gw, "kong-log", 100)
	store, err := OpenStore(StoreConfig{Root: t.TempDir(), Service: spec.Service})
	if err != nil {
		t.Fatal(err)
	}
	rm, _ := NewRequestMetrics(RequestMetricsConfig{Log: &timedLog{}, Series: meanSeries}) // baseline control
	for name, m := range map[string]Metrics{"pair only": pairOnly{}, "control baseline": rm} {
		_, err := New(Config{Spec: spec, Gateway: fakeGW{}, Metrics: m, Deployer: fakeDep{}, Judge: JudgeFunc(ratioJudge), Store: store})
		if err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// TestBatchOfControl: the sequential analyzer's control side is stable's requests with a stable
// control (the guard's separate stable count is then empty); baseline's otherwise.
func TestBatchOfControl(t *testing.T) {
	t.Parallel()
	reqs := []providers.Request{
		{Cohort: providers.Stable, Status: 500, Latency: ms(1)},
		{Cohort: providers.Stable, Status: 200, Latency: ms(2)},
		{Cohort: providers.Baseline, Status: 200, Latency: ms(3)},
		{Cohort: providers.Canary, Status: 200, Latency: ms(4)},
		{Cohort: providers.Stable, Status: 200, Latency: ms(5), ByRule: true},
	}
	cases := []struct {
		name                      string
		control                   providers.Cohort
		control0, canary, stableN int
		firstControlMS            float64
		stableErrors              int
	}{
		{"baseline control", providers.Baseline, 1, 1, 2, 3, 1},
		{"stable control", providers.Stable, 2, 1, 0, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := batchOf(reqs, tc.control)
			if len(b.Baseline) != tc.control0 || len(b.Canary) != tc.canary || b.StableRequests != int64(tc.stableN) || b.StableErrors != int64(tc.stableErrors) ||
				b.Baseline[0].LatencyMS != tc.firstControlMS {
				t.Errorf("batch %+v", b)
			}
		})
	}
}

// TestSequentialStableControl: mode sequential against stable (no baseline): a good canary passes
// every step, one with 10% 5xx is rolled back within seconds, and the sentences name stable.
func TestSequentialStableControl(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		rps       float64
		canaryErr float64
		want      Phase
	}{
		{"good canary passes every step", 4000, 0.005, Promoted},
		{"10% 5xx rolled back", 200, 0.10, RolledBack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := testSpec()
			spec.Deploy.Baseline = deploy.Target{}
			spec.Analysis.Mode, spec.Analysis.Control = "", ControlStable
			spec.SetDefaults()
			if err := spec.Validate(); err != nil || spec.Analysis.Mode != ModeSequential {
				t.Fatalf("spec: %v, mode %s", err, spec.Analysis.Mode)
			}
			gw := fake.NewGateway()
			log := newSynthLog(gw, tc.rps, tc.canaryErr, 5)
			h := newHarness(t, spec, func(c *Config) { c.Requests = log; c.Gateway = gw })
			st := h.runUntil(20000, terminal)
			if st.Phase != tc.want {
				t.Fatalf("phase %s: %s", st.Phase, st.Reason)
			}
			last := st.Intervals[len(st.Intervals)-1]
			if last.Control != ControlStable || last.Cohorts[providers.Stable].Requests == 0 || last.Baseline <= last.Canary {
				t.Errorf("last interval: control %q, cohorts %v, requests stable %d canary %d: want stable's (many more)", last.Control, last.Cohorts, last.Baseline, last.Canary)
			}
			if strings.Contains(h.progress.String(), "baseline") || !strings.Contains(h.progress.String(), "| requests this step stable ") {
				t.Errorf("progress lines must name stable, not baseline:\n%s", h.progress.String())
			}
			if tc.want == RolledBack {
				if took := last.At.Sub(last.Start); took > 30*time.Second || !strings.Contains(st.Reason, "vs stable") {
					t.Errorf("rolled back after %s: %s", took, st.Reason)
				}
			}
		})
	}
}

type pairOnly struct{}

func (pairOnly) Pair(context.Context, providers.Metric, providers.Window) (providers.Pair, error) {
	return providers.Pair{}, nil
}

type fakeGW struct{ Gateway }
type fakeDep struct{ Deployer }
