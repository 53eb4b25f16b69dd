// Package promtest starts a real Prometheus server and a canary scenario for integration tests:
// two real upstreams (the canary slower, and optionally failing) behind the built-in proxy, whose
// /metrics the Prometheus server scrapes every second.
//
// A missing prometheus binary fails the test (skipping is not passing) with the command that
// installs it.
package promtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/proxy"
)

// InstallHint is printed when the prometheus binary is missing.
const InstallHint = "the prometheus binary is required by this integration test: install it with `apt-get install -y prometheus` " +
	"(Debian/Ubuntu; .ci/run does this) or put a Prometheus 2.x binary on PATH or in $PROMETHEUS_BIN"

// Binary finds the prometheus binary: $PROMETHEUS_BIN, PATH, then /usr/bin/prometheus.
func Binary() (string, error) {
	if b := os.Getenv("PROMETHEUS_BIN"); b != "" {
		if _, err := os.Stat(b); err != nil {
			return "", fmt.Errorf("PROMETHEUS_BIN=%s: %w; %s", b, err, InstallHint)
		}
		return b, nil
	}
	if b, err := exec.LookPath("prometheus"); err == nil {
		return b, nil
	}
	if _, err := os.Stat("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus", nil
	}
	return "", errors.New(InstallHint)
}

// Server is a running Prometheus on a loopback port with a temporary data directory.
type Server struct {
	URL string
}

// Target is a scrape target: host:port, with the bearer token its /metrics needs (the built-in
// proxy serves /metrics on its admin API, behind the admin token).
type Target struct {
	Addr        string
	BearerToken string
}

// Start runs Prometheus scraping targets (host:port, path /metrics) every second. It is stopped
// when the test ends; its log is printed if the test failed.
func Start(t testing.TB, targets ...string) *Server {
	t.Helper()
	ts := make([]Target, len(targets))
	for i, a := range targets {
		ts[i] = Target{Addr: a}
	}
	return StartTargets(t, ts...)
}

// StartTargets is Start with a bearer token per target. All targets share the job "canaryctl".
func StartTargets(t testing.TB, targets ...Target) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var conf strings.Builder
	conf.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n")
	for i, tg := range targets {
		// One scrape config per target (same job name is not allowed twice; the job label is
		// set back to "canaryctl" by relabelling).
		fmt.Fprintf(&conf, "  - job_name: canaryctl-%d\n", i)
		if tg.BearerToken != "" {
			fmt.Fprintf(&conf, "    authorization: {type: Bearer, credentials: %s}\n", strconv.Quote(tg.BearerToken))
		}
		fmt.Fprintf(&conf, "    static_configs: [{targets: [%s]}]\n", strconv.Quote(tg.Addr))
		conf.WriteString("    relabel_configs: [{target_label: job, replacement: canaryctl}]\n")
	}
	confPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServer(t, bin, confPath, filepath.Join(dir, "data"), "1h", 30*time.Second)
}

// WaitUp waits until Prometheus has scraped n targets successfully.
func (s *Server) WaitUp(t testing.TB, n int) {
	t.Helper()
	q := fmt.Sprintf(`count(up{job="canaryctl"} == 1) >= %d`, n)
	if err := poll(20*time.Second, 200*time.Millisecond, func() (bool, error) { return hasData(s.URL, q), nil }); err != nil {
		t.Fatalf("prometheus did not scrape %d targets: %v", n, err)
	}
}

