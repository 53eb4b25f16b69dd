package kongtest

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A Service's new host reaches the proxy when the node's router is rebuilt (Kong's router-rebuild
// timer, worker_consistency = eventual), not at the Admin API write; an upstream deleted while the
// router still sends the Service to it is a 503 "name resolution failed" (the host is resolved as
// a DNS name once it is no upstream).
func TestRouterFollowsServicesLate(t *testing.T) {
	t.Parallel()
	// an hour: the router is rebuilt only when the test says so (SyncBalancer)
	s, c := seeded(t, WithRouterDelay(time.Hour))
	blue, green := backendServer(t, "blue"), backendServer(t, "green")
	addr := func(u string) string { return strings.TrimPrefix(u, "http://") }
	for _, e := range []struct {
		kind string
		body map[string]any
	}{
		{"upstreams", map[string]any{"name": "green-up"}},
		{"targets", map[string]any{"upstream": "up", "target": addr(blue.URL)}},
		{"targets", map[string]any{"upstream": "green-up", "target": addr(green.URL)}},
		{"services", map[string]any{"name": "svc", "host": "up"}},
		{"routes", map[string]any{"paths": []string{"/"}, "service": map[string]any{"name": "svc"}}},
	} {
		if _, err := s.Create("", e.kind, e.body); err != nil {
			t.Fatal(err)
		}
	}
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(s.ProxyURL() + "/x")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := get(); status != 404 {
		t.Fatalf("before the first rebuild the router has no route: %d %s", status, body)
	}
	s.SyncBalancer()
	for _, step := range []struct {
		name   string
		change func()
		before string // the answer before the router is rebuilt
		after  string
		routed string // RoutedHost before the rebuild
	}{
		{"switch to green", func() { c.do("PATCH", "/services/svc", map[string]any{"host": "green-up"}) }, "blue /x", "green /x", "up"},
		{"switch back to blue, green deleted at once", func() {
			c.do("PATCH", "/services/svc", map[string]any{"host": "up"})
			if status, _, _ := c.do("DELETE", "/upstreams/green-up", nil); status != 204 {
				t.Fatalf("DELETE green = %d", status)
			}
		}, `503 {"message":"name resolution failed"}`, "blue /x", "green-up"},
	} {
		step.change()
		if got := s.RoutedHost("svc"); got != step.routed {
			t.Fatalf("%s: RoutedHost before the rebuild = %q, want %q", step.name, got, step.routed)
		}
		if got := proxied(get()); got != step.before {
			t.Fatalf("%s: before the router is rebuilt the proxy answered %q, want %q", step.name, got, step.before)
		}
		s.SyncBalancer()
		if got := proxied(get()); got != step.after {
			t.Fatalf("%s: after the rebuild the proxy answered %q, want %q", step.name, got, step.after)
		}
	}
}

// proxied renders a proxy answer: the body of a 200, otherwise "status body".
func proxied(status int, body string) string {
	if status == http.StatusOK {
		return body
	}
	return strconv.Itoa(status) + " " + strings.TrimSpace(body)
}
