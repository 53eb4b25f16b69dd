package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// gateway and requestLog mirror the rollout engine's interfaces; both *Proxy and *Client satisfy them.
type gateway interface {
	SetUpstreams(ctx context.Context, c providers.Cohort, addrs []string) error
	SetSplit(ctx context.Context, s providers.Split) error
	Split(ctx context.Context) (providers.Split, error)
	Rollback(ctx context.Context) error
	Promote(ctx context.Context) error
}

type requestLog interface {
	Requests(ctx context.Context, since, until time.Time) ([]providers.Request, error)
}

var (
	_ gateway    = (*Proxy)(nil)
	_ gateway    = (*Client)(nil)
	_ requestLog = (*Proxy)(nil)
	_ requestLog = (*Client)(nil)
)

const adminToken = "test-admin-token"

func startAdmin(t testing.TB, p *Proxy) *httptest.Server {
	t.Helper()
	h, err := p.AdminHandler(AdminConfig{Token: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestAdminNeedsToken(t *testing.T) {
	t.Parallel()
	_, _, _, ups := three(t)
	p, _ := startProxy(t, Config{Upstreams: ups})
	if _, err := p.AdminHandler(AdminConfig{}); !errors.Is(err, ErrNoAdminToken) {
		t.Fatalf("AdminHandler without token: %v, want ErrNoAdminToken", err)
	}
	admin := startAdmin(t, p)
	for _, tc := range []struct {
		name, method, path, auth string
		want                     int
	}{
		{"state without token", "GET", "/v1/state", "", 401},
		{"split with wrong token", "PUT", "/v1/split", "Bearer nope", 401},
		{"rollback with basic auth", "POST", "/v1/rollback", "Basic " + adminToken, 401},
		{"metrics without token", "GET", "/metrics", "", 401},
		{"requests without token", "GET", "/v1/requests", "", 401},
		{"state with token", "GET", "/v1/state", "Bearer " + adminToken, 200},
		{"metrics with token", "GET", "/metrics", "Bearer " + adminToken, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, admin.URL+tc.path, strings.NewReader(`{"canary":10000}`))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	if s, _ := p.Split(t.Context()); s != (providers.Split{}) {
		t.Fatalf("an unauthorised call changed the split to %v", s)
	}
}

func TestClientDrivesAdminAPI(t *testing.T) {
	t.Parallel()
	stable, baseline, canary, _ := three(t)
	p, srv := startProxy(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {stable.url()}}})
	admin := startAdmin(t, p)
	cl, err := NewClient(ClientConfig{BaseURL: admin.URL, Token: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := cl.SetSplit(ctx, providers.Split{Canary: 500}); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("split before canary upstreams: %v, want ErrNotFound", err)
	}
	if err := cl.SetSplit(ctx, providers.Split{Canary: 9000, Baseline: 2000}); !errors.Is(err, providers.ErrInvalidSplit) {
		t.Fatalf("split over 100%%: %v, want ErrInvalidSplit", err)
	}
	var inv interface{ InvalidInput() bool }
	if err := cl.SetUpstreams(ctx, providers.Canary, []string{"ftp://x"}); !errors.As(err, &inv) || !inv.InvalidInput() {
		t.Fatalf("bad upstream: %v, want invalid input", err)
	}
	bad, _ := NewClient(ClientConfig{BaseURL: admin.URL, Token: "wrong"})
	if _, err := bad.Split(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong token: %v, want ErrUnauthorized", err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cl.SetUpstreams(ctx, providers.Canary, []string{canary.url()}))
	must(cl.SetUpstreams(ctx, providers.Baseline, []string{baseline.url()}))
	must(cl.SetSplit(ctx, providers.Split{Canary: 5000, Baseline: 5000}))
	if s, err := cl.Split(ctx); err != nil || s != (providers.Split{Canary: 5000, Baseline: 5000}) {
		t.Fatalf("Split = %v, %v", s, err)
	}
	if err := cl.SetUpstreams(ctx, providers.Canary, nil); !errors.Is(err, providers.ErrInvalidSplit) {
		t.Fatalf("removing canary while it has traffic: %v, want ErrInvalidSplit", err)
	}
	c := testClient()
	since := time.Now()
	for range 20 {
		get(t, c, newReq(t, srv.URL+"/"))
	}
	if canary.served.Load() != 10 || baseline.served.Load() != 10 {
		t.Fatalf("50/50 split served canary %d baseline %d of 20", canary.served.Load(), baseline.served.Load())
	}
	// (the last sample is recorded just after its answer is sent: wait for it)
	if reqs := samples(t, cl, since, 20); len(reqs) != 20 {
		t.Fatalf("Requests = %d; want 20", len(reqs))
	}
	st, err := cl.State(ctx)
	must(err)
	if st.Served[providers.Canary].Split != 10 || st.Upstreams[providers.Canary][0] != canary.url() {
		t.Fatalf("state %+v", st)
	}

	must(cl.Rollback(ctx))
	if s, _ := cl.Split(ctx); s != (providers.Split{}) {
		t.Fatalf("after rollback split = %v", s)
	}
	for range 10 {
		if got := get(t, c, newReq(t, srv.URL+"/")); got != "stable" {
			t.Fatalf("after rollback routed to %s", got)
		}
	}
	if err := cl.Promote(ctx); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("promote without canary: %v, want ErrNotFound", err)
	}
	must(cl.SetUpstreams(ctx, providers.Canary, []string{canary.url()}))
	must(cl.SetSplit(ctx, providers.Split{Canary: 100}))
	must(cl.Promote(ctx))
	st, _ = cl.State(ctx)
	if st.Split != (providers.Split{}) || len(st.Upstreams[providers.Canary]) != 0 || st.Upstreams[providers.Stable][0] != canary.url() {
		t.Fatalf("after promote state %+v", st)
	}
	for range 10 {
		if got := get(t, c, newReq(t, srv.URL+"/")); got != "canary" {
			t.Fatalf("after promote routed to %s, want the promoted canary", got)
		}
	}
	// metrics through the admin listener (polled: the last request is counted just after its
	// answer is sent)
	wants := []string{
		`canaryctl_proxy_requests_total{code="200",cohort="canary",route="split"} 10`,
		`canaryctl_proxy_requests_total{code="200",cohort="stable",route="split"} 20`,
		`canaryctl_proxy_request_duration_seconds_count{cohort="baseline",route="split"} 10`,
		`# TYPE canaryctl_proxy_request_duration_seconds histogram`,
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		req, _ := http.NewRequest("GET", admin.URL+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		must(err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var missing []string
		for _, want := range wants {
			if !strings.Contains(string(body), want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %q", missing)
		}
	}
}