// poll calls f every interval until it reports done, returns an error, or timeout passes.
func poll(timeout, interval time.Duration, f func() (bool, error)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-deadline.C:
			return fmt.Errorf("still not done after %v", timeout)
		case <-tick.C:
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// ScenarioConfig describes the upstreams of a canary scenario.
type ScenarioConfig struct {
	// BaselineDelay and CanaryDelay are added to every response of that cohort (stable uses
	// BaselineDelay).
	BaselineDelay, CanaryDelay time.Duration
	// CanaryErrorEvery makes every n-th canary response a 500 (0: never).
	CanaryErrorEvery int
	// Split is the proxy's split; zero means a third each.
	Split providers.Split
	// Duration bounds the load; Concurrency is the number of clients (default 4); MaxRequests
	// bounds the total (default 20000).
	Duration    time.Duration
	Concurrency int
	MaxRequests int
	// MinScrapes: after Duration the load goes on until Prometheus holds this many successful scrapes
	// of every target since Start+JudgedFrom (the window a test judges), for at most 4×Duration in
	// all. On a loaded machine scrapes time out (scrape_timeout is 1 s) and a window with a few
	// points cannot show anything: Mann-Whitney at 98% needs 5 and 5. 0: Duration alone.
	MinScrapes int
	JudgedFrom time.Duration
	// Until, when set, must also report true before the load ends (polled after Duration, with
	// MinScrapes): e.g. that the judged window already holds the points a verdict needs.
	Until func(s *Scenario, now time.Time) bool
	// AppMetrics makes the upstreams export their own request histogram, as an application
	// instrumented with client_golang's promhttp would: http_request_duration_seconds{track,code},
	// track being the cohort (stable, baseline, canary). Prometheus scrapes it too.
	AppMetrics bool
}

// Scenario is a proxy in front of real upstreams under load, scraped by a real Prometheus.
type Scenario struct {
	Prometheus *Server
	Proxy      *proxy.Proxy
	ProxyURL   string
	// Start and End bracket the load.
	Start, End time.Time
	// Requests counts the requests sent; Scrapes the fewest successful scrapes of a target since
	// Start+JudgedFrom when the load ended (with MinScrapes).
	Requests int64
	Scrapes  int
}

// RunScenario starts the upstreams, the proxy, its metrics endpoint and Prometheus, sends load
// for cfg.Duration, and waits until Prometheus has scraped the end of the load.
func RunScenario(t testing.TB, cfg ScenarioConfig) *Scenario {
	t.Helper()
	if cfg.Split == (providers.Split{}) {
		cfg.Split = providers.Split{Canary: 3333, Baseline: 3333}
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = 20000
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	appHist := newAppHistogram()
	upstream := func(track providers.Cohort, delay time.Duration, errEvery int) string {
		var n atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			began := time.Now()
			code := http.StatusOK
			defer func() {
				if cfg.AppMetrics {
					appHist.observe(string(track), strconv.Itoa(code), time.Since(began).Seconds())
				}
			}()
			if delay > 0 {
				tm := time.NewTimer(delay)
				select {
				case <-tm.C:
				case <-r.Context().Done():
					tm.Stop()
				}
			}
			if errEvery > 0 && n.Add(1)%int64(errEvery) == 0 {
				code = http.StatusInternalServerError
				http.Error(w, "canary failure", code)
				return
			}
			fmt.Fprintln(w, "ok")
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	p, err := proxy.New(proxy.Config{
		Upstreams: map[providers.Cohort][]string{
			providers.Stable:   {upstream(providers.Stable, cfg.BaselineDelay, 0)},
			providers.Baseline: {upstream(providers.Baseline, cfg.BaselineDelay, 0)},
			providers.Canary:   {upstream(providers.Canary, cfg.CanaryDelay, cfg.CanaryErrorEvery)},
		},
		Split: cfg.Split,
	})
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	metrics := httptest.NewServer(p.MetricsHandler())
	t.Cleanup(metrics.Close)

	targets := []string{strings.TrimPrefix(metrics.URL, "http://")}
	if cfg.AppMetrics {
		app := httptest.NewServer(appHist)
		t.Cleanup(app.Close)
		targets = append(targets, strings.TrimPrefix(app.URL, "http://"))
	}
	server := Start(t, targets...)
	// Wait for the first scrape so the load's first seconds are seen.
	server.WaitUp(t, len(targets))

	s := &Scenario{Prometheus: server, Proxy: p, ProxyURL: front.URL, Start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), 4*cfg.Duration)
	defer cancel()
	var sent atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for range cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil && sent.Add(1) <= int64(cfg.MaxRequests) {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+"/", nil)
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	// The load ends after Duration, or once Prometheus holds MinScrapes successful scrapes of every
	// target in the judged window.
	if !sleepCtx(ctx, cfg.Duration) && (cfg.MinScrapes > 0 || cfg.Until != nil) {
		from := s.Start.Add(cfg.JudgedFrom)
		_ = poll(3*cfg.Duration, 200*time.Millisecond, func() (bool, error) {
			s.Scrapes = successfulScrapes(server.URL, from, len(targets))
			done := s.Scrapes >= cfg.MinScrapes && (cfg.Until == nil || cfg.Until(s, time.Now()))
			return done || ctx.Err() != nil, nil
		})
	}
	cancel()
	wg.Wait()
	s.End = time.Now()
	s.Requests = min(sent.Load(), int64(cfg.MaxRequests))
	// Two more scrapes so the last step of the window has its samples.
	end := s.End
	if err := poll(15*time.Second, 200*time.Millisecond, func() (bool, error) {
		return scrapedAfter(server.URL, end.Add(1500*time.Millisecond)), nil
	}); err != nil {
		t.Fatalf("prometheus did not scrape after the load: %v", err)
	}
	return s
}

// sleepCtx waits d or until ctx ends; it reports whether ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return false
	case <-ctx.Done():
		return true
	}
}

