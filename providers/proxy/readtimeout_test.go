package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestUpstreamStalledMidBodyTimesOut: an upstream that sends its head and part of the body, then
// stalls, is cut off after UpstreamReadTimeout between two reads (nginx's proxy_read_timeout)
// instead of holding the request and its upstream connection forever: the client's connection is
// closed (the answer must not look whole) and the analysis
// records the upstream's 504. Both fronts (bodiless GET: the h1 loop and the net/http fast path).
func TestUpstreamStalledMidBodyTimesOut(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
				<-release // stalled: the rest of the body never comes
			})
			cfg := stableOnly(up)
			cfg.UpstreamReadTimeout = 300 * time.Millisecond
			p, srv := startProxyFront(t, cfg, f.netHTTPOnly)
			start := time.Now()
			c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.WriteString(c, "GET /stall HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			// the 200 head and a body cut short (the h1 loop), or nothing (net/http aborts an
			// answer it has not flushed yet): never an answer that looks whole
			if resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "GET"}); err == nil {
				b, err := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("answer %d %q (%v): want the 200 head with its body cut short", resp.StatusCode, b, err)
				}
			} else if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				t.Fatalf("reading the answer: %v, want the connection closed", err)
			}
			if took := time.Since(start); took < 300*time.Millisecond || took > 10*time.Second {
				t.Fatalf("cut off after %v, want about the 300 ms read timeout", took)
			}
			reqs := samples(t, p, start, 1)
			if len(reqs) != 1 || reqs[0].Status != http.StatusGatewayTimeout {
				t.Fatalf("request log %+v, want the upstream's 504 in the analysis", reqs)
			}
		})
	}
}
