package kong

import (
	"fmt"
	"testing"
	"time"
)

// TestLogDecodeRoutes: an entry's route is Kong's route name, else its id, else the method and path
// template; the path is the URI's template. URIs arrive as Kong's cjson writes them, with "/" escaped
// as "\/" (lua-cjson's encode_escape_forward_slash is on by default) and the query kept.
func TestLogDecodeRoutes(t *testing.T) {
	t.Parallel()
	ms := time.Now().UnixMilli()
	entry := func(route, request string) string {
		return fmt.Sprintf(`{"request":%s,"route":%s,"started_at":%d,"latencies":{"request":3,"proxy":2},"response":{"status":200},"tries":[{"ip":"10.0.0.1","port":80}]}`,
			request, route, ms)
	}
	for _, tc := range []struct {
		name, route, request string
		wantRoute, wantPath  string
	}{
		{"route name, escaped slashes", `{"id":"1b4d5d9e-3b1c-4a4f-9d4e-1f0a2b3c4d5e","name":"checkout-api","paths":["\/checkout"]}`,
			`{"method":"POST","uri":"\/checkout\/pay\/42?card=x","headers":{}}`, "checkout-api", "/checkout/pay/{id}"},
		{"route id without a name", `{"id":"1b4d5d9e-3b1c-4a4f-9d4e-1f0a2b3c4d5e"}`,
			`{"method":"GET","uri":"/users/7"}`, "1b4d5d9e-3b1c-4a4f-9d4e-1f0a2b3c4d5e", "/users/{id}"},
		{"no route: method and template", `null`, `{"method":"post","uri":"\/checkout\/pay"}`, "POST /checkout/pay", "/checkout/pay"},
		{"unicode escape in a name", `{"name":"caf\u00e9"}`, `{"uri":"/"}`, "café", "/"},
		{"neither route nor request", `null`, `null`, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := newTestReceiver(t, LogConfig{})
			wk := &logWorker{}
			if err := rec.decode([]byte(entry(tc.route, tc.request)), wk, 0); err != nil {
				t.Fatal(err)
			}
			if len(wk.recs) != 1 {
				t.Fatalf("%d records, want 1 (%+v)", len(wk.recs), wk.n)
			}
			rec.store(wk, time.Now())
			reqs, err := rec.Requests(t.Context(), time.UnixMilli(ms-1000), time.UnixMilli(ms+1000))
			if err != nil || len(reqs) != 1 {
				t.Fatalf("requests %v, %v", reqs, err)
			}
			if q := reqs[0]; q.Route != tc.wantRoute || q.Path != tc.wantPath {
				t.Fatalf("route %q path %q, want %q %q", q.Route, q.Path, tc.wantRoute, tc.wantPath)
			}
		})
	}
}
