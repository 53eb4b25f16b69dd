package prometheus

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/canaryctl/canaryctl/providers"
)

func newTestProvider(t *testing.T, url string, mod func(*Config)) (*Provider, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg := Config{URL: url, Backoff: time.Millisecond, Timeout: 5 * time.Second, Logger: testLogger(logs)}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, logs
}

func TestPairAlignsStepsPerCohort(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, func(c providers.Cohort, _ int, _ string, w http.ResponseWriter, _ *http.Request) {
		switch c {
		case providers.Baseline:
			writeJSON(w, 200, matrixBody(testStart, testStep, series{at: map[int]string{0: "10", 1: "11", 3: "13", 4: "14"}}))
		case providers.Canary:
			writeJSON(w, 200, matrixBody(testStart, testStep, series{at: map[int]string{0: "20", 2: "NaN", 4: "+Inf"}}))
		default:
			writeJSON(w, 400, apiErrorBody("bad_data", "no cohort in query"))
		}
	})
	p, _ := newTestProvider(t, f.srv.URL, nil)
	got, err := p.Pair(t.Context(), latency, testWindow)
	if err != nil {
		t.Fatalf("Pair: %v", err)
	}
	wantB := []float64{10, 11, math.NaN(), 13, 14}
	wantC := []float64{20, math.NaN(), math.NaN(), math.NaN(), math.Inf(1)}
	if !sameFloats(got.Baseline, wantB) || !sameFloats(got.Canary, wantC) {
		t.Fatalf("Pair = %v / %v, want %v / %v", got.Baseline, got.Canary, wantB, wantC)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.forms) != 2 {
		t.Fatalf("%d queries, want 2", len(f.forms))
	}
	for _, form := range f.forms {
		if form["step"] != "30" || form["start"] != "1795316400" || form["end"] != "1795316520" || form["timeout"] != "5s" {
			t.Errorf("range parameters = %v", form)
		}
		if !strings.HasPrefix(form["query"], "histogram_quantile(0.99, sum by (le) (rate(canaryctl_proxy_request_duration_seconds_bucket{cohort=") {
			t.Errorf("query = %s", form["query"])
		}
	}
}

func sameFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !(math.IsNaN(a[i]) && math.IsNaN(b[i])) {
			return false
		}
	}
	return true
}

