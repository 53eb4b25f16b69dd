package rollout

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

const minimalSpec = `
service: checkout
stable: {addresses: ["http://127.0.0.1:9001"]}
deploy:
  baseline: {type: static, addresses: ["http://127.0.0.1:9002"]}
  canary: {type: static, addresses: ["http://127.0.0.1:9003"]}
`

const gatewayLine = "gateway: {listen: \"127.0.0.1:8080\"}\n"

func TestParseSpecDefaults(t *testing.T) {
	t.Parallel()
	s, err := ParseSpec(strings.NewReader(minimalSpec + gatewayLine))
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != 1 || s.Gateway.Type != "builtin" || s.Metrics.Type != "builtin" || s.OnMarginal != "pause" || s.PauseTimeout != time.Hour {
		t.Errorf("defaults: %+v", s)
	}
	if len(s.Steps) != 3 || s.Steps[0].Weight != 2.5 || s.Steps[2].Weight != 100 {
		t.Fatalf("steps %+v", s.Steps)
	}
	for _, st := range s.Steps {
		if st.Duration != 5*time.Minute || st.Interval != time.Minute || st.Warmup != 30*time.Second || st.Lookback != 0 || st.Approval {
			t.Errorf("step defaults %+v", st)
		}
	}
	if got := []providers.Split{s.SplitFor(0), s.SplitFor(1), s.SplitFor(2)}; got[0] != (providers.Split{Canary: 250, Baseline: 250}) ||
		got[1] != (providers.Split{Canary: 1000, Baseline: 1000}) || got[2] != (providers.Split{Canary: 5000, Baseline: 5000}) {
		t.Errorf("splits %v", got)
	}
	m := s.Analysis.Metrics
	if len(m) != 2 || m[0].Kind != providers.LatencyQuantile || m[0].Quantile != 0.99 || m[0].Direction != "increase" || m[0].Critical ||
		m[1].Kind != providers.ErrorRate || !m[1].Critical || m[1].Direction != "increase" {
		t.Errorf("default metrics %+v", m)
	}
	if s.Analysis.Thresholds != (Thresholds{Pass: 95, Marginal: 75}) || s.Analysis.ConsecutiveErrorLimit != 4 || s.Analysis.Resolution != 10*time.Second {
		t.Errorf("analysis %+v", s.Analysis)
	}
}

func TestParseSpecFullExample(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := ParseSpec(f)
	if err != nil {
		t.Fatalf("the documented example does not parse: %v", err)
	}
	if !s.Steps[2].Approval || s.Steps[1].Warmup != DefaultStepWarmup || s.Analysis.Metrics[0].Weight != 50 || len(s.Notify.Webhooks) != 1 {
		t.Errorf("parsed %+v", s)
	}
	// The README shows the same example.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, _ := os.ReadFile("testdata/full.yaml")
	if !strings.Contains(string(readme), string(example)) {
		t.Error("README.md does not contain testdata/full.yaml verbatim")
	}
}

func TestSpecValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		edit  string // appended to minimalSpec or replacing it when it starts with "!"
		field string
		fix   string
	}{
		{"no service", "!stable: {addresses: [\"http://x:1\"]}\n", "service", "required"},
		{"bad service", "!service: Check Out\n", "service", "lower-case"},
		{"bad version", "version: 2\n", "version", "use 1"},
		{"unknown field", "stepz: []\n", "stepz", "unknown field \"stepz\"; did you mean steps?"},
		{"unknown step field", "steps: [{weight: 10, wait: 1m}]\n", "steps[0].wait", "the fields here are approval, duration, interval, lookback, warmup, weight"},
		{"type error names the field", "steps:\n- weight: lots\n", "steps[0].weight", "\"lots\" is not a number; write the canary's share in percent"},
		{"unknown gateway", "gateway: {type: envoy}\n", "gateway.type", "use one of builtin"},
		{"unknown metrics", "metrics: {type: datadog}\n", "metrics.type", "use one of builtin"},
		{"listen and admin", "gateway: {listen: \"127.0.0.1:1\", admin: \"http://127.0.0.1:2\"}\n", "gateway.admin", "not both"},
		{"neither listen nor admin", "gateway: {type: builtin}\n", "gateway.listen", "needs listen"},
		{"bad listen", "gateway: {listen: nowhere}\n", "gateway.listen", "host:port"},
		{"decreasing steps", "steps: [{weight: 10}, {weight: 5}]\n", "steps[1].weight", "must increase"},
		{"weight too fine", "steps: [{weight: 2.555}]\n", "steps[0].weight", "two decimals"},
		{"weight zero", "steps: [{weight: 0}]\n", "steps[0].weight", "(0, 100]"},
		{"weight over 100", "steps: [{weight: 120}]\n", "steps[0].weight", "(0, 100]"},
		{"no steps", "steps: []\n", "steps", "empty"},
		{"interval below resolution", "steps: [{weight: 10, interval: 5s}]\n", "steps[0].interval", "analysis.resolution"},
		{"duration too short", "steps: [{weight: 10, duration: 1m, interval: 1m, warmup: 30s}]\n", "steps[0].duration", "at least 1m30s"},
		{"lookback shorter than interval", "steps: [{weight: 10, lookback: 10s}]\n", "steps[0].lookback", "shorter than the interval"},
		{"thresholds", "analysis: {thresholds: {pass: 50, marginal: 60}}\n", "analysis.thresholds", "marginal < pass"},
		{"error limit", "analysis: {consecutiveErrorLimit: -1}\n", "analysis.consecutiveErrorLimit", "1..100"},
		{"resolution", "analysis: {resolution: 100ms}\n", "analysis.resolution", "1s or more"},
		{"empty metrics", "analysis: {metrics: []}\n", "analysis.metrics", "leave the field out"},
		{"metric kind", "analysis: {metrics: [{name: a, kind: apdex}]}\n", "analysis.metrics[0].kind", "latency, error_rate or query"},
		{"metric quantile", "analysis: {metrics: [{name: a, kind: latency, quantile: 1.5}]}\n", "analysis.metrics[0].quantile", "between 0 and 1"},
		{"query on builtin", "analysis: {metrics: [{name: a, kind: query, query: up}]}\n", "analysis.metrics[0].kind", "not builtin"},
		{"duplicate metric", "analysis: {metrics: [{name: a, kind: error_rate}, {name: a, kind: error_rate}]}\n", "analysis.metrics[1].name", "used twice"},
		{"direction", "analysis: {metrics: [{name: a, kind: error_rate, direction: up}]}\n", "analysis.metrics[0].direction", "increase, decrease or either"},
		{"effect size", "analysis: {metrics: [{name: a, kind: error_rate, effectSize: {allowedIncrease: 0.5}}]}\n", "analysis.metrics[0].effectSize.allowedIncrease", ">= 1"},
		{"weights sum", "analysis: {metrics: [{name: a, kind: error_rate, weight: 30}, {name: b, kind: error_rate, weight: 30}]}\n", "analysis.metrics", "add up to 60"},
		{"some weights", "analysis: {metrics: [{name: a, kind: error_rate, weight: 100}, {name: b, kind: error_rate}]}\n", "analysis.metrics", "some metrics have a weight"},
		{"onMarginal", "onMarginal: ignore\n", "onMarginal", "pause or rollback"},
		{"webhook url", "notifications: {webhooks: [{url: \"ftp://x\"}]}\n", "notifications.webhooks[0].url", "http"},
		{"webhook event", "notifications: {webhooks: [{url: \"http://x\", on: [done]}]}\n", "notifications.webhooks[0].on[0]", "unknown event"},
		{"stable addresses", "!service: a\n", "stable.addresses", "required"},
		{"deploy section", "!service: a\nstable: {addresses: [\"http://x:1\"]}\ngateway: {listen: \"127.0.0.1:1\"}\n", "deploy.baseline.type", "required"},
		{"two documents", "---\nservice: b\n", "(yaml)", "more than one YAML document"},
		{"empty", "!", "(file)", "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := minimalSpec + gatewayLine + tc.edit
			if strings.Contains(tc.edit, "gateway:") {
				src = minimalSpec + tc.edit
			}
			if strings.HasPrefix(tc.edit, "!") {
				src = tc.edit[1:]
			}
			_, err := ParseSpec(strings.NewReader(src))
			if err == nil {
				t.Fatal("accepted")
			}
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("not a *SpecError: %T %v", err, err)
			}
			var inv interface{ InvalidInput() bool }
			if !errors.As(err, &inv) || !inv.InvalidInput() {
				t.Error("not marked as invalid input (exit 2)")
			}
			found := false
			for _, line := range strings.Split(err.Error(), "\n") {
				if namesField(line, tc.field) && strings.Contains(line, tc.fix) {
					found = true
				}
			}
			if !found {
				t.Errorf("no line %q with %q in:\n%v", tc.field+": ...", tc.fix, err)
			}
		})
	}
}

// namesField reports whether a problem line is about field: "field: ..." or "field (line N): ...".
func namesField(line, field string) bool {
	return strings.HasPrefix(line, field+": ") || strings.HasPrefix(line, field+" (line ")
}

func TestSpecErrorsAreOnePerLine(t *testing.T) {
	t.Parallel()
	_, err := ParseSpec(strings.NewReader("service: a\ngateway: {type: x}\nsteps: [{weight: 0}]\n"))
	var errs SpecErrors
	if !errors.As(err, &errs) || len(errs) < 4 {
		t.Fatalf("want several errors, got %v", err)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != len(errs) {
		t.Errorf("%d lines for %d errors", n, len(errs))
	}
}

// FuzzParseSpec: no input panics; an accepted spec is valid, has steps and metrics, and its splits
// are legal.
func FuzzParseSpec(f *testing.F) {
	full, _ := os.ReadFile("testdata/full.yaml")
	for _, s := range []string{minimalSpec + gatewayLine, string(full), "service: a", "steps: [{weight: 2.5}]", "{}", "- 1", "analysis: {metrics: [{}]}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		s, err := ParseSpec(strings.NewReader(src))
		if err != nil {
			if !strings.Contains(err.Error(), ": ") {
				t.Errorf("error without a field: %q", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted spec does not validate: %v", err)
		}
		if len(s.Steps) == 0 || len(s.Analysis.Metrics) == 0 {
			t.Fatal("accepted spec without steps or metrics")
		}
		for i := range s.Steps {
			if err := s.SplitFor(i).Validate(); err != nil || s.SplitFor(i).Canary == 0 {
				t.Fatalf("step %d split %v: %v", i, s.SplitFor(i), err)
			}
		}
	})
}
