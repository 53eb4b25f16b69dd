package prometheus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// fakeAPI is an httptest server speaking Prometheus's /api/v1/query_range. handle answers the
// n-th call (from 1) for one cohort; the cohort is read from the query's cohort matcher.
type fakeAPI struct {
	srv    *httptest.Server
	mu     sync.Mutex
	calls  map[providers.Cohort]int
	forms  []map[string]string
	handle func(c providers.Cohort, n int, query string, w http.ResponseWriter, r *http.Request)
}

func newFakeAPI(t *testing.T, handle func(c providers.Cohort, n int, query string, w http.ResponseWriter, r *http.Request)) *fakeAPI {
	t.Helper()
	f := &fakeAPI{calls: map[providers.Cohort]int{}, handle: handle}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query_range" {
			http.Error(w, "unexpected path "+r.URL.Path, http.StatusNotFound)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		q := r.Form.Get("query")
		c := cohortOf(q)
		f.mu.Lock()
		f.calls[c]++
		n := f.calls[c]
		form := map[string]string{}
		for k := range r.Form {
			form[k] = r.Form.Get(k)
		}
		f.forms = append(f.forms, form)
		f.mu.Unlock()
		f.handle(c, n, q, w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) callsOf(c providers.Cohort) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[c]
}

func cohortOf(q string) providers.Cohort {
	for _, c := range providers.Cohorts {
		if strings.Contains(q, `"`+string(c)+`"`) || strings.Contains(q, `'`+string(c)+`'`) {
			return c
		}
	}
	return ""
}

// series is one answer series: its labels and values at the given offsets (in steps) from start.
type series struct {
	labels map[string]string
	at     map[int]string
}

func matrixBody(start time.Time, step time.Duration, ss ...series) string {
	type res struct {
		Metric map[string]string `json:"metric"`
		Values [][2]any          `json:"values"`
	}
	out := []res{}
	for _, s := range ss {
		r := res{Metric: s.labels, Values: [][2]any{}}
		if r.Metric == nil {
			r.Metric = map[string]string{}
		}
		for i := 0; i < 1000; i++ {
			if v, ok := s.at[i]; ok {
				ts := float64(start.Add(time.Duration(i)*step).UnixMilli()) / 1000
				r.Values = append(r.Values, [2]any{ts, v})
			}
		}
		out = append(out, r)
	}
	b, _ := json.Marshal(map[string]any{"status": "success", "data": map[string]any{"resultType": "matrix", "result": out}})
	return string(b)
}

func writeJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprint(w, body)
}

func apiErrorBody(typ, msg string) string {
	return fmt.Sprintf(`{"status":"error","errorType":%q,"error":%q}`, typ, msg)
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLogger(buf *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var (
	testStart  = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	testStep   = 30 * time.Second
	testWindow = providers.Window{Start: testStart, End: testStart.Add(4 * testStep), Step: testStep}
	latency    = providers.Metric{Name: "latency", Kind: providers.LatencyQuantile, Quantile: 0.99}
	errorRate  = providers.Metric{Name: "errors", Kind: providers.ErrorRate}
)