func TestPairErrorPaths(t *testing.T) {
	t.Parallel()
	ok := matrixBody(testStart, testStep, series{at: map[int]string{0: "1", 1: "2"}})
	tests := []struct {
		name string
		// answer for the canary's n-th call; baseline always succeeds
		answer    func(n int) (int, string)
		wantCalls int // canary calls, with Retries = 2
		check     func(t *testing.T, err error)
	}{
		{
			name:      "bad_data 400 is not retried and is invalid input",
			answer:    func(int) (int, string) { return 400, apiErrorBody("bad_data", `1:14: parse error: unexpected "}"`) },
			wantCalls: 1,
			check: func(t *testing.T, err error) {
				var qe *QueryError
				if !errors.As(err, &qe) || !qe.InvalidInput() || qe.Cohort != providers.Canary || qe.Metric != "latency" {
					t.Fatalf("err = %v, want a canary QueryError with InvalidInput", err)
				}
				var ae *v1.Error
				if !errors.As(err, &ae) || ae.Type != v1.ErrBadData || !strings.Contains(err.Error(), "parse error") {
					t.Fatalf("err = %v, want the server's bad_data message", err)
				}
			},
		},
		{
			name: "503 then success is retried",
			answer: func(n int) (int, string) {
				if n == 1 {
					return 503, "overloaded"
				}
				return 200, ok
			},
			wantCalls: 2,
			check: func(t *testing.T, err error) {
				if err != nil {
					t.Fatalf("err = %v, want success after a retry", err)
				}
			},
		},
		{
			name:      "503 every time gives up after the retries",
			answer:    func(int) (int, string) { return 503, "overloaded" },
			wantCalls: 3,
			check: func(t *testing.T, err error) {
				var ae *v1.Error
				if !errors.As(err, &ae) || ae.Type != v1.ErrServer || !strings.Contains(err.Error(), "3 attempts") || !strings.Contains(err.Error(), "overloaded") {
					t.Fatalf("err = %v, want a server_error after 3 attempts", err)
				}
				var qe *QueryError
				if errors.As(err, &qe) && qe.InvalidInput() {
					t.Fatal("a 503 is not invalid input")
				}
			},
		},
		{
			name: "server-side query timeout is retried and reported with its message",
			answer: func(int) (int, string) {
				return 503, apiErrorBody("timeout", "query timed out in expression evaluation")
			},
			wantCalls: 3,
			check: func(t *testing.T, err error) {
				if err == nil || !strings.Contains(err.Error(), "query timed out in expression evaluation") {
					t.Fatalf("err = %v, want the timeout message", err)
				}
			},
		},
		{
			name:      "422 execution error is not retried",
			answer:    func(int) (int, string) { return 422, apiErrorBody("execution", "many-to-many matching not allowed") },
			wantCalls: 1,
			check: func(t *testing.T, err error) {
				if err == nil || !strings.Contains(err.Error(), "many-to-many") {
					t.Fatalf("err = %v", err)
				}
			},
		},
		{
			name:      "empty result is no data",
			answer:    func(int) (int, string) { return 200, matrixBody(testStart, testStep) },
			wantCalls: 1,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, providers.ErrNoData) {
					t.Fatalf("err = %v, want ErrNoData", err)
				}
			},
		},
		{
			name: "a series of NaN only is no data",
			answer: func(int) (int, string) {
				return 200, matrixBody(testStart, testStep, series{at: map[int]string{0: "NaN", 1: "NaN"}})
			},
			wantCalls: 1,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, providers.ErrNoData) {
					t.Fatalf("err = %v, want ErrNoData", err)
				}
			},
		},
		{
			name: "several series must be aggregated",
			answer: func(int) (int, string) {
				return 200, matrixBody(testStart, testStep,
					series{labels: map[string]string{"pod": "a"}, at: map[int]string{0: "1"}},
					series{labels: map[string]string{"pod": "b"}, at: map[int]string{0: "2"}})
			},
			wantCalls: 1,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrManySeries) || !strings.Contains(err.Error(), `pod="b"`) {
					t.Fatalf("err = %v, want ErrManySeries naming the series", err)
				}
			},
		},
		{
			name: "malformed JSON is an error, not retried",
			answer: func(int) (int, string) {
				return 200, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,`
			},
			wantCalls: 1,
			check: func(t *testing.T, err error) {
				var ae *v1.Error
				if !errors.As(err, &ae) || ae.Type != v1.ErrBadResponse {
					t.Fatalf("err = %v, want bad_response", err)
				}
			},
		},
		{
			name:      "a vector answer is unexpected",
			answer:    func(int) (int, string) { return 200, `{"status":"success","data":{"resultType":"vector","result":[]}}` },
			wantCalls: 1,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrUnexpectedResult) {
					t.Fatalf("err = %v, want ErrUnexpectedResult", err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t, func(c providers.Cohort, n int, _ string, w http.ResponseWriter, _ *http.Request) {
				if c != providers.Canary {
					writeJSON(w, 200, ok)
					return
				}
				code, body := tc.answer(n)
				writeJSON(w, code, body)
			})
			p, _ := newTestProvider(t, f.srv.URL, nil)
			_, err := p.Pair(t.Context(), latency, testWindow)
			tc.check(t, err)
			if got := f.callsOf(providers.Canary); got != tc.wantCalls {
				t.Errorf("canary calls = %d, want %d", got, tc.wantCalls)
			}
		})
	}
}

func TestPairPerAttemptTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f := newFakeAPI(t, func(_ providers.Cohort, _ int, _ string, w http.ResponseWriter, r *http.Request) {
		select { // hang until the client gives up
		case <-r.Context().Done():
		case <-release:
		}
	})
	p, _ := newTestProvider(t, f.srv.URL, func(c *Config) { c.Timeout = 100 * time.Millisecond; c.Retries = 1 })
	begin := time.Now()
	_, err := p.Pair(t.Context(), errorRate, testWindow)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline exceeded", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("took %v; the per-attempt timeout did not bound the query", d)
	}
	if n := f.callsOf(providers.Canary); n != 2 {
		t.Errorf("canary calls = %d, want 2 (one retry)", n)
	}
}

func TestPairCallerCancelStopsRetrying(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	f := newFakeAPI(t, func(_ providers.Cohort, _ int, _ string, w http.ResponseWriter, _ *http.Request) {
		cancel()
		writeJSON(w, 503, "down")
	})
	p, _ := newTestProvider(t, f.srv.URL, func(c *Config) { c.Backoff = time.Hour; c.Retries = 5 })
	_, err := p.Pair(ctx, latency, testWindow)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := f.callsOf(providers.Canary); n > 1 {
		t.Errorf("canary calls = %d after cancel, want at most 1", n)
	}
}

func TestPairLogsWarnings(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, func(_ providers.Cohort, _ int, _ string, w http.ResponseWriter, _ *http.Request) {
		body := matrixBody(testStart, testStep, series{at: map[int]string{0: "1"}})
		body = strings.TrimSuffix(body, "}") + `,"warnings":["PromQL warning: encountered a mix of histograms and floats"]}`
		writeJSON(w, 200, body)
	})
	p, logs := newTestProvider(t, f.srv.URL, nil)
	if _, err := p.Pair(t.Context(), latency, testWindow); err != nil {
		t.Fatalf("Pair: %v", err)
	}
	if out := logs.String(); !strings.Contains(out, "mix of histograms and floats") || !strings.Contains(out, "cohort=canary") {
		t.Errorf("warnings not logged with metric and cohort:\n%s", out)
	}
}

func TestPairRejectsBadWindows(t *testing.T) {
	t.Parallel()
	p, err := NewWithAPI(Config{}, stubRanger{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		w    providers.Window
		want string
	}{
		{"zero", providers.Window{}, "window: start and end are required"},
		{"no step", providers.Window{Start: testStart, End: testStart.Add(time.Hour)}, "window.step"},
		{"reversed", providers.Window{Start: testStart, End: testStart.Add(-time.Hour), Step: time.Second}, "is before start"},
		{"too many points", providers.Window{Start: testStart, End: testStart.Add(24 * time.Hour), Step: time.Second}, "more than 11000 points"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Pair(t.Context(), latency, tc.w)
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a ConfigError containing %q", err, tc.want)
			}
		})
	}
}

// stubRanger answers every query with an empty matrix.
type stubRanger struct{}

func (stubRanger) QueryRange(context.Context, string, v1.Range, ...v1.Option) (model.Value, v1.Warnings, error) {
	return model.Matrix{}, nil, nil
}

// TestPairCatchesTheSameSeriesOnceThereIsData: the check the preflight cannot do before the
// cohorts have data is done on every fetch.
func TestPairCatchesTheSameSeriesOnceThereIsData(t *testing.T) {
	t.Parallel()
	same := matrixBody(testStart, testStep, series{labels: map[string]string{"job": "proxy"}, at: map[int]string{0: "3", 1: "4", 2: "5", 3: "4"}})
	f := newFakeAPI(t, func(_ providers.Cohort, _ int, _ string, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, same)
	})
	p, _ := newTestProvider(t, f.srv.URL, nil)
	_, err := p.Pair(t.Context(), providers.Metric{Name: "rps", Kind: providers.Query,
		Query: `sum by (job) (rate(canaryctl_proxy_requests_total[1m])) # {{.Selector}}`}, testWindow)
	var ce *ConfigError
	if !errors.Is(err, ErrSameSeries) || !errors.As(err, &ce) || ce.Field != "metrics[rps].query" {
		t.Fatalf("err = %v, want ErrSameSeries on metrics[rps].query", err)
	}
}

