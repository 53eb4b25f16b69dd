package providers

import (
	"strings"
	"testing"
)

func TestRouteTemplate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, method, path string
		n                  int
		want               string
	}{
		{"plain", "POST", "/checkout/pay", 2, "POST /checkout/pay"},
		{"query dropped", "get", "/checkout/pay?card=1", 2, "GET /checkout/pay"},
		{"fragment dropped", "GET", "/a#b/c", 2, "GET /a"},
		{"numeric id folded", "GET", "/users/123/orders/9", 2, "GET /users/{id}"},
		{"more segments", "GET", "/users/123/orders/9", 4, "GET /users/{id}/orders/{id}"},
		{"uuid", "GET", "/orders/3f2b9c4e-1a2b-4c3d-9e8f-0123456789ab", 2, "GET /orders/{id}"},
		{"not quite a uuid", "GET", "/orders/3f2b9c4e-1a2b-4c3d-9e8f-0123456789az", 2, "GET /orders/3f2b9c4e-1a2b-4c3d-9e8f-0123456789az"},
		{"long hex", "GET", "/blobs/0123456789abcdef0123", 2, "GET /blobs/{id}"},
		{"hex letters only is a word", "GET", "/blobs/deadbeefdeadbeefdead", 2, "GET /blobs/deadbeefdeadbeefdead"},
		{"version segment kept", "GET", "/api/v2/items", 2, "GET /api/v2"},
		{"empty segments skipped", "GET", "//double//slash/", 2, "GET /double/slash"},
		{"root", "GET", "/", 2, "GET /"},
		{"empty path", "GET", "", 2, "GET /"},
		{"no method", "", "/a/b/c", 1, "/a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := RouteTemplate(tc.method, tc.path, tc.n); got != tc.want {
				t.Fatalf("RouteTemplate(%q, %q, %d) = %q, want %q", tc.method, tc.path, tc.n, got, tc.want)
			}
			if got := string(AppendRouteTemplate(nil, []byte(tc.method), []byte(tc.path), tc.n)); got != tc.want {
				t.Fatalf("AppendRouteTemplate on bytes = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAppendRouteTemplateDoesNotAllocate: the proxy builds templates on its hot path into a reused
// buffer.
func TestAppendRouteTemplateDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 256)
	method, path := []byte("GET"), []byte("/users/3f2b9c4e-1a2b-4c3d-9e8f-0123456789ab/orders?x=1")
	if n := testing.AllocsPerRun(100, func() { buf = AppendRouteTemplate(buf[:0], method, path, 3) }); n != 0 {
		t.Fatalf("%v allocations per template, want 0", n)
	}
}

func FuzzRouteTemplate(f *testing.F) {
	for _, s := range []string{"/users/1", "/", "", "//a//b?c", "/orders/3f2b9c4e-1a2b-4c3d-9e8f-0123456789ab"} {
		f.Add("GET", s, 2)
	}
	f.Fuzz(func(t *testing.T, method, path string, n int) {
		n = ((n%MaxRouteSegments)+MaxRouteSegments)%MaxRouteSegments + 1
		got := RouteTemplate(method, path, n)
		p := got
		if method != "" {
			p = got[len(method)+1:] // the method, upper-cased byte for byte, and a space
		}
		if !strings.HasPrefix(p, "/") {
			t.Fatalf("template %q of %q %q has no path", got, method, path)
		}
		if strings.ContainsAny(p, "?#") || strings.Contains(p, "//") {
			t.Fatalf("template %q keeps a query, fragment or empty segment", got)
		}
		if segs := strings.Count(p, "/"); segs > n {
			t.Fatalf("template %q has %d segments, want at most %d", got, segs, n)
		}
	})
}
