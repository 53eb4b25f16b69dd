package proxy

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"sync/atomic"
	"time"
)

// The Prometheus exposition is written by hand in the text format (version 0.0.4): the pinned
// client_golang v1.25.0 cannot be built on this project's machines, because its dependency
// prometheus/common/expfmt needs github.com/pandatix/go-abnf, which the module proxy does not
// serve. The format is small and stable; metric and label names follow client_golang's
// conventions so dashboards need not change if we switch back.

// Latency buckets grow by 7 % from 100 µs to 60 s (198 upper bounds plus +Inf). Prometheus'
// histogram_quantile interpolates linearly inside a bucket, so its P99 is within a few percent of
// the true value (TestHistogramP99Accuracy measures it).
const (
	bucketMin    = 100 * time.Microsecond
	bucketFactor = 1.07
	bucketMax    = 60 * time.Second
)

var bucketBounds = func() []int64 {
	var b []int64
	for v := float64(bucketMin); v <= float64(bucketMax)*bucketFactor; v *= bucketFactor {
		b = append(b, int64(v))
	}
	return b
}()

var routeNames = [2]string{"split", "rule"}

type histogram struct {
	counts []atomic.Uint64 // one per bound plus +Inf, not cumulative
	sumNS  atomic.Uint64
	count  atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	ns := max(int64(d), 0)
	i := sort.Search(len(bucketBounds), func(i int) bool { return bucketBounds[i] >= ns })
	h.counts[i].Add(1)
	h.sumNS.Add(uint64(ns))
	h.count.Add(1)
}

type metrics struct {
	requests [nCohorts][2][600]atomic.Uint64 // by cohort, route, status code
	other    [nCohorts][2]atomic.Uint64      // status codes outside 100..599
	latency  [nCohorts][2]histogram
	fallback atomic.Uint64
	refused  atomic.Uint64
}

func newMetrics() *metrics {
	m := &metrics{}
	for c := range nCohorts {
		for r := range 2 {
			m.latency[c][r].counts = make([]atomic.Uint64, len(bucketBounds)+1)
		}
	}
	return m
}

func (m *metrics) count(ci, route, status int) {
	if status < 100 || status >= 600 {
		m.other[ci][route].Add(1)
		return
	}
	m.requests[ci][route][status].Add(1)
}

// writeTo writes the metrics in the Prometheus text format.
func (m *metrics) writeTo(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	fmt.Fprintln(bw, "# HELP canaryctl_proxy_requests_total Proxied requests by cohort, HTTP status code and route (split or rule).")
	fmt.Fprintln(bw, "# TYPE canaryctl_proxy_requests_total counter")
	for c := range nCohorts {
		for r := range 2 {
			for code := 100; code < 600; code++ {
				if n := m.requests[c][r][code].Load(); n > 0 {
					fmt.Fprintf(bw, "canaryctl_proxy_requests_total{cohort=%q,code=\"%d\",route=%q} %d\n", cohortNames[c], code, routeNames[r], n)
				}
			}
			if n := m.other[c][r].Load(); n > 0 {
				fmt.Fprintf(bw, "canaryctl_proxy_requests_total{cohort=%q,code=\"other\",route=%q} %d\n", cohortNames[c], routeNames[r], n)
			}
		}
	}
	fmt.Fprintln(bw, "# HELP canaryctl_proxy_request_duration_seconds Time from receiving a request to finishing its response, by cohort and route.")
	fmt.Fprintln(bw, "# TYPE canaryctl_proxy_request_duration_seconds histogram")
	for c := range nCohorts {
		for r := range 2 {
			h := &m.latency[c][r]
			if h.count.Load() == 0 {
				continue
			}
			var cum uint64
			labels := fmt.Sprintf("cohort=%q,route=%q", cohortNames[c], routeNames[r])
			for i, b := range bucketBounds {
				cum += h.counts[i].Load()
				fmt.Fprintf(bw, "canaryctl_proxy_request_duration_seconds_bucket{%s,le=\"%s\"} %d\n", labels,
					strconv.FormatFloat(float64(b)/1e9, 'g', -1, 64), cum)
			}
			cum += h.counts[len(bucketBounds)].Load()
			fmt.Fprintf(bw, "canaryctl_proxy_request_duration_seconds_bucket{%s,le=\"+Inf\"} %d\n", labels, cum)
			fmt.Fprintf(bw, "canaryctl_proxy_request_duration_seconds_sum{%s} %s\n", labels,
				strconv.FormatFloat(float64(h.sumNS.Load())/1e9, 'g', -1, 64))
			fmt.Fprintf(bw, "canaryctl_proxy_request_duration_seconds_count{%s} %d\n", labels, cum)
		}
	}
	fmt.Fprintln(bw, "# HELP canaryctl_proxy_fallback_to_stable_total Requests for baseline or canary sent to stable because that cohort was empty or backed off.")
	fmt.Fprintln(bw, "# TYPE canaryctl_proxy_fallback_to_stable_total counter")
	fmt.Fprintf(bw, "canaryctl_proxy_fallback_to_stable_total %d\n", m.fallback.Load())
	fmt.Fprintln(bw, "# HELP canaryctl_proxy_upstream_refused_total Failed connections to an upstream, each putting it in back-off.")
	fmt.Fprintln(bw, "# TYPE canaryctl_proxy_upstream_refused_total counter")
	fmt.Fprintf(bw, "canaryctl_proxy_upstream_refused_total %d\n", m.refused.Load())
	return bw.Flush()
}

// quantile estimates the q-quantile of a histogram the way Prometheus' histogram_quantile does
// (linear interpolation inside the bucket); used by tests to bound the estimation error.
func (h *histogram) quantile(q float64) float64 {
	total := h.count.Load()
	if total == 0 {
		return math.NaN()
	}
	rank := q * float64(total)
	var cum uint64
	lower := 0.0
	for i, b := range bucketBounds {
		n := h.counts[i].Load()
		if float64(cum+n) >= rank && n > 0 {
			return lower + (float64(b)-lower)*(rank-float64(cum))/float64(n)
		}
		cum += n
		lower = float64(b)
	}
	return lower
}

func metricsHandler(m *metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = m.writeTo(w)
	})
}