// rangeRecorder records the ranges and queries it is asked for and answers with one empty series.
type rangeRecorder struct {
	ranges  []v1.Range
	queries []string
}

func (r *rangeRecorder) QueryRange(_ context.Context, q string, rg v1.Range, _ ...v1.Option) (model.Value, v1.Warnings, error) {
	r.ranges = append(r.ranges, rg)
	r.queries = append(r.queries, q)
	return model.Matrix{}, nil, nil
}

// TestPointsDoNotOverlap: a resolution finer than the rate window is decimated, so consecutive
// points never share data (Mann-Whitney takes them as independent); the query's step and its rate
// window are the same.
func TestPointsDoNotOverlap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		step, min time.Duration
		want      time.Duration
	}{
		{"10s resolution, default 30s window: 30s points", 10 * time.Second, 0, 30 * time.Second},
		{"10s resolution, 10s window", 10 * time.Second, 10 * time.Second, 10 * time.Second},
		{"1m resolution above the window", time.Minute, 0, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &rangeRecorder{}
			p, err := NewWithAPI(Config{MinWindow: tc.min}, rec)
			if err != nil {
				t.Fatal(err)
			}
			w := providers.Window{Start: testStart, End: testStart.Add(5 * time.Minute), Step: tc.step}
			if _, err := p.Pair(t.Context(), errorRate, w); !errors.Is(err, providers.ErrNoData) {
				t.Fatalf("Pair: %v, want ErrNoData from the empty answers", err)
			}
			if len(rec.ranges) != 2 {
				t.Fatalf("%d queries, want 2", len(rec.ranges))
			}
			for i, rg := range rec.ranges {
				if rg.Step != tc.want || !rg.Start.Equal(w.Start) || !rg.End.Equal(w.End) {
					t.Errorf("range %+v, want step %s over the window", rg, tc.want)
				}
				if win := "[" + promDuration(tc.want) + "]"; !strings.Contains(rec.queries[i], win) {
					t.Errorf("query %s: rate window is not %s", rec.queries[i], win)
				}
			}
		})
	}
}
