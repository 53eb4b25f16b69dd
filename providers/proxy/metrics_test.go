package proxy

import (
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/canaryctl/canaryctl/providers"
)

func testMetrics() *metrics { return newMetrics(slog.New(slog.DiscardHandler)) }

// scrape fetches the metrics through the promhttp handler with the given Accept header.
func scrape(t *testing.T, m *metrics, accept string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	w := httptest.NewRecorder()
	m.handler.ServeHTTP(w, r)
	return w.Result()
}

func gatherFamily(t *testing.T, m *metrics, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

// TestMetricsExposition: names, labels and values in the text format, series only for what was
// seen, status codes outside 100..599 as code="other", and the two CounterFuncs.
func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	m := testMetrics()
	for range 3 {
		m.observe(iCanary, 0, 200, 2*time.Millisecond)
	}
	m.observe(iCanary, 0, 503, 5*time.Millisecond)
	m.observe(iStable, 1, 404, time.Millisecond)
	m.observe(iStable, 0, 0, time.Millisecond)
	m.observe(iStable, 0, 999, -time.Millisecond) // negative latency counts as 0
	m.fallback.Add(7)
	m.refused.Add(2)

	resp := scrape(t, m, "")
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q, want the text format 0.0.4", ct)
	}
	for _, want := range []string{
		`# TYPE canaryctl_proxy_requests_total counter`,
		`canaryctl_proxy_requests_total{code="200",cohort="canary",route="split"} 3`,
		`canaryctl_proxy_requests_total{code="503",cohort="canary",route="split"} 1`,
		`canaryctl_proxy_requests_total{code="404",cohort="stable",route="rule"} 1`,
		`canaryctl_proxy_requests_total{code="other",cohort="stable",route="split"} 2`,
		`# TYPE canaryctl_proxy_request_duration_seconds histogram`,
		`canaryctl_proxy_request_duration_seconds_count{cohort="canary",route="split"} 4`,
		`canaryctl_proxy_request_duration_seconds_sum{cohort="canary",route="split"} 0.011`,
		`canaryctl_proxy_request_duration_seconds_bucket{cohort="canary",route="split",le="0.0001"} 0`,
		`canaryctl_proxy_request_duration_seconds_bucket{cohort="canary",route="split",le="+Inf"} 4`,
		`canaryctl_proxy_request_duration_seconds_bucket{cohort="stable",route="split",le="0.0001"} 1`,
		`canaryctl_proxy_fallback_to_stable_total 7`,
		`canaryctl_proxy_upstream_refused_total 2`,
		`go_goroutines `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	for _, absent := range []string{`cohort="baseline"`, `cohort="canary",route="rule"`} {
		if strings.Contains(text, absent) {
			t.Errorf("metrics show %s, which had no request", absent)
		}
	}
	// Every classic bucket bound is exported, each once per series.
	if n := strings.Count(text, `canaryctl_proxy_request_duration_seconds_bucket{cohort="canary",route="split",`); n != len(bucketBounds)+1 {
		t.Errorf("%d buckets for canary, want %d", n, len(bucketBounds)+1)
	}
}

// TestMetricsProtobufHasNativeHistogram: a scrape that asks for protobuf (as Prometheus does with
// native histograms enabled) gets both the classic buckets and a native histogram of schema 3.
func TestMetricsProtobufHasNativeHistogram(t *testing.T) {
	t.Parallel()
	m := testMetrics()
	for i := range 100 {
		m.observe(iBaseline, 0, 200, time.Duration(i+1)*time.Millisecond)
	}
	resp := scrape(t, m, `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited`)
	if got := expfmt.ResponseFormat(resp.Header); got.FormatType() != expfmt.TypeProtoDelim {
		t.Fatalf("format %q, want delimited protobuf", got)
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			t.Fatalf("no canaryctl_proxy_request_duration_seconds in the protobuf scrape: %v", err)
		}
		if mf.GetName() != "canaryctl_proxy_request_duration_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSchema() != 3 {
			t.Errorf("native schema %d, want 3 (factor 1.1)", h.GetSchema())
		}
		if len(h.GetPositiveSpan()) == 0 || len(h.GetBucket()) != len(bucketBounds) {
			t.Errorf("%d spans, %d classic buckets: want both kinds", len(h.GetPositiveSpan()), len(h.GetBucket()))
		}
		if h.GetSampleCount() != 100 {
			t.Errorf("count %d, want 100", h.GetSampleCount())
		}
		return
	}
}

