package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHalfClosedKeepAliveIsRetriedAtOnce: an upstream that answers with keep-alive and then
// half-closes the connection (FIN, but it keeps reading, as a lingering close does) leaves a
// connection in the pool whose end-of-stream was already seen by the poller. The next request on it
// must see that EOF at once and be sent again on a new connection, as before writeThenWait: it
// must not wait for an answer that never comes (the h1 loop waited watchClientAfter, the net/http
// front the whole response-header timeout and then answered 504).
func TestHalfClosedKeepAliveIsRetriedAtOnce(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			halfClosed := make(chan struct{}, 1)
			first := make(chan struct{}, 1)
			first <- struct{}{}
			up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				isFirst := false
				select {
				case <-first:
					isFirst = true
				default:
				}
				for {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
						return
					}
					if isFirst {
						_ = c.(*net.TCPConn).CloseWrite()
						halfClosed <- struct{}{}
						_, _ = io.Copy(io.Discard, br) // reads on, answers nothing
						return
					}
				}
			})
			cfg := stableOnly(up)
			cfg.ResponseHeaderTimeout = 2 * time.Second
			_, srv := startProxyFront(t, cfg, f.netHTTPOnly)
			rc := dialRaw(t, srv.URL)
			if resp, body := rc.do("GET", "/", "", ""); resp.StatusCode != http.StatusOK || body != "ok" {
				t.Fatalf("first request: %d %q", resp.StatusCode, body)
			}
			<-halfClosed
			time.Sleep(20 * time.Millisecond) // the FIN is in and the poller has seen it
			start := time.Now()
			resp, body := rc.do("GET", "/", "", "")
			took := time.Since(start)
			if resp.StatusCode != http.StatusOK || body != "ok" {
				t.Fatalf("request on the half-closed connection: %d %q after %v, want 200 from a new connection", resp.StatusCode, body, took)
			}
			if took >= watchClientAfter*3/4 {
				t.Fatalf("request on the half-closed connection took %v: the EOF already there was not seen", took)
			}
		})
	}
}

// TestLargeRequestHeadNotKeptOnPooledConn: the request head is built in a buffer kept with the
// upstream connection for the next request; a client's huge head (net/http takes up to 1 MiB) must
// not stay pinned to every pooled connection it passed through (before the buffer was a fixed
// 4 KiB bufio.Writer).
func TestLargeRequestHeadNotKeptOnPooledConn(t *testing.T) {
	t.Parallel()
	up := newScriptedUpstream(t, nil)
	p, srv := startProxyFront(t, stableOnly(up.url), true)
	rc := dialRaw(t, srv.URL)
	big := "X-Big: " + strings.Repeat("a", 512<<10) + "\r\n"
	if resp, body := rc.do("GET", "/", big, ""); resp.StatusCode != http.StatusOK || body != "GET " {
		t.Fatalf("GET with a 512 KiB header: %d %q", resp.StatusCode, body)
	}
	u := p.table.Load().upstreams[iStable][0]
	deadline := time.Now().Add(5 * time.Second)
	for {
		u.pool.mu.Lock()
		var kept int
		n := len(u.pool.idle)
		for _, uc := range u.pool.idle {
			kept = max(kept, cap(uc.head))
		}
		u.pool.mu.Unlock()
		if n > 0 {
			if kept > maxKeptHead {
				t.Fatalf("a pooled connection keeps a %d-byte head buffer, want at most %d", kept, maxKeptHead)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the upstream connection was not pooled")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestExtraBytesAfterAnswerNotTakenForNextAnswer: an upstream that sends more than the framed
// answer (here a whole second response nobody asked for) leaves bytes behind; a connection with
// such bytes must not be pooled, or the next request is "answered" with them without waiting for
// its own answer (a response desync). The h1 loop checks this; the net/http front's fast path
// pooled the connection.
func TestExtraBytesAfterAnswerNotTakenForNextAnswer(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			var served atomic.Int32
			up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				for {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					a := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"
					if served.Add(1) == 1 {
						a = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"
					}
					if _, err := io.WriteString(c, a); err != nil {
						return
					}
				}
			})
			_, srv := startProxyFront(t, stableOnly(up), f.netHTTPOnly)
			rc := dialRaw(t, srv.URL)
			if resp, body := rc.do("GET", "/", "", ""); resp.StatusCode != http.StatusOK || body != "ok" {
				t.Fatalf("first request: %d %q", resp.StatusCode, body)
			}
			if resp, body := rc.do("GET", "/", "", ""); resp.StatusCode != http.StatusOK || body != "fresh" {
				t.Fatalf("second request: %d %q, want its own answer \"fresh\"", resp.StatusCode, body)
			}
		})
	}
}

// TestHalfClosedRightAfterAnswer: an upstream that half-closes at once after a keep-alive answer
// (without Connection: close) leaves a connection that may be reused before its FIN arrives, so
// after writeThenWait's check for input. That request costs at most about one watchClientAfter, on both
// fronts, and is then sent again on a new connection: it must not fail, nor wait for the
// response-header timeout.
func TestHalfClosedRightAfterAnswer(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			var conns atomic.Int32
			up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				conns.Add(1)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
					return
				}
				_ = c.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, br) // reads on, answers nothing
			})
			cfg := stableOnly(up)
			cfg.ResponseHeaderTimeout = 5 * time.Second
			_, srv := startProxyFront(t, cfg, f.netHTTPOnly)
			rc := dialRaw(t, srv.URL)
			for i := range 5 {
				start := time.Now()
				resp, body := rc.do("GET", "/", "", "")
				if took := time.Since(start); resp.StatusCode != http.StatusOK || body != "ok" || took > 2*time.Second {
					t.Fatalf("request %d: %d %q after %v, want 200 within about %v", i, resp.StatusCode, body, took, watchClientAfter)
				}
			}
			if n := conns.Load(); n < 5 {
				t.Errorf("%d upstream connections for 5 requests: the half-closed ones were reused", n)
			}
		})
	}
}
