package prometheus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

func TestPreflight(t *testing.T) {
	t.Parallel()
	w := providers.Window{Start: testStart, End: testStart.Add(10 * testStep), Step: testStep}
	probeStart := w.End.Add(-preflightSteps * testStep)
	labelled := func(c providers.Cohort) string {
		return matrixBody(probeStart, testStep, series{labels: map[string]string{"cohort": string(c), "job": "proxy"}, at: map[int]string{0: "1", 1: "2"}})
	}
	unlabelled := func(v string) string {
		return matrixBody(probeStart, testStep, series{at: map[int]string{0: v, 1: v}})
	}
	tests := []struct {
		name    string
		metrics []providers.Metric
		answer  func(c providers.Cohort, query string) (int, string)
		wantErr error  // nil: must pass
		wantMsg string // substring of the error
		wantLog string // substring of the log
	}{
		{
			name:    "ready-made sets with distinct cohorts pass",
			metrics: []providers.Metric{latency, errorRate},
			answer: func(c providers.Cohort, q string) (int, string) {
				if strings.Contains(q, "requests_total") {
					return 200, labelled(c)
				}
				if c == providers.Canary {
					return 200, unlabelled("250")
				}
				return 200, unlabelled("120")
			},
		},
		{
			name:    "a template ignoring the cohort renders the same PromQL",
			metrics: []providers.Metric{{Name: "cpu", Kind: providers.Query, Query: `avg(rate(process_cpu_seconds_total[{{.Window}}]))`}},
			answer:  func(providers.Cohort, string) (int, string) { return 500, "must not be queried" },
			wantErr: ErrSameSeries, wantMsg: "render to the same PromQL",
		},
		{
			name: "a selector hidden in a comment returns the same labelled series",
			metrics: []providers.Metric{{Name: "up", Kind: providers.Query,
				Query: "up{job=\"proxy\"} # {{.Selector}}"}},
			answer: func(providers.Cohort, string) (int, string) {
				return 200, matrixBody(probeStart, testStep, series{labels: map[string]string{"job": "proxy"}, at: map[int]string{0: "1"}})
			},
			wantErr: ErrSameSeries, wantMsg: `both queries return {job="proxy"}`,
		},
		{
			name: "unlabelled aggregates agreeing on every non-zero value are the same series",
			metrics: []providers.Metric{{Name: "p99", Kind: providers.Query,
				Query: "histogram_quantile(0.99, sum by (le) (rate(x_bucket[1m]))) # {{.Selector}}"}},
			answer:  func(providers.Cohort, string) (int, string) { return 200, unlabelled("123.4") },
			wantErr: ErrSameSeries, wantMsg: "identical values",
		},
		{
			name: "an aggregation gives both cohorts the same labels but different values",
			metrics: []providers.Metric{{Name: "rps", Kind: providers.Query,
				Query: "sum by (job) (rate(canaryctl_proxy_requests_total{ {{- .Selector}} }[1m]))"}},
			answer: func(c providers.Cohort, _ string) (int, string) {
				v := map[providers.Cohort]string{providers.Baseline: "5", providers.Canary: "7"}[c]
				return 200, matrixBody(probeStart, testStep, series{labels: map[string]string{"job": "proxy"}, at: map[int]string{0: v, 1: v}})
			},
		},
		{
			name:    "two zero error rates are no evidence",
			metrics: []providers.Metric{errorRate},
			answer:  func(providers.Cohort, string) (int, string) { return 200, unlabelled("0") },
		},
		{
			name:    "a cohort without data yet skips the comparison",
			metrics: []providers.Metric{latency},
			answer: func(c providers.Cohort, _ string) (int, string) {
				if c == providers.Canary {
					return 200, matrixBody(probeStart, testStep)
				}
				return 200, unlabelled("1")
			},
			wantLog: "series comparison skipped",
		},
		{
			name: "per-pod series must be aggregated",
			metrics: []providers.Metric{{Name: "rps", Kind: providers.Query,
				Query: "rate(http_requests_total{ {{- .Selector}} }[1m])"}},
			answer: func(c providers.Cohort, _ string) (int, string) {
				return 200, matrixBody(probeStart, testStep,
					series{labels: map[string]string{"cohort": string(c), "pod": "a"}, at: map[int]string{0: "1"}},
					series{labels: map[string]string{"cohort": string(c), "pod": "b"}, at: map[int]string{0: "1"}})
			},
			wantErr: ErrManySeries, wantMsg: "baseline returns 2 series",
		},
		{
			name:    "labels differing beyond the cohort label are logged",
			metrics: []providers.Metric{{Name: "up", Kind: providers.Query, Query: "max(up{ {{- .Selector}} }) by (cohort, pod)"}},
			answer: func(c providers.Cohort, _ string) (int, string) {
				return 200, matrixBody(probeStart, testStep, series{labels: map[string]string{"cohort": string(c), "pod": string(c) + "-1"}, at: map[int]string{0: "1"}})
			},
			wantLog: "differ in labels besides the cohort label",
		},
		{
			name:    "a PromQL syntax error is caught by the server",
			metrics: []providers.Metric{{Name: "bad", Kind: providers.Query, Query: "sum(rate(x{ {{- .Selector}} }[1m])"}},
			answer: func(providers.Cohort, string) (int, string) {
				return 400, apiErrorBody("bad_data", `invalid parameter "query": 1:34: parse error: unclosed left parenthesis`)
			},
			wantMsg: "unclosed left parenthesis",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t, func(c providers.Cohort, _ int, q string, w http.ResponseWriter, _ *http.Request) {
				code, body := tc.answer(c, q)
				writeJSON(w, code, body)
			})
			p, logs := newTestProvider(t, f.srv.URL, nil)
			err := p.Preflight(t.Context(), tc.metrics, w)
			if tc.wantErr == nil && tc.wantMsg == "" {
				if err != nil {
					t.Fatalf("Preflight: %v", err)
				}
			} else {
				if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("Preflight err = %v, want %v containing %q", err, tc.wantErr, tc.wantMsg)
				}
				var inv interface{ InvalidInput() bool }
				if !errors.As(err, &inv) || !inv.InvalidInput() {
					t.Errorf("err %v is not marked as invalid input", err)
				}
			}
			if tc.wantLog != "" && !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, logs.String())
			}
		})
	}
}