// TestHistogramP99Accuracy: the P99 that Prometheus' histogram_quantile computes from the classic
// buckets (linear interpolation) and from the native buckets (exponential interpolation, as
// Prometheus 3 does for native histograms) is within 4 % of the exact P99, over several latency
// distributions.
func TestHistogramP99Accuracy(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		draw func() float64 // milliseconds
	}{
		{"lognormal around 5ms", func() float64 { return 5 * math.Exp(0.5*rng.NormFloat64()) }},
		{"lognormal around 200ms", func() float64 { return 200 * math.Exp(0.3*rng.NormFloat64()) }},
		{"exponential 1ms", func() float64 { return 0.2 + rng.ExpFloat64() }},
		{"uniform 10-20ms", func() float64 { return 10 + 10*rng.Float64() }},
	} {
		m := testMetrics()
		vals := make([]float64, 100000)
		for i := range vals {
			vals[i] = tc.draw()
			m.observe(iCanary, 0, 200, time.Duration(vals[i]*1e6))
		}
		h := gatherFamily(t, m, "canaryctl_proxy_request_duration_seconds").GetMetric()[0].GetHistogram()
		exact := quantileR7(vals, 0.99)
		for _, est := range []struct {
			kind string
			ms   float64
		}{
			{"classic", 1000 * classicQuantile(0.99, h)},
			{"native", 1000 * nativeQuantile(0.99, h)},
		} {
			if rel := math.Abs(est.ms-exact) / exact; rel > 0.04 || math.IsNaN(rel) {
				t.Errorf("%s: %s histogram P99 %.3f ms vs exact %.3f ms: %.1f%% off", tc.name, est.kind, est.ms, exact, 100*rel)
			} else {
				t.Logf("%s: %s histogram P99 %.3f ms vs exact %.3f ms: %.2f%% off", tc.name, est.kind, est.ms, exact, 100*rel)
			}
		}
	}
}

// classicQuantile is histogram_quantile over classic buckets: linear interpolation inside the
// bucket holding the rank, the first bucket starting at 0.
func classicQuantile(q float64, h *dto.Histogram) float64 {
	rank := q * float64(h.GetSampleCount())
	var prevCum uint64
	lower := 0.0
	for _, b := range h.GetBucket() {
		cum := b.GetCumulativeCount()
		if float64(cum) >= rank && cum > prevCum {
			return lower + (b.GetUpperBound()-lower)*(rank-float64(prevCum))/float64(cum-prevCum)
		}
		prevCum, lower = cum, b.GetUpperBound()
	}
	return lower
}

// nativeQuantile is histogram_quantile over the positive native buckets, interpolating
// exponentially inside the bucket: bucket i spans (2^((i-1)/2^schema), 2^(i/2^schema)].
func nativeQuantile(q float64, h *dto.Histogram) float64 {
	rank := q * float64(h.GetSampleCount())
	cum := float64(h.GetZeroCount())
	if cum >= rank {
		return h.GetZeroThreshold()
	}
	base := math.Pow(2, math.Pow(2, -float64(h.GetSchema())))
	idx, count, d := int32(0), int64(0), 0
	for _, sp := range h.GetPositiveSpan() {
		idx += sp.GetOffset()
		for range sp.GetLength() {
			count += h.GetPositiveDelta()[d]
			d++
			if n := float64(count); cum+n >= rank && n > 0 {
				lo := math.Pow(base, float64(idx-1))
				return lo * math.Pow(base, (rank-cum)/n)
			}
			cum += float64(count)
			idx++
		}
	}
	return math.NaN()
}

// TestRecordDoesNotAllocate: once a cohort, route and code have been seen, counting a request
// and observing its latency (and recording its sample) allocates nothing.
func TestRecordDoesNotAllocate(t *testing.T) {
	p, err := New(Config{Upstreams: map[providers.Cohort][]string{"stable": {"http://127.0.0.1:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	now := p.now()
	up := p.table.Load().upstreams[iStable][0]
	for _, code := range []int{200, 503, 0} {
		p.record(now, 1234567, code, iStable, false, up, 0, 0) // resolves the children
	}
	allocs := testing.AllocsPerRun(1000, func() {
		p.record(now, 1234567, 200, iStable, false, up, 0, 0)
		p.record(now, 7654321, 503, iStable, false, up, 0, 0)
		p.record(now, 100, 0, iStable, false, up, 0, 0)
	})
	if allocs != 0 {
		t.Fatalf("recording a request allocates %v times", allocs)
	}
}

// TestMetricsConcurrentFirstUse: many goroutines hitting unseen series at once (run with -race)
// lose no count.
func TestMetricsConcurrentFirstUse(t *testing.T) {
	t.Parallel()
	m := testMetrics()
	const workers, each = 8, 500
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				m.observe(w%nCohorts, 0, 200+i%3, time.Duration(i)*time.Microsecond)
			}
		}()
	}
	for range workers {
		<-done
	}
	var total float64
	for _, mt := range gatherFamily(t, m, "canaryctl_proxy_requests_total").GetMetric() {
		total += mt.GetCounter().GetValue()
	}
	if total != workers*each {
		t.Fatalf("counted %v requests, want %d", total, workers*each)
	}
}
