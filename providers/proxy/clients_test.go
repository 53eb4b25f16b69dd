package proxy

import (
	"io"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// TestRequestsNameTheClient: every sample names its client (Request.Client, with which the
// sequential tests notice and judge sticky cohorts), on both fronts: the connection's IP; the last
// X-Forwarded-For hop when forwarded headers are trusted (the one the load balancer appended);
// the sticky key itself when the proxy hashes on one, since that is the unit it keeps on a cohort.
func TestRequestsNameTheClient(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		for _, tc := range []struct {
			name    string
			trust   bool
			hashOn  HashOn
			headers map[string]string
			want    string
		}{
			{"connection", false, "", map[string]string{"X-Forwarded-For": "203.0.113.5"}, "127.0.0.1"},
			{"trusted forwarded", true, "", map[string]string{"X-Forwarded-For": "203.0.113.5, 198.51.100.2"}, "198.51.100.2"},
			{"hash key", false, "header:X-User", map[string]string{"X-User": "alice"}, "h:alice"},
			{"hash on ip", false, "ip", nil, "ip:127.0.0.1"},
		} {
			t.Run(f.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				stable := newBackend(t, "stable")
				p, srv := startProxyFront(t, Config{Upstreams: map[providers.Cohort][]string{providers.Stable: {stable.url()}},
					TrustForwarded: tc.trust, HashOn: tc.hashOn}, f.netHTTPOnly)
				since := time.Now()
				client := testClient()
				const n = 3
				for range n {
					req := newReq(t, srv.URL+"/")
					for k, v := range tc.headers {
						req.Header.Set(k, v)
					}
					resp, err := client.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				reqs := samples(t, p, since, n)
				if len(reqs) != n {
					t.Fatalf("%d samples, want %d", len(reqs), n)
				}
				for i, r := range reqs {
					if r.Client != tc.want {
						t.Errorf("sample %d: client %q, want %q", i, r.Client, tc.want)
					}
				}
			})
		}
	}
}

func TestLastHop(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"192.0.2.1", "192.0.2.1"},
		{"203.0.113.9, 192.0.2.1", "192.0.2.1"},
		{"203.0.113.9,192.0.2.1", "192.0.2.1"},
		{"spoofed,  \t[2001:db8::1]:5 \t", "[2001:db8::1]:5"},
		{"192.0.2.1,", ""},
	} {
		if got := lastHop(tc.in); got != tc.want {
			t.Errorf("lastHop(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := string(lastHop([]byte(tc.in))); got != tc.want {
			t.Errorf("lastHop([]byte(%q)) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
