package proxy

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// TestRoutesRecorded: with RouteSegments each recorded request names its route (method, template of
// the first segments, identifiers folded), through the h1 loop and through net/http alike; without,
// none does.
func TestRoutesRecorded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		segments int
		netHTTP  bool
		want     []string
	}{
		{"h1 loop", 2, false, []string{"GET /users/{id}", "POST /checkout/pay", "GET /"}},
		{"net/http", 2, true, []string{"GET /users/{id}", "POST /checkout/pay", "GET /"}},
		{"one segment", 1, false, []string{"GET /users", "POST /checkout", "GET /"}},
		{"off", 0, false, []string{"", "", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newBackend(t, "stable")
			since := time.Now()
			p, srv := startProxyFront(t, Config{Upstreams: map[providers.Cohort][]string{providers.Stable: {up.url()}}, RouteSegments: tc.segments}, tc.netHTTP)
			for _, r := range []struct{ method, path string }{
				{http.MethodGet, "/users/42/orders?page=2"},
				{http.MethodPost, "/checkout/pay"},
				{http.MethodGet, "/"},
			} {
				req, err := http.NewRequestWithContext(t.Context(), r.method, srv.URL+r.path, strings.NewReader(""))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
			var got []string
			for _, q := range samples(t, p, since, len(tc.want)) {
				got = append(got, q.Route)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("routes %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRouteSegmentsValidated(t *testing.T) {
	t.Parallel()
	for _, n := range []int{-1, providers.MaxRouteSegments + 1} {
		_, err := New(Config{Upstreams: map[providers.Cohort][]string{providers.Stable: {"http://127.0.0.1:1"}}, RouteSegments: n})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "routeSegments" {
			t.Errorf("RouteSegments %d: error %v, want a ConfigError for routeSegments", n, err)
		}
	}
}

// TestRouteTableBounded: past MaxRoutes templates, requests are recorded without a route.
func TestRouteTableBounded(t *testing.T) {
	t.Parallel()
	rt := newRouteTable(1)
	for i := range MaxRoutes {
		if id := routeID(rt, "GET", "/r"+strconv.Itoa(i)); id == 0 {
			t.Fatalf("route %d got no id", i)
		}
	}
	if id := routeID(rt, "GET", "/one-too-many"); id != 0 {
		t.Fatalf("id %d past MaxRoutes, want 0", id)
	}
	if id := routeID(rt, "GET", "/r0"); id == 0 {
		t.Fatal("a known route lost its id")
	}
}

// BenchmarkRouteID: what Config.RouteSegments adds per request on the hot path: the template built
// on the stack and one lookup in the interned table.
func BenchmarkRouteID(b *testing.B) {
	rt := newRouteTable(providers.DefaultRouteSegments)
	method, target := []byte("GET"), []byte("/users/3f2b9c4e-1a2b-4c3d-9e8f-0123456789ab/orders?page=2")
	routeID(rt, method, target)
	b.ReportAllocs()
	for b.Loop() {
		routeID(rt, method, target)
	}
}
