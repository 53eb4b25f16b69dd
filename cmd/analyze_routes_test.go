package cmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers/prometheus/promtest"
)

// routeHistory is 40 minutes of an application's Micrometer histogram (http_server_requests_seconds,
// labels service, cohort, uri, status), one scrape every 10 s, as OpenMetrics for promtool: the
// baseline and canary serve /products at 20 req/s and /checkout/pay at 0.5 req/s each, 0.5% 5xx,
// except the canary's /checkout/pay, which fails half its requests.
func routeHistory(start time.Time) []byte {
	rng := rand.New(rand.NewPCG(18, 1))
	les := []float64{0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6}
	type key struct{ cohort, uri string }
	type counts struct {
		ok, fail, sum float64
		buckets       []float64
	}
	rates := map[string]float64{"/products": 20, "/checkout/pay": 0.5}
	st := map[key]*counts{}
	var keys []key
	for _, c := range []string{"baseline", "canary"} {
		for _, u := range []string{"/products", "/checkout/pay"} {
			k := key{c, u}
			keys = append(keys, k)
			st[k] = &counts{buckets: make([]float64, len(les))}
		}
	}
	poisson := func(l float64) int {
		k, p := 0, math.Exp(-l)
		for u := rng.Float64(); u > p; u *= rng.Float64() {
			k++
		}
		return k
	}
	var series = map[string]*bytes.Buffer{}
	line := func(name, labels string, v float64, ts time.Time) {
		b := series[name+labels]
		if b == nil {
			b = &bytes.Buffer{}
			series[name+labels] = b
		}
		fmt.Fprintf(b, "%s{%s} %g %.3f\n", name, labels, v, float64(ts.UnixMilli())/1000)
	}
	const scrape = 10 * time.Second
	for ts := start; ts.Before(start.Add(40 * time.Minute)); ts = ts.Add(scrape) {
		for _, k := range keys {
			s := st[k]
			pErr := 0.005
			if k.cohort == "canary" && k.uri == "/checkout/pay" {
				pErr = 0.5
			}
			for range poisson(rates[k.uri] * scrape.Seconds()) {
				l := 0.08 * math.Exp(0.45*rng.NormFloat64())
				if rng.Float64() < pErr {
					s.fail++
				} else {
					s.ok++
				}
				s.sum += l
				for j, le := range les {
					if l <= le {
						s.buckets[j]++
					}
				}
			}
			base := fmt.Sprintf(`service="shop",cohort=%q,uri=%q`, k.cohort, k.uri)
			for _, status := range []string{"200", "500"} {
				v := s.ok
				if status == "500" {
					v = s.fail
				}
				line("http_server_requests_seconds_count", base+`,status="`+status+`"`, v, ts)
			}
			for j, le := range les {
				line("http_server_requests_seconds_bucket", base+`,status="200",le="`+strconv.FormatFloat(le, 'f', -1, 64)+`"`, s.buckets[j], ts)
			}
			line("http_server_requests_seconds_bucket", base+`,status="200",le="+Inf"`, s.ok+s.fail, ts)
		}
	}
	var out bytes.Buffer
	out.WriteString("# TYPE http_server_requests_seconds_count counter\n")
	for name, b := range series {
		if strings.HasPrefix(name, "http_server_requests_seconds_count") {
			out.Write(b.Bytes())
		}
	}
	out.WriteString("# TYPE http_server_requests_seconds_bucket counter\n")
	for name, b := range series {
		if strings.HasPrefix(name, "http_server_requests_seconds_bucket") {
			out.Write(b.Bytes())
		}
	}
	out.WriteString("# EOF\n")
	return out.Bytes()
}

