package proxy

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Each Proxy has its own prometheus.Registry (never the global one), served by promhttp, so
// several proxies in one process (tests, the demo) keep separate counts.

// Classic latency buckets grow by 7 % from 100 µs to just over 60 s (198 upper bounds plus
// +Inf). Prometheus' histogram_quantile interpolates linearly inside a bucket, so its P99 is within
// a few percent of the true value (TestHistogramP99Accuracy measures it).
const (
	bucketMin    = 100 * time.Microsecond
	bucketFactor = 1.07
	bucketMax    = 60 * time.Second
)

// Native histogram settings, used when Prometheus scrapes the protobuf format with native
// histograms enabled: a bucket factor of 1.1 gives schema 3 (buckets growing by 2^(1/8), about
// 9 %). 100 µs to 60 s takes 154 such buckets; past 160 populated buckets client_golang first
// resets the histogram (at most once an hour) and otherwise halves its resolution.
const (
	nativeBucketFactor = 1.1
	nativeMaxBuckets   = 160
	nativeMinReset     = time.Hour
)

var bucketBounds = func() []float64 {
	n := 0
	for v := float64(bucketMin); v <= float64(bucketMax)*bucketFactor; v *= bucketFactor {
		n++
	}
	return prometheus.ExponentialBuckets(bucketMin.Seconds(), bucketFactor, n)
}()

var routeNames = [2]string{"split", "rule"}

const (
	codeMin = 100
	codeMax = 600 // exclusive; codes outside [codeMin, codeMax) are counted as code="other"
)

// The vec children are resolved on first use and then cached in these arrays, indexed by
// cohort, route and status code, so a request costs two atomic loads and the counter and
// histogram updates: no label hashing, no map lookup and no allocation (BenchmarkProxyRecord,
// TestRecordDoesNotAllocate). A series appears on /metrics only once it has a request (as with
// the earlier hand-written exposition), so a cohort with no traffic has no series.
type counterRef struct{ c prometheus.Counter }
type observerRef struct{ o prometheus.Observer }

type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec

	codes   [nCohorts][2][codeMax - codeMin]atomic.Pointer[counterRef]
	other   [nCohorts][2]atomic.Pointer[counterRef]
	latObs  [nCohorts][2]atomic.Pointer[observerRef]
	handler http.Handler

	fallback atomic.Uint64 // exported through a CounterFunc
	refused  atomic.Uint64 // exported through a CounterFunc
}

func newMetrics(log *slog.Logger) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canaryctl_proxy_requests_total",
		Help: "Proxied requests by cohort, HTTP status code and route (split or rule).",
	}, []string{"cohort", "code", "route"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                            "canaryctl_proxy_request_duration_seconds",
		Help:                            "Time from receiving a request to finishing its response, by cohort and route.",
		Buckets:                         bucketBounds,
		NativeHistogramBucketFactor:     nativeBucketFactor,
		NativeHistogramMaxBucketNumber:  nativeMaxBuckets,
		NativeHistogramMinResetDuration: nativeMinReset,
	}, []string{"cohort", "route"})
	m.reg.MustRegister(
		m.requests,
		m.latency,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "canaryctl_proxy_fallback_to_stable_total",
			Help: "Requests for baseline or canary sent to stable because that cohort was empty or backed off.",
		}, func() float64 { return float64(m.fallback.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "canaryctl_proxy_upstream_refused_total",
			Help: "Failed connections to an upstream, each putting it in back-off.",
		}, func() float64 { return float64(m.refused.Load()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg, // promhttp_metric_handler_errors_total
	})
	return m
}

// counter returns the requests counter of a cohort, route and status code.
func (m *metrics) counter(ci, route, status int) prometheus.Counter {
	slot := &m.other[ci][route]
	code := "other"
	if status >= codeMin && status < codeMax {
		slot = &m.codes[ci][route][status-codeMin]
		code = ""
	}
	if r := slot.Load(); r != nil {
		return r.c
	}
	if code == "" {
		code = strconv.Itoa(status)
	}
	// Racing first requests resolve the same child; whichever stores last wins, harmlessly.
	r := &counterRef{m.requests.WithLabelValues(string(cohortNames[ci]), code, routeNames[route])}
	slot.Store(r)
	return r.c
}

// observer returns the latency histogram of a cohort and route.
func (m *metrics) observer(ci, route int) prometheus.Observer {
	slot := &m.latObs[ci][route]
	if r := slot.Load(); r != nil {
		return r.o
	}
	r := &observerRef{m.latency.WithLabelValues(string(cohortNames[ci]), routeNames[route])}
	slot.Store(r)
	return r.o
}

// observe counts one finished request and its latency.
func (m *metrics) observe(ci, route, status int, lat time.Duration) {
	m.counter(ci, route, status).Inc()
	m.observer(ci, route).Observe(max(lat, 0).Seconds())
}
