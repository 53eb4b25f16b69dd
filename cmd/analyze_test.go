package cmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/prometheus"
	"github.com/canaryctl/canaryctl/providers/prometheus/promtest"
)

// runAnalyze runs `canaryctl analyze args...` with buffers and returns exit code, stdout, stderr.
func runAnalyze(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &Env{
		Stdout: &out, Stderr: &errb, Stdin: strings.NewReader(""),
		Getenv: func(k string) string { return env[k] },
		Now:    func() time.Time { return analyzeNow },
		Logger: slog.New(slog.NewTextHandler(&errb, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	code := Run(t.Context(), e, append([]string{"analyze"}, args...))
	return code, out.String(), errb.String()
}

var analyzeNow = time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const kayentaInlineConfig = `{
  "name": "inline",
  "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
  "metrics": [
    {"name": "p99", "query": {"type": "prometheus", "metricName": "ignored",
      "customInlineTemplate": "PromQL:histogram_quantile(0.99, sum by (le) (rate(canaryctl_proxy_request_duration_seconds_bucket{cohort=\"${scope}\",route=\"split\"}[${window:-3s}]))) * 1000"},
     "analysisConfigurations": {"canary": {"direction": "increase", "critical": true}},
     "groups": ["latency"], "scopeName": "default"}
  ],
  "classifier": {"groupWeights": {"latency": 100}, "scoreThresholds": {"pass": 95, "marginal": 75}}
}`

const analyzeSpecYAML = `version: 1
service: shop
stable: {addresses: ["http://127.0.0.1:1"]}
deploy:
  baseline: {type: static, addresses: ["http://127.0.0.1:2"]}
  canary: {type: static, addresses: ["http://127.0.0.1:3"]}
gateway: {type: builtin, listen: "127.0.0.1:0"}
analysis:
  resolution: 1s
  thresholds: {pass: 95, marginal: 75}
  metrics:
    - {name: p99-latency, kind: latency, quantile: 0.99, direction: increase, group: latency}
    - {name: 5xx-rate, kind: error_rate, direction: increase, nanStrategy: replace, group: errors}
steps:
  - {weight: 10, warmup: 1s, interval: 3s, duration: 10s}
`

// TestAnalyzeRealPrometheus judges a window of real traffic, scraped by a real Prometheus from the
// built-in proxy in front of a fast baseline and a canary that takes at least 600 ms: the latency
// metric is High and the verdict Fail (exit 3), from a rollout spec and from a Kayenta config.
func TestAnalyzeRealPrometheus(t *testing.T) {
	t.Parallel()
	// The window judged starts 3 s in, with points one 3 s rate window apart; the load goes on until
	// the window holds 10 points per cohort (one spare for where the window's end falls). Mann-Whitney
	// at Kayenta's 98% needs 5 and 5 points that do not overlap at all: a window left with 3 points
	// per cohort was judged Pass, and so was one with 5 and 5 where one baseline point had caught a
	// stall of the loaded machine (each P99 point is about the slowest of some 40 requests: the 2 ms
	// baseline's reached 208 ms and 528 ms in make ci, measured in this -race process, against a
	// 150 ms canary then). With 9 and 9 points a baseline point above every canary point still leaves
	// the difference significant, whatever the machine's speed; the canary takes 600 ms.
	sc := promtest.RunScenario(t, promtest.ScenarioConfig{
		BaselineDelay: 2 * time.Millisecond, CanaryDelay: 600 * time.Millisecond, Duration: 15 * time.Second,
		Concurrency: 8, JudgedFrom: 3 * time.Second, Until: func(s *promtest.Scenario, now time.Time) bool {
			return p99Points(t, s.Prometheus.URL, s.Start.Add(3*time.Second), now) >= 10
		},
	})
	start := strconv.FormatInt(sc.Start.Add(3*time.Second).Unix(), 10)
	end := strconv.FormatInt(sc.End.Unix(), 10)
	common := []string{"--prometheus", sc.Prometheus.URL, "--start", start, "--end", end, "--step", "1s", "--min-rate-window", "3s", "-o", "json"}

	t.Run("spec", func(t *testing.T) {
		spec := writeFile(t, "rollout.yaml", analyzeSpecYAML)
		code, out, errOut := runAnalyze(t, nil, append(common, "--spec", spec)...)
		res := decodeResult(t, out, errOut)
		if len(res.Results) > 0 {
			t.Logf("%d points per cohort (%d successful scrapes per target in the window)", res.Results[0].Control.Stats.Count, sc.Scrapes)
			if n := res.Results[0].Control.Stats.Count; n < 9 {
				t.Fatalf("the judged window holds %d points per cohort after %d successful scrapes; the test needs 9", n, sc.Scrapes)
			}
		}
		if code != ExitFail || res.Score.Classification != "Fail" {
			t.Fatalf("exit %d, verdict %q; want 3 and Fail\n%s\n%s", code, res.Score.Classification, out, errOut)
		}
		if c := res.class("p99-latency"); c != "High" {
			t.Errorf("p99-latency classified %q, want High\n%s", c, out)
		}
		if c := res.class("5xx-rate"); c != "Pass" {
			t.Errorf("5xx-rate classified %q, want Pass (no errors on either side)\n%s", c, out)
		}
	})
	t.Run("kayenta config", func(t *testing.T) {
		cfg := writeFile(t, "kayenta.json", kayentaInlineConfig)
		code, out, errOut := runAnalyze(t, nil, append(common, "--canary-config", cfg,
			"--control-scope", "baseline", "--experiment-scope", "canary")...)
		res := decodeResult(t, out, errOut)
		if code != ExitFail || res.class("p99") != "High" || !strings.Contains(res.Score.ClassificationReason, "p99") {
			t.Fatalf("exit %d, result %+v; want 3 with p99 High (critical)\n%s", code, res, errOut)
		}
	})
}

type kayentaResult struct {
	JudgeName string `json:"judgeName"`
	Score     struct {
		Score                json.Number `json:"score"`
		Classification       string      `json:"classification"`
		ClassificationReason string      `json:"classificationReason"`
	} `json:"score"`
	Results []struct {
		Name           string `json:"name"`
		Classification string `json:"classification"`
		Critical       bool   `json:"critical"`
		Control        struct {
			Stats struct {
				Count int `json:"count"`
			} `json:"stats"`
		} `json:"controlMetadata"`
	} `json:"results"`
}

func (r kayentaResult) class(name string) string {
	for _, m := range r.Results {
		if m.Name == name {
			return m.Classification
		}
	}
	return "(missing)"
}

func decodeResult(t *testing.T, out, errOut string) kayentaResult {
	t.Helper()
	var r kayentaResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("stdout is not a Kayenta result: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	if r.JudgeName != "NetflixACAJudge-v1.0" {
		t.Fatalf("judgeName %q", r.JudgeName)
	}
	return r
}

// fakePrometheus answers range queries from per-scope series: the value list of the first scope
// name that appears quoted in the query; every answer starts at the query's start.
type fakePrometheus struct {
	mu      sync.Mutex
	queries []string
	auth    []string
}

func (f *fakePrometheus) start(t *testing.T, series map[string][]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		q := r.Form.Get("query")
		f.mu.Lock()
		f.queries = append(f.queries, q)
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		start, _ := strconv.ParseFloat(r.Form.Get("start"), 64)
		step, _ := strconv.ParseFloat(r.Form.Get("step"), 64)
		for scope, vals := range series {
			if !strings.Contains(q, `"`+scope+`"`) && !strings.Contains(q, `'`+scope+`'`) {
				continue
			}
			var pts []string
			for i, v := range vals {
				pts = append(pts, fmt.Sprintf(`[%s,%q]`, strconv.FormatFloat(start+float64(i)*step, 'f', -1, 64), v))
			}
			fmt.Fprintf(w, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[%s]}]}}`, strings.Join(pts, ","))
			return
		}
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"matrix","result":[]}}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// kayentaExampleCPU is Kayenta's own integration-test config (spinnaker/kayenta@a69573be,
// kayenta-integration-tests/src/test/resources/canary-configs/prometheus/integration-test-cpu.json),
// with its metricName, customFilterTemplate and templates unchanged.
const kayentaExampleCPU = `{
  "name": "integration-test-canary-config",
  "description": "A very simple config for integration testing",
  "judge": {"judgeConfigurations": {}, "name": "NetflixACAJudge-v1.0"},
  "metrics": [
    {"name": "CPU usage for service",
     "query": {"type": "prometheus", "metricName": "integration_test_cpu", "customFilterTemplate": "standard-template"},
     "analysisConfigurations": {"canary": {"critical": true, "direction": "increase"}},
     "groups": ["pod-group"], "scopeName": "default"}
  ],
  "templates": {"standard-template": "namespace='${namespace}', scope='${scope}'"},
  "classifier": {"groupWeights": {"pod-group": 100}, "scoreThresholds": {"marginal": 50, "pass": 75}}
}`

func TestAnalyzeKayentaExampleConfig(t *testing.T) {
	t.Parallel()
	same := []string{"10", "11", "12", "10", "11", "12", "10", "11", "12", "11"}
	// Statistically the same as baseline, but not the same series (identical values at every step
	// would be rejected as one series read twice).
	alike := []string{"11", "10", "12", "11", "12", "10", "11", "10", "12", "11"}
	high := []string{"30", "31", "32", "30", "31", "32", "30", "31", "32", "31"}
	tests := []struct {
		name     string
		canary   []string
		wantCode int
		wantVerd string
	}{
		{"canary like baseline passes", alike, ExitOK, "Pass"},
		{"canary CPU tripled fails", high, ExitFail, "Fail"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakePrometheus{}
			url := f.start(t, map[string][]string{"checkout-baseline": same, "checkout-canary": tc.canary})
			cfg := writeFile(t, "cpu.json", kayentaExampleCPU)
			code, out, errOut := runAnalyze(t, map[string]string{"CANARYCTL_PROMETHEUS_TOKEN": "env-token"},
				"--prometheus", url, "--canary-config", cfg,
				"--control-scope", "checkout-baseline", "--experiment-scope", "checkout-canary", "--scope-param", "namespace=shop",
				"--start", "-10m", "--end", "now", "--step", "1m", "-o", "json")
			res := decodeResult(t, out, errOut)
			if code != tc.wantCode || res.Score.Classification != tc.wantVerd {
				t.Fatalf("exit %d verdict %q, want %d %q\n%s\n%s", code, res.Score.Classification, tc.wantCode, tc.wantVerd, out, errOut)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			want := map[string]bool{
				"avg(integration_test_cpu{namespace='shop', scope='checkout-baseline'})": true,
				"avg(integration_test_cpu{namespace='shop', scope='checkout-canary'})":   true,
			}
			for i, q := range f.queries {
				if !want[q] {
					t.Errorf("query %q is not what Kayenta would send", q)
				}
				if f.auth[i] != "Bearer env-token" {
					t.Errorf("Authorization %q, want the token from CANARYCTL_PROMETHEUS_TOKEN", f.auth[i])
				}
			}
		})
	}
}

func TestAnalyzeTextOutputAndNoData(t *testing.T) {
	t.Parallel()
	f := &fakePrometheus{}
	url := f.start(t, map[string][]string{"baseline": {"10", "11", "12", "10", "11"}, "canary": {"10", "12", "11", "10", "11"}})
	cfg := writeFile(t, "k.json", `{"name":"n","judge":{"name":"NetflixACAJudge-v1.0"},
	  "metrics":[
	    {"name":"lat","query":{"type":"prometheus","metricName":"m","customInlineTemplate":"cohort=\"${scope}\""},"groups":["g"],
	     "analysisConfigurations":{"canary":{"direction":"increase"}}},
	    {"name":"gone","query":{"type":"prometheus","metricName":"m","customInlineTemplate":"cohort=\"${scope}-old\""},"groups":["g"],
	     "analysisConfigurations":{"canary":{"direction":"increase","mustHaveData":true}}}],
	  "classifier":{"groupWeights":{"g":100}}}`)
	code, out, errOut := runAnalyze(t, nil, "--prometheus", url, "--canary-config", cfg, "--control-scope", "baseline",
		"--experiment-scope", "canary", "--start", "2026-11-22T03:55:00Z", "--end", "2026-11-22T03:59:00Z", "--step", "1m", "-o", "text",
		"--pass", "95", "--marginal", "75")
	// "gone" has no data and mustHaveData: Kayenta scores it as a failed metric, the group at 50.
	if code != ExitFail {
		t.Fatalf("exit %d, want 3\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"Fail", "METRIC", "lat", "Pass", "gone", "NodataFailMetric", "score 50: Fail", "window 2026-11-22T03:55:00Z"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "no data") {
		t.Errorf("no-data warning missing from stderr:\n%s", errOut)
	}
}

func TestAnalyzeUsageErrors(t *testing.T) {
	t.Parallel()
	cfg := writeFile(t, "k.json", kayentaInlineConfig)
	datadog := writeFile(t, "d.json", strings.Replace(kayentaInlineConfig, `"type": "prometheus"`, `"type": "datadog"`, 1))
	spec := writeFile(t, "s.yaml", analyzeSpecYAML)
	base := []string{"--prometheus", "http://127.0.0.1:1", "--start", "-1h"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no prometheus", []string{"--spec", spec, "--start", "-1h"}, "--prometheus: required"},
		{"no start", []string{"--prometheus", "http://127.0.0.1:1", "--spec", spec}, "--start: required"},
		{"bad start", append(base[:2:2], "--start", "yesterday", "--spec", spec), `--start "yesterday"`},
		{"end before start", append(base, "--end", "-2h", "--spec", spec), "is not after --start"},
		{"too many points", append(base[:2:2], "--start", "-100h", "--step", "1s", "--spec", spec), "more than 11000 points"},
		{"neither source", base, "exactly one of --spec"},
		{"both sources", append(base, "--spec", spec, "--canary-config", cfg), "exactly one of --spec"},
		{"bad output", append(base, "--spec", spec, "-o", "yaml"), `--output "yaml"`},
		{"no scopes", append(base, "--canary-config", cfg), "--control-scope and --experiment-scope"},
		{"same scopes", append(base, "--canary-config", cfg, "--control-scope", "x", "--experiment-scope", "x"), "same PromQL"},
		{"other provider", append(base, "--canary-config", datadog, "--control-scope", "a", "--experiment-scope", "b"), `type "datadog"`},
		{"bad header", append(base, "--spec", spec, "--prometheus-header", "novalue"), "NAME=VALUE"},
		{"bad thresholds", append(base, "--spec", spec, "--pass", "40", "--marginal", "60"), "--pass/--marginal"},
		{"unknown query set", append(base, "--spec", spec, "--query-set", "kong"), "unknown query set"},
		{"missing spec file", append(base, "--spec", "/nonexistent.yaml"), "--spec"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, errOut := runAnalyze(t, nil, tc.args...)
			if code != ExitUsage || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errOut, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(errOut), "\n"); n > 0 {
				t.Errorf("error spans %d lines, want one:\n%s", n+1, errOut)
			}
		})
	}
}

func TestAnalyzeQueryErrorExitCodes(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if strings.Contains(r.Form.Get("query"), "syntax") {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}`)
			return
		}
		w.WriteHeader(503)
	}))
	t.Cleanup(srv.Close)
	mk := func(tmpl string) string {
		return writeFile(t, "k.json", `{"name":"n","judge":{"name":"NetflixACAJudge-v1.0"},"metrics":[{"name":"m","groups":["g"],
		  "query":{"type":"prometheus","customInlineTemplate":"PromQL:`+tmpl+`"}}]}`)
	}
	for _, tc := range []struct {
		name, tmpl string
		code       int
		want       string
	}{
		{"bad PromQL is invalid input", `syntax{s=\"${scope}\"`, ExitUsage, "parse error"},
		{"unavailable server is an error", `up{s=\"${scope}\"}`, ExitError, "3 attempts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, errOut := runAnalyze(t, nil, "--prometheus", srv.URL, "--canary-config", mk(tc.tmpl), "--control-scope", "a",
				"--experiment-scope", "b", "--start", "-5m", "--step", "1m", "--prometheus-retries", "2")
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut, tc.code, tc.want)
			}
		})
	}
}

