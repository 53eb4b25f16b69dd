package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestClientLeavingAStalledAnswer: an upstream sends the head and the start of a body, then
// stalls (a hung canary); the client gives up and closes. That is the upstream's slowness, as when
// the client gives up waiting for the head: recorded as 499 in the analysis with the time the
// client waited (so a canary that hangs mid-answer shows in its latency), never as a 502 of the
// cohort (the client closed first), and never left out as if the client had failed. Both fronts,
// the fast paths (GET) and ReverseProxy's (POST).
func TestClientLeavingAStalledAnswer(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			t.Run(f.name+"/"+method, func(t *testing.T) {
				t.Parallel()
				release := make(chan struct{})
				t.Cleanup(func() { close(release) })
				up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					// chunked, so every front sends the start on at once (a stream)
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n"); err != nil {
						return
					}
					<-release // stalls mid-body
				})
				p, srv := startProxyFront(t, stableOnly(up), f.netHTTPOnly)
				start := time.Now()
				c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				req := method + " /stream HTTP/1.1\r\nHost: a\r\n\r\n"
				if method == http.MethodPost {
					req = method + " /stream HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
				}
				if _, err := io.WriteString(c, req); err != nil {
					t.Fatal(err)
				}
				// everything the proxy sends before the stall is read, so the client's close cannot
				// fail a write of the proxy's: the proxy is waiting for the upstream when it comes
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("reading the answer: %v", err)
					}
					if line == "first\n" {
						break
					}
				}
				_ = c.Close() // the client gives up on the stalled answer
				reqs := samples(t, p, start, 1)
				if len(reqs) != 1 || reqs[0].Status != statusClientClosed {
					t.Fatalf("request log %+v, want one 499 in the analysis", reqs)
				}
				if n := requestsCounted(t, p, "stable", "502", "split"); n != 0 {
					t.Errorf("%v requests counted as 502: the client closed first", n)
				}
			})
		}
	}
}

// TestUpstream5xxNotTakenIsStillTheUpstreams: an upstream answers 500 with a long body and the
// client hangs up as soon as it sees the status (curl --fail does), so the proxy's writes fail.
// The 500 was the upstream's before the client did anything: it stays in the analysis as a 500
// (as nginx logs the status it sent), where a 2xx the client did not take is left out as the
// client's. Both fronts, the fast paths (GET) and ReverseProxy's (POST).
func TestUpstream5xxNotTakenIsStillTheUpstreams(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			t.Run(f.name+"/"+method, func(t *testing.T) {
				t.Parallel()
				const size = 64 << 20 // more than the socket buffers hold: the proxy is still writing
				up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 67108864\r\n\r\n"); err != nil {
						return
					}
					chunk := make([]byte, 64<<10)
					for sent := 0; sent < size; sent += len(chunk) {
						if _, err := c.Write(chunk); err != nil {
							return
						}
					}
				})
				p, srv := startProxyFront(t, stableOnly(up), f.netHTTPOnly)
				start := time.Now()
				c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				req := method + " /big HTTP/1.1\r\nHost: a\r\n\r\n"
				if method == http.MethodPost {
					req = method + " /big HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
				}
				if _, err := io.WriteString(c, req); err != nil {
					t.Fatal(err)
				}
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "HTTP/1.1 500") {
					t.Fatalf("answer %q (%v), want the upstream's 500", line, err)
				}
				_ = c.(*net.TCPConn).SetLinger(0)
				_ = c.Close() // hang up with the rest unread: the proxy's writes fail
				reqs := samples(t, p, start, 1)
				if len(reqs) != 1 || reqs[0].Status != http.StatusInternalServerError {
					t.Fatalf("request log %+v, want the upstream's 500 in the analysis", reqs)
				}
			})
		}
	}
}
