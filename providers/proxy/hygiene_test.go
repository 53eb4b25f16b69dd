package proxy

import (
	"bufio"
	"context"
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

// TestForwardedAndHopByHopHeaders runs on both fronts, with and without a request Connection header
// naming another header (which the h1 loop hands to net/http).
func TestForwardedAndHopByHopHeaders(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		for _, named := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/connection-names-header=%v", f.name, named), func(t *testing.T) {
				t.Parallel()
				testForwardedAndHopByHop(t, f.netHTTPOnly, named)
			})
		}
	}
}

func testForwardedAndHopByHop(t *testing.T, netHTTPOnly, connectionNamesHeader bool) {
	seen := make(chan http.Header, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("Host", r.Host)
		seen <- h
		w.Header().Set("Connection", "X-Secret-Hop")
		w.Header().Set("X-Secret-Hop", "leak")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End", "kept")
	}))
	defer up.Close()
	_, srv := startProxyFront(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {up.URL}}}, netHTTPOnly)
	req := newReq(t, srv.URL+"/a?b=c")
	if connectionNamesHeader {
		req.Header.Set("Connection", "X-Hop")
		req.Header.Set("X-Hop", "drop-me")
	}
	req.Header.Set("Keep-Alive", "timeout=1")
	req.Header.Set("Proxy-Authorization", "Basic eDp5")
	req.Header.Set("X-Forwarded-For", "6.6.6.6") // spoofed: not trusted by default
	req.Header.Set("X-Keep", "yes")
	resp, err := testClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := <-seen
	for _, tc := range []struct{ name, got, want string }{
		{"X-Forwarded-For", h.Get("X-Forwarded-For"), "127.0.0.1"},
		{"X-Forwarded-Proto", h.Get("X-Forwarded-Proto"), "http"},
		{"X-Forwarded-Host", h.Get("X-Forwarded-Host"), strings.TrimPrefix(srv.URL, "http://")},
		{"hop-by-hop request header", h.Get("X-Hop"), ""},
		{"keep-alive request header", h.Get("Keep-Alive"), ""},
		{"proxy-authorization request header", h.Get("Proxy-Authorization"), ""},
		{"end-to-end request header", h.Get("X-Keep"), "yes"},
		{"host sent upstream", h.Get("Host"), strings.TrimPrefix(up.URL, "http://")},
		{"hop-by-hop response header", resp.Header.Get("X-Secret-Hop"), ""},
		{"keep-alive response header", resp.Header.Get("Keep-Alive"), ""},
		{"end-to-end response header", resp.Header.Get("X-End"), "kept"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

// TestServerSentEventsStream: each event reaches the client before the upstream writes the next,
// so the proxy does not buffer the stream.
func TestServerSentEventsStream(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			testServerSentEvents(t, f.netHTTPOnly)
		})
	}
}

func testServerSentEvents(t *testing.T, netHTTPOnly bool) {
	next := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	defer up.Close()
	_, srv := startProxyFront(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {up.URL}}}, netHTTPOnly)
	resp, err := testClient().Do(newReq(t, srv.URL+"/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if want := fmt.Sprintf("data: event %d\n", i); line != want {
			t.Fatalf("got %q, want %q", line, want)
		}
		_, _ = br.ReadString('\n')
		next <- struct{}{} // the upstream writes the next event only now
	}
}

// TestWebSocketUpgrade: an Upgrade request gets the upstream's 101 and a two-way byte stream.
func TestWebSocketUpgrade(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, err := brw.ReadString('\n') // echo one line back, upper-cased
		if err != nil {
			return
		}
		fmt.Fprint(brw, strings.ToUpper(line))
		brw.Flush()
	}))
	defer up.Close()
	_, srv := startProxy(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {up.URL}}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("status %d upgrade %q, want 101 websocket", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	fmt.Fprint(conn, "hello through the proxy\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HELLO THROUGH THE PROXY\n" {
		t.Fatalf("echo = %q, %v", line, err)
	}
}

// TestRefusingUpstreamIsBackedOff: a canary that refuses connections costs no client request
// (retried on stable) and is skipped for the back-off instead of being dialled every time.
func TestRefusingUpstreamIsBackedOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cohort providers.Cohort
		split  providers.Split
	}{
		{"canary down", providers.Canary, providers.Split{Canary: 5000}},
		{"baseline down", providers.Baseline, providers.Split{Baseline: 5000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stable := newBackend(t, "stable")
			dead := refusedURL(t)
			p, srv := startProxy(t, Config{
				Upstreams:   map[providers.Cohort][]string{"stable": {stable.url()}, tc.cohort: {dead}},
				Split:       tc.split,
				BackoffBase: time.Hour,
			})
			c := testClient()
			for range 100 {
				if got := get(t, c, newReq(t, srv.URL+"/")); got != "stable" {
					t.Fatalf("routed to %q", got)
				}
			}
			if n := p.metrics.refused.Load(); n != 1 {
				t.Errorf("the dead upstream was dialled %d times, want once and then backed off", n)
			}
			if n := p.metrics.fallback.Load(); n < 49 {
				t.Errorf("fallback to stable counted %d, want about 50", n)
			}
			st, _ := p.State(t.Context())
			if _, down := st.Down[dead]; !down {
				t.Errorf("state does not show %s in back-off: %+v", dead, st.Down)
			}
		})
	}
}

func TestBackoffGrowsAndResets(t *testing.T) {
	t.Parallel()
	u := &upstream{}
	var got []time.Duration
	for range 6 {
		got = append(got, u.fail(0, time.Second, 10*time.Second))
	}
	want := []time.Duration{1, 2, 4, 8, 10, 10}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("back-offs %v, want %v s", got, want)
		}
	}
	if u.healthy(int64(5 * time.Second)) {
		t.Fatal("healthy during back-off")
	}
	if !u.healthy(int64(11 * time.Second)) {
		t.Fatal("still down after back-off")
	}
	u.ok()
	if d := u.fail(0, time.Second, 10*time.Second); d != time.Second {
		t.Fatalf("after success back-off restarts at %v", d)
	}
}

// TestGracefulShutdown: cancelling Serve's context lets an in-flight request finish.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	release, started := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	}))
	defer up.Close()
	p, err := New(Config{Upstreams: map[providers.Cohort][]string{"stable": {up.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, ServeConfig{Listener: ln, ShutdownTimeout: 10 * time.Second}) }()
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := testClient().Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{body: string(b)}
	}()
	<-started
	cancel()
	// Serve must not return while the request is in flight.
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if r := <-res; r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request: %q, %v", r.body, r.err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