// TestAnalyzeUsesTheSpecsPrometheus: without --prometheus, analyze reads the spec's
// metrics.prometheus section (URL, token from the named variable, query settings); --query-set
// and friends given on the command line win.
func TestAnalyzeUsesTheSpecsPrometheus(t *testing.T) {
	t.Parallel()
	f := &fakePrometheus{}
	url := f.start(t, map[string][]string{"baseline": {"10", "11", "12", "10", "11"}, "canary": {"10", "12", "11", "10", "11"}})
	spec := writeFile(t, "rollout.yaml", strings.Replace(analyzeSpecYAML, "analysis:\n",
		"metrics:\n  type: prometheus\n  prometheus: {url: "+strconv.Quote(url)+", tokenEnv: PROM_TOKEN, selector: 'env=\"prod\"'}\nanalysis:\n", 1))
	code, out, errOut := runAnalyze(t, map[string]string{"PROM_TOKEN": "spec-token"}, "--spec", spec,
		"--start", "2026-11-22T03:55:00Z", "--end", "2026-11-22T03:59:00Z", "--step", "1m", "--min-rate-window", "5m")
	if code != ExitOK {
		t.Fatalf("exit %d, want 0\n%s\n%s", code, out, errOut)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queries) != 4 {
		t.Fatalf("%d queries, want 4 (2 metrics x 2 cohorts)", len(f.queries))
	}
	for i, q := range f.queries {
		if !strings.Contains(q, `env="prod"`) || !strings.Contains(q, "[5m]") || f.auth[i] != "Bearer spec-token" {
			t.Errorf("query %q with %q: want the spec's selector, the --min-rate-window flag and the spec's token", q, f.auth[i])
		}
	}
	code, _, errOut = runAnalyze(t, nil, "--spec", spec, "--start", "-5m")
	if code != ExitUsage || !strings.Contains(errOut, "PROM_TOKEN is empty") {
		t.Errorf("missing token: exit %d, %s", code, errOut)
	}
}

// p99Points is how many points of the P99 latency series both baseline and canary have in
// [from, to], queried as analyze queries them (points one 3 s rate window apart).
func p99Points(t *testing.T, url string, from, to time.Time) int {
	p, err := prometheus.New(prometheus.Config{URL: url, MinWindow: 3 * time.Second, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := p.Pair(t.Context(), providers.Metric{Name: "p99", Kind: providers.LatencyQuantile, Quantile: 0.99},
		providers.Window{Start: time.Unix(from.Unix(), 0), End: time.Unix(to.Unix(), 0), Step: time.Second})
	if err != nil {
		return 0
	}
	count := func(xs []float64) int {
		n := 0
		for _, x := range xs {
			if !math.IsNaN(x) {
				n++
			}
		}
		return n
	}
	return min(count(pair.Baseline), count(pair.Canary))
}