// successfulScrapes returns the fewest successful scrapes of any of the n targets since from (0
// until every target has some).
func successfulScrapes(base string, from time.Time, n int) int {
	secs := int(time.Since(from).Seconds())
	if secs < 1 {
		return 0
	}
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(fmt.Sprintf("sum_over_time(up[%ds])", secs)))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&body) != nil || len(body.Data.Result) < n {
		return 0
	}
	fewest := -1
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0
		}
		if fewest < 0 || int(v) < fewest {
			fewest = int(v)
		}
	}
	return fewest
}

// hasData reports whether an instant query returns a non-empty vector.
func hasData(base, query string) bool {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode == 200 && strings.Contains(b.String(), `"result":[{`)
}

// scrapedAfter reports whether the newest scrape of the proxy is later than t.
func scrapedAfter(base string, t time.Time) bool {
	return hasData(base, fmt.Sprintf(`timestamp(up{job="canaryctl"}) > %d`, t.Unix()))
}

// appHistogram is an application's request histogram in Prometheus's text format, the shape
// client_golang's promhttp exports: http_request_duration_seconds{track,code}. (A few lines here
// rather than pulling client_golang's instrumentation packages into go.mod for a test helper.)
type appHistogram struct {
	mu     sync.Mutex
	bounds []float64
	series map[[2]string]*appSeries
}

type appSeries struct {
	buckets     []uint64
	sum         float64
	count       uint64
	track, code string
}

func newAppHistogram() *appHistogram {
	h := &appHistogram{series: map[[2]string]*appSeries{}}
	for b := 0.0005; b < 20; b *= 1.25 {
		h.bounds = append(h.bounds, b)
	}
	return h
}

func (h *appHistogram) observe(track, code string, v float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := [2]string{track, code}
	s := h.series[k]
	if s == nil {
		s = &appSeries{buckets: make([]uint64, len(h.bounds)), track: track, code: code}
		h.series[k] = s
	}
	for i, b := range h.bounds {
		if v <= b {
			s.buckets[i]++
		}
	}
	s.sum += v
	s.count++
}

func (h *appHistogram) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintln(w, "# TYPE http_request_duration_seconds histogram")
	for _, s := range h.series {
		l := fmt.Sprintf(`track=%q,code=%q`, s.track, s.code)
		for i, b := range h.bounds {
			fmt.Fprintf(w, "http_request_duration_seconds_bucket{%s,le=%q} %d\n", l, strconv.FormatFloat(b, 'g', -1, 64), s.buckets[i])
		}
		fmt.Fprintf(w, "http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %d\n", l, s.count)
		fmt.Fprintf(w, "http_request_duration_seconds_sum{%s} %g\n", l, s.sum)
		fmt.Fprintf(w, "http_request_duration_seconds_count{%s} %d\n", l, s.count)
	}
}

// listeningRE is the line Prometheus logs (at level info) once it listens: the address it bound.
var listeningRE = regexp.MustCompile(`msg="Listening on" address=(\S+)`)

// startServer starts prometheus on a loopback port with confPath and the TSDB in data, stops it when the
// test ends (its log shown if the test failed), and waits up to ready for /-/ready. Prometheus binds
// port 0 itself and logs the port it got: a port picked here and closed before Prometheus binds it
// could be taken in between by another test's listener.
func startServer(t testing.TB, bin, confPath, data, retention string, ready time.Duration) *Server {
	t.Helper()
	var out lockedBuffer
	cmd := exec.Command(bin, "--config.file="+confPath, "--storage.tsdb.path="+data,
		"--web.listen-address=127.0.0.1:0", "--log.level=info", "--storage.tsdb.retention.time="+retention)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", out.String())
		}
	})
	s := &Server{}
	if err := poll(ready, 100*time.Millisecond, func() (bool, error) {
		select {
		case <-done:
			return false, fmt.Errorf("prometheus exited early:\n%s", out.String())
		default:
		}
		if s.URL == "" {
			m := listeningRE.FindStringSubmatch(out.String())
			if m == nil {
				return false, nil
			}
			s.URL = "http://" + m[1]
		}
		resp, err := http.Get(s.URL + "/-/ready")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		t.Fatalf("prometheus (%s) not ready: %v\n%s", s.URL, err, out.String())
	}
	return s
}
