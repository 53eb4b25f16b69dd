package demo

import (
	"net/http"
	"net/http/httptest"
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
		minErr, maxEr float64       // bounds of the share of 500s over 4000 requests
	}{
		{name: "good", behaviour: Good, minD: 10 * time.Millisecond, maxD: 20 * time.Millisecond},
		{name: "slow", behaviour: Slow, minD: 60 * time.Millisecond, maxD: 70 * time.Millisecond},
		{name: "errors", behaviour: Errors, minD: 10 * time.Millisecond, maxD: 20 * time.Millisecond, minErr: 0.085, maxEr: 0.115},
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
		{name: "behaviour", cfg: AppConfig{Behaviour: "flaky"}, want: "use good, slow or errors"},
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