// TestAnalyzeRoutesRealPrometheus: analyze --route-label judges each route on its own against a real
// Prometheus (its TSDB filled by promtool): the route whose canary fails half its requests is Fail
// with 5xx-rate High and listed first, the healthy route passes, each at the Bonferroni level
// 1-0.02/2, and the exit code is the worst verdict's.
func TestAnalyzeRoutesRealPrometheus(t *testing.T) {
	t.Parallel()
	start := time.Now().Add(-50 * time.Minute).Truncate(time.Minute)
	srv := promtest.StartWithHistory(t, routeHistory(start))
	spec := writeFile(t, "rollout.yaml", analyzeSpecYAML)
	args := []string{"--prometheus", srv.URL, "--spec", spec, "--query-set", "app-labels",
		"--start", strconv.FormatInt(start.Add(5*time.Minute).Unix(), 10), "--end", strconv.FormatInt(start.Add(35*time.Minute).Unix(), 10),
		"--step", "1m", "--route-label", "uri", "--route", "/products", "--route", "/checkout/pay"}
	code, out, errOut := runAnalyze(t, nil, append(args, "-o", "json")...)
	var res struct {
		kayentaResult
		RouteLabel string `json:"routeLabel"`
		Routes     []struct {
			Route     string        `json:"route"`
			ConfLevel float64       `json:"confLevel"`
			Result    kayentaResult `json:"result"`
		} `json:"routes"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("stdout: %v\n%s\n%s", err, out, errOut)
	}
	if code != ExitFail || res.RouteLabel != "uri" || len(res.Routes) != 2 {
		t.Fatalf("exit %d, %d routes by %q; want 3 and two routes by uri\n%s\n%s", code, len(res.Routes), res.RouteLabel, out, errOut)
	}
	pay, products := res.Routes[0], res.Routes[1]
	if pay.Route != "/checkout/pay" || pay.Result.Score.Classification != "Fail" || pay.Result.class("5xx-rate") != "High" {
		t.Errorf("first route %s: %s, 5xx-rate %s; want /checkout/pay Fail with 5xx-rate High", pay.Route, pay.Result.Score.Classification, pay.Result.class("5xx-rate"))
	}
	if products.Route != "/products" || products.Result.Score.Classification != "Pass" {
		t.Errorf("second route %s: %s (%s); want /products Pass", products.Route, products.Result.Score.Classification, products.Result.Score.ClassificationReason)
	}
	if n := products.Result.Results[0].Control.Stats.Count; n < 20 {
		t.Errorf("/products judged on %d points per cohort, want the window's 30", n)
	}
	if pay.ConfLevel != 0.99 || products.ConfLevel != 0.99 {
		t.Errorf("confidence levels %v, %v; want 0.99 (0.98 split over two routes)", pay.ConfLevel, products.ConfLevel)
	}
	code, text, errOut := runAnalyze(t, nil, append(args, "-o", "text")...)
	for _, want := range []string{"routes by uri, the worst first (each metric at 99% confidence", "/checkout/pay", "5xx-rate High"} {
		if code != ExitFail || !strings.Contains(text, want) {
			t.Errorf("exit %d, text output lacks %q:\n%s\n%s", code, want, text, errOut)
		}
	}
}

func TestAnalyzeRoutesUsageErrors(t *testing.T) {
	t.Parallel()
	spec := writeFile(t, "rollout.yaml", analyzeSpecYAML)
	cfg := writeFile(t, "k.json", kayentaInlineConfig)
	base := []string{"--prometheus", "http://127.0.0.1:1", "--start", "-10m"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"route without label", []string{"--spec", spec, "--query-set", "app-labels", "--route", "/a"}, "--route needs --route-label"},
		{"label without routes", []string{"--spec", spec, "--query-set", "app-labels", "--route-label", "uri"}, "list the routes"},
		{"bad label", []string{"--spec", spec, "--query-set", "app-labels", "--route-label", "u-ri", "--route", "/a"}, "not a Prometheus label name"},
		{"builtin proxy metrics", []string{"--spec", spec, "--route-label", "uri", "--route", "/a"}, "no per-route label"},
		{"kayenta config", []string{"--canary-config", cfg, "--control-scope", "b", "--experiment-scope", "c", "--route-label", "uri", "--route", "/a"}, "works with --spec"},
		{"twice", []string{"--spec", spec, "--query-set", "app-labels", "--route-label", "uri", "--route", "/a", "--route", "/a"}, "give each route once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runAnalyze(t, nil, append(base, tc.args...)...)
			if code != ExitUsage || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 saying %q\n%s", code, errOut, tc.want, out)
			}
		})
	}
}
