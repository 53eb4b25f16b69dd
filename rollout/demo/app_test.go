package demo

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestApp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		behaviour     Behaviour
		minD, maxD    time.Duration // bounds of every drawn latency
		median, p99   time.Duration // of the 4000 drawn latencies, within 10%
		minErr, maxEr float64       // bounds of the share of 500s over 4000 requests
	}{
		// 10 ms + 5 ms·exp(0.75·Z): median 15 ms, P99 10 + 5·exp(0.75·2.326) = 38.6 ms
		{name: "good", behaviour: Good, minD: 10 * time.Millisecond, maxD: 110 * time.Millisecond, median: 15 * time.Millisecond, p99: 38600 * time.Microsecond},
		{name: "slow", behaviour: Slow, minD: 60 * time.Millisecond, maxD: 160 * time.Millisecond, median: 65 * time.Millisecond, p99: 88600 * time.Microsecond},
		{name: "errors", behaviour: Errors, minD: 10 * time.Millisecond, maxD: 110 * time.Millisecond, median: 15 * time.Millisecond, p99: 38600 * time.Microsecond, minErr: 0.085, maxEr: 0.115},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu    sync.Mutex
				slept []time.Duration
			)
			app, err := NewApp(AppConfig{Version: "v2", Behaviour: tc.behaviour, Seed: 7,
				Sleep: func(_ *http.Request, d time.Duration) { mu.Lock(); slept = append(slept, d); mu.Unlock() }})
			if err != nil {
				t.Fatal(err)
			}
			const n = 4000
			fails := 0
			for range n {
				w := httptest.NewRecorder()
				app.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
				if w.Header().Get(VersionHeader) != "v2" {
					t.Fatalf("version header = %q", w.Header().Get(VersionHeader))
				}
				switch w.Code {
				case http.StatusOK:
				case http.StatusInternalServerError:
					fails++
				default:
					t.Fatalf("status %d", w.Code)
				}
			}
			for _, d := range slept {
				if d < tc.minD || d >= tc.maxD {
					t.Fatalf("latency %s outside [%s, %s)", d, tc.minD, tc.maxD)
				}
			}
			slices.Sort(slept)
			for _, q := range []struct {
				name string
				got  time.Duration
				want time.Duration
			}{{"median", slept[len(slept)/2], tc.median}, {"P99", slept[len(slept)*99/100], tc.p99}} {
				if diff := q.got - q.want; diff > q.want/10 || -diff > q.want/10 {
					t.Errorf("%s latency %s, want %s ± 10%%", q.name, q.got, q.want)
				}
			}
			if share := float64(fails) / n; share < tc.minErr || share > tc.maxEr {
				t.Errorf("share of 500s = %.3f, want within [%.3f, %.3f]", share, tc.minErr, tc.maxEr)
			}
		})
	}
}

func TestAppHealthz(t *testing.T) {
	t.Parallel()
	app, err := NewApp(AppConfig{Version: "v1", Behaviour: Errors, ErrorShare: 1,
		Sleep: func(*http.Request, time.Duration) { t.Error("healthz slept") }})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	app.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"version":"v1"`) {
		t.Errorf("healthz = %d %q", w.Code, w.Body.String())
	}
}

func TestNewAppRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  AppConfig
		want string
	}{
		{name: "behaviour", cfg: AppConfig{Behaviour: "flaky"}, want: "use good, slow, errors or route"},
		{name: "error share", cfg: AppConfig{ErrorShare: 1.5}, want: "between 0 and 1"},
		{name: "negative latency", cfg: AppConfig{Latency: -1}, want: "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewApp(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewApp error = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestAppRoute: behaviour route fails about half the requests to BrokenRoute and none elsewhere.
func TestAppRoute(t *testing.T) {
	t.Parallel()
	app, err := NewApp(AppConfig{Version: "v2", Behaviour: Route, Seed: 7, Sleep: func(*http.Request, time.Duration) {}})
	if err != nil {
		t.Fatal(err)
	}
	fails := map[string]int{}
	const n = 2000
	for _, path := range []string{"/", BrokenRoute} {
		for range n {
			w := httptest.NewRecorder()
			app.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, nil))
			if w.Code == http.StatusInternalServerError {
				fails[path]++
			}
		}
	}
	if fails["/"] != 0 || fails[BrokenRoute] < 900 || fails[BrokenRoute] > 1100 {
		t.Fatalf("500s per path %v of %d each; want none on / and about half on %s", fails, n, BrokenRoute)
	}
}