func TestPreflightReportsEveryMetric(t *testing.T) {
	t.Parallel()
	p, err := NewWithAPI(Config{}, stubRanger{})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Preflight(t.Context(), []providers.Metric{
		{Name: "a", Kind: providers.Query, Query: "up"},
		{Name: "b", Kind: providers.Query, Query: "{{.Nope}}"},
		latency,
	}, testWindow)
	if err == nil || !strings.Contains(err.Error(), "metrics[a]") || !strings.Contains(err.Error(), "metrics[b]") || strings.Contains(err.Error(), "metrics[latency]") {
		t.Fatalf("err = %v, want problems of a and b only", err)
	}
}

// fakeTransport answers every request with a fixed status and body, without a network.
type fakeTransport struct {
	code int
	body []byte
}

func (f fakeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: f.code, Body: io.NopCloser(bytes.NewReader(f.body)), Header: http.Header{}, Request: r}, nil
}

// FuzzAnswerDecoding feeds arbitrary answers (status and body) through the provider's whole
// decoding path: no panic, and either an error or one value per step for both cohorts.
func FuzzAnswerDecoding(f *testing.F) {
	seeds := []string{
		matrixBody(testStart, testStep, series{at: map[int]string{0: "1", 3: "NaN", 4: "+Inf"}}),
		matrixBody(testStart, testStep),
		matrixBody(testStart, testStep, series{at: map[int]string{0: "1"}}, series{labels: map[string]string{"a": "b"}, at: map[int]string{1: "2"}}),
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1795316400,"1e308"],[-5,"x"]]}]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"histograms":[[1795316400,{"count":"1","sum":"1"}]]}]}}`,
		`{"status":"success","data":{"resultType":"scalar","result":[1795316400,"1"]}}`,
		`{"status":"error","errorType":"bad_data","error":"x"}`,
		`{"status":"success","warnings":["w"],"data":{"resultType":"matrix","result":null}}`,
		`not json`, ``,
	}
	for _, s := range seeds {
		f.Add(200, []byte(s))
	}
	f.Add(503, []byte(apiErrorBody("timeout", "t")))
	f.Add(400, []byte(`{"status":"success"}`))
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		if code < 100 || code > 599 {
			code = 200
		}
		p, err := New(Config{URL: "http://prom.invalid", Transport: fakeTransport{code: code, body: body}, Retries: -1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pair, err := p.Pair(ctx, latency, testWindow)
		if err != nil {
			if pair.Baseline != nil || pair.Canary != nil {
				t.Fatalf("values returned with error %v", err)
			}
			return
		}
		if len(pair.Baseline) != 5 || len(pair.Canary) != 5 {
			t.Fatalf("got %d/%d values, want 5 each", len(pair.Baseline), len(pair.Canary))
		}
		real := 0
		for _, v := range pair.Canary {
			if !math.IsNaN(v) {
				real++
			}
		}
		if real == 0 {
			t.Fatal(fmt.Sprint("success without a single value: ", pair.Canary))
		}
	})
}
