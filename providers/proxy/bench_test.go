package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
)

// BenchmarkProxyDecide: the routing decision alone (no rules: the wheel; with rules and hashing).
func BenchmarkProxyDecide(b *testing.B) {
	ups := map[providers.Cohort][]string{"stable": {"http://127.0.0.1:1"}, "canary": {"http://127.0.0.1:2"}}
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"wheel", Config{Upstreams: ups, Split: providers.Split{Canary: 250}}},
		{"hash-header", Config{Upstreams: ups, Split: providers.Split{Canary: 250}, HashOn: "header:X-User"}},
		{"rules+hash", Config{Upstreams: ups, Split: providers.Split{Canary: 250}, HashOn: "header:X-User",
			Rules: []Rule{{Match: Match{Header: "X-Canary", Equals: []string{"always"}}, Cohort: providers.Canary},
				{Match: Match{CIDR: []string{"10.0.0.0/8"}}, Cohort: providers.Canary}}}},
		{"country", Config{Upstreams: ups, Split: providers.Split{Canary: 250}, GeoIP: GeoIPConfig{MMDBFile: geoFile(b, testGeo)},
			Rules: []Rule{{Match: Match{Country: []string{"DE", "AT"}}, Cohort: providers.Canary}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := New(bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
			b.Cleanup(func() { p.Close() })
			r.RemoteAddr = "127.0.0.1:5"
			if bc.cfg.GeoIP.MMDBFile != "" {
				r.RemoteAddr = "198.51.100.7:5" // in the test database: the lookup and a match
			}
			r.Header.Set("X-User", "alice")
			b.ReportAllocs()
			for b.Loop() {
				t := p.table.Load()
				ci, _ := p.decide(t, r)
				t.route(ci, 0)
			}
		})
	}
}

// BenchmarkProxyServeHTTP: one request through the handler to a real loopback upstream, without
// the client-side connection (ServeHTTP is called directly).
func BenchmarkProxyServeHTTP(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "0123456789012345678901234567890123456789012345678901234567890123")
	}))
	defer up.Close()
	p, err := New(Config{Upstreams: map[providers.Cohort][]string{"stable": {up.URL}, "canary": {up.URL + "/c"}}, Split: providers.Split{Canary: 500}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, "http://proxy/", nil)
		for pb.Next() {
			w := httptest.NewRecorder()
			p.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkProxyRecord: metrics and the sample ring per request.
func BenchmarkProxyRecord(b *testing.B) {
	p, err := New(Config{Upstreams: map[providers.Cohort][]string{"stable": {"http://127.0.0.1:1"}}})
	if err != nil {
		b.Fatal(err)
	}
	now := p.now()
	b.ReportAllocs()
	for b.Loop() {
		p.record(now, 1234567, 200, iStable, false, nil, 0, 0)
	}
}

// BenchmarkServeFront: whole requests over loopback — keep-alive client connections to Serve, a
// loopback upstream — through the h1 loop and through net/http only, so the two fronts can be
// compared on one machine (bench/proxy.sh compares with nginx).
func BenchmarkServeFront(b *testing.B) {
	body := strings.Repeat("x", 64)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	defer up.Close()
	for _, f := range fronts {
		b.Run(f.name, func(b *testing.B) {
			_, srv := startProxyFront(b, Config{Upstreams: map[providers.Cohort][]string{"stable": {up.URL}}}, f.netHTTPOnly)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				req := &http.Request{Method: "GET"}
				for pb.Next() {
					if _, err := io.WriteString(c, "GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n"); err != nil {
						b.Error(err)
						return
					}
					resp, err := http.ReadResponse(br, req)
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 {
						b.Errorf("status %d, %v", resp.StatusCode, err)
						return
					}
				}
			})
		})
	}
}
