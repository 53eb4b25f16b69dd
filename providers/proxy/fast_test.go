package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// rawUpstream serves each connection with handle on 127.0.0.1 and returns its base URL.
func rawUpstream(t *testing.T, handle func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c, bufio.NewReader(c))
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func idleConns(p *Proxy, ci int) int {
	u := p.table.Load().upstreams[ci][0]
	u.pool.mu.Lock()
	defer u.pool.mu.Unlock()
	return len(u.pool.idle)
}

// TestFastPathResendsOnStaleKeepAlive: an upstream that answers with keep-alive and then closes the
// connection leaves a stale connection in the pool; the next GET is sent again on a new one and no
// client request fails.
func TestFastPathResendsOnStaleKeepAlive(t *testing.T) {
	t.Parallel()
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Upstream: raw\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
		// then close without "Connection: close": the proxy pooled a dead connection
	})
	p, srv := startProxy(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {up}}})
	c := testClient()
	for i := range 5 {
		path := fmt.Sprintf("/r%d", i)
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != path {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
		time.Sleep(10 * time.Millisecond) // let the upstream's close arrive, so the pooled conn is stale
	}
	if n := p.metrics.refused.Load(); n != 0 {
		t.Fatalf("a stale keep-alive connection was counted as a refused upstream %d times", n)
	}
}

// TestFastPathAbortsTruncatedBody: an upstream that breaks off mid-body must not look like a whole
// answer to the client.
func TestFastPathAbortsTruncatedBody(t *testing.T) {
	t.Parallel()
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
	})
	p, srv := startProxy(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {up}}})
	resp, err := testClient().Get(srv.URL + "/")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	// The headers may or may not have reached the client before the abort; either way it must see
	// an error, never a short body with a clean end.
	if err == nil {
		t.Fatal("client read a truncated body without an error")
	}
	if n := idleConns(p, iStable); n != 0 {
		t.Fatalf("the broken connection went back to the pool (%d idle)", n)
	}
}

// TestFastPathClientGoesAway: when the client disconnects while the upstream is still thinking,
// the upstream connection is closed (its request context ends) and the sample says 499 — on both
// fronts (the h1 loop watches the client once an answer takes longer than watchClientAfter).
func TestFastPathClientGoesAway(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			testClientGoesAway(t, f.netHTTPOnly)
		})
	}
}

func testClientGoesAway(t *testing.T, netHTTPOnly bool) {
	gone := make(chan struct{})
	arrived := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
			close(gone)
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(up.Close)
	p, srv := startProxyFront(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {up.URL}}}, netHTTPOnly)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	io.WriteString(conn, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-arrived
	conn.Close()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not cancelled after the client left")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		reqs, _ := p.Requests(t.Context(), since, time.Now().Add(time.Second))
		if len(reqs) == 1 {
			if reqs[0].Status != 499 {
				t.Fatalf("sample status %d, want 499", reqs[0].Status)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sample recorded for the abandoned request (%d)", len(reqs))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFastPathAndReverseProxyPaths: bodiless GET/HEAD take the fast path (pooled connection);
// a POST with a body, a 204, a chunked answer and a base-path upstream go through the ReverseProxy
// and arrive whole.
func TestFastPathAndReverseProxyPaths(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Sum", "3")
		default:
			fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
		}
	}))
	t.Cleanup(up.Close)
	p, srv := startProxy(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {up.URL}, "canary": {up.URL + "/base"}}})
	c := testClient()
	do := func(method, path, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if body == "" {
			req.Body = http.NoBody
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: read body: %v", method, path, err)
		}
		return resp, string(b)
	}
	for _, tc := range []struct {
		name, method, path, body, want string
		status                         int
	}{
		{"get", "GET", "/a?x=1&y=%2F", "", "GET /a?x=1&y=%2F ", 200},
		{"head", "HEAD", "/a", "", "", 200},
		{"post with body", "POST", "/p", "payload", "POST /p payload", 200},
		{"no content", "GET", "/empty", "", "", 204},
		{"chunked with trailer", "GET", "/chunked", "", "part0;part1;part2;", 200},
	} {
		resp, got := do(tc.method, tc.path, tc.body)
		if resp.StatusCode != tc.status || got != tc.want {
			t.Errorf("%s: %d %q, want %d %q", tc.name, resp.StatusCode, got, tc.status, tc.want)
		}
		if tc.name == "chunked with trailer" && resp.Trailer.Get("X-Sum") != "3" {
			t.Errorf("trailer X-Sum = %q, want 3", resp.Trailer.Get("X-Sum"))
		}
	}
	if n := idleConns(p, iStable); n != 1 {
		t.Errorf("fast path pool holds %d idle connections after sequential requests, want 1", n)
	}
	if err := p.SetSplit(t.Context(), providers.Split{Canary: providers.BasisPoints}); err != nil {
		t.Fatal(err)
	}
	if _, got := do("GET", "/q", ""); got != "GET /base/q " {
		t.Errorf("base-path upstream got %q, want the joined path /base/q", got)
	}
}

// TestForwardedHeadersSameOnBothPaths: X-Forwarded-*, Host and TrustForwarded/PreserveHost give
// the same upstream view whether a request takes the fast path (GET) or the ReverseProxy (POST).
func TestForwardedHeadersSameOnBothPaths(t *testing.T) {
	t.Parallel()
	type seen struct{ xff, host, proto, fhost string }
	got := make(chan seen, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got <- seen{strings.Join(r.Header.Values("X-Forwarded-For"), "|"), r.Host, r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host")}
	}))
	t.Cleanup(up.Close)
	upHost := strings.TrimPrefix(up.URL, "http://")
	for _, tc := range []struct {
		name      string
		trust     bool
		preserve  bool
		wantXFF   string
		wantHost  string
		clientXFF string
	}{
		{"defaults replace a spoofed list", false, false, "127.0.0.1", upHost, "6.6.6.6"},
		{"trusted list is appended to", true, false, "6.6.6.6, 127.0.0.1", upHost, "6.6.6.6"},
		{"preserve host", false, true, "127.0.0.1", "front.example", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, srv := startProxy(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {up.URL}},
				TrustForwarded: tc.trust, PreserveHost: tc.preserve})
			for _, method := range []string{"GET", "POST"} {
				var body io.Reader = http.NoBody
				if method == "POST" {
					body = strings.NewReader("x")
				}
				req, _ := http.NewRequest(method, srv.URL+"/", body)
				req.Host = "front.example"
				if tc.clientXFF != "" {
					req.Header.Set("X-Forwarded-For", tc.clientXFF)
				}
				resp, err := testClient().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				s := <-got
				if s.xff != tc.wantXFF || s.host != tc.wantHost || s.proto != "http" || s.fhost != "front.example" {
					t.Errorf("%s: upstream saw XFF %q Host %q Proto %q XFH %q; want XFF %q Host %q Proto http XFH front.example",
						method, s.xff, s.host, s.proto, s.fhost, tc.wantXFF, tc.wantHost)
				}
			}
		})
	}
}
