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

// TestUpstreamNotReadingTheBodyTimesOut: an upstream that takes a request head and then stops
// reading its long body (a hung canary) ends the request after UpstreamSendTimeout between writes
// (nginx's proxy_send_timeout): the client gets a 504 and the analysis counts it against the
// cohort. Without it the request hangs for as long as the upstream does, holding both connections,
// and the failure is never recorded at all. Both fronts.
func TestUpstreamNotReadingTheBodyTimesOut(t *testing.T) {
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
				<-release // hung: reads nothing more, answers nothing
			})
			cfg := stableOnly(up)
			cfg.UpstreamSendTimeout = 300 * time.Millisecond
			p, srv := startProxyFront(t, cfg, f.netHTTPOnly)
			start := time.Now()
			c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			const size = 256 << 20 // far more than the socket buffers between proxy and upstream hold
			go func() {
				_, _ = io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 268435456\r\n\r\n")
				chunk := make([]byte, 64<<10)
				for sent := 0; sent < size; sent += len(chunk) {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "HTTP/1.1 504") {
				t.Fatalf("answer %q (%v), want 504 after the upstream stopped reading", line, err)
			}
			reqs := samples(t, p, start, 1)
			if len(reqs) != 1 || reqs[0].Status != http.StatusGatewayTimeout {
				t.Fatalf("request log %+v, want the upstream's 504 in the analysis", reqs)
			}
		})
	}
}

// TestUpstreamTimeoutsConfig: timeouts.upstreamSend and timeouts.upstreamRead from YAML, and a
// negative value is a one-line error naming the field.
func TestUpstreamTimeoutsConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		field string
		got   func(Config) time.Duration
	}{
		{"upstreamSend", func(c Config) time.Duration { return c.UpstreamSendTimeout }},
		{"upstreamRead", func(c Config) time.Duration { return c.UpstreamReadTimeout }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			fc, err := ParseFileConfig([]byte("upstreams: {stable: [http://127.0.0.1:9]}\ntimeouts: {" + tc.field + ": 9s}\n"))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := fc.ProxyConfig()
			if err != nil {
				t.Fatal(err)
			}
			if d := tc.got(cfg); d != 9*time.Second {
				t.Fatalf("timeouts.%s %v, want 9s", tc.field, d)
			}
			_, err = ParseFileConfig([]byte("timeouts: {" + tc.field + ": -1s}\n"))
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != "timeouts."+tc.field {
				t.Fatalf("error %v, want a ConfigError naming timeouts.%s", err, tc.field)
			}
		})
	}
}

// TestUpstreamAnsweringBeforeAStalledUploadIsTheUpstreams: an upstream answers 500 as soon as it
// has a request head, without reading its long body, and the client then pauses its upload (it
// waits for the answer). The client's body times out, but the upstream had failed first: the
// analysis records its 500, not the client's 408. Both fronts.
func TestUpstreamAnsweringBeforeAStalledUploadIsTheUpstreams(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				if _, err := io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"); err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, br)
			})
			cfg := stableOnly(up)
			cfg.RequestBodyBuffer = 16
			cfg.ClientBodyTimeout = 300 * time.Millisecond
			p, srv := startProxyFront(t, cfg, f.netHTTPOnly)
			start := time.Now()
			c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 40)); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "HTTP/1.1 500") {
				t.Fatalf("answer %q (%v), want the upstream's 500", line, err)
			}
			reqs := samples(t, p, start, 1)
			if len(reqs) != 1 || reqs[0].Status != http.StatusInternalServerError {
				t.Fatalf("request log %+v, want the upstream's 500 in the analysis", reqs)
			}
		})
	}
}

// TestStalledLongUploadIsClosed: a client that stalls a long upload (streamed upstream after the
// buffer) is answered 408 and its connection closed at once, as nginx does, instead of being
// held with no deadline while net/http waits to drain the rest of the body. Both fronts.
func TestStalledLongUploadIsClosed(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			up, _ := countingUpstream(t)
			cfg := stableOnly(up)
			cfg.ClientBodyTimeout = 300 * time.Millisecond
			cfg.RequestBodyBuffer = 16
			_, srv := startProxyFront(t, cfg, f.netHTTPOnly)
			c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// the test's own deadline, far beyond the body timeout: reaching it means the proxy
			// held the connection
			_ = c.SetDeadline(time.Now().Add(8 * time.Second))
			if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"+strings.Repeat("x", 40)); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil || !strings.HasPrefix(string(got), "HTTP/1.1 408") {
				t.Fatalf("answer %q (%v), want 408 and the connection closed", got, err)
			}
		})
	}
}

// TestUpstreamResetDuringUploadIsTheUpstreams: an upstream that resets the connection in the
// middle of a long upload (a crash) is the upstream's failure: 502 in the analysis, never the
// client's error, although the client's upload breaks off with it. Both fronts.
func TestUpstreamResetDuringUploadIsTheUpstreams(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.CopyN(io.Discard, req.Body, 200<<10)
				_ = c.(*net.TCPConn).SetLinger(0) // reset
			})
			p, srv := startProxyFront(t, stableOnly(up), f.netHTTPOnly)
			start := time.Now()
			c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			const size = 8 << 20
			go func() {
				_, _ = io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 8388608\r\n\r\n")
				chunk := make([]byte, 64<<10)
				for sent := 0; sent < size; sent += len(chunk) {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "HTTP/1.1 502") {
				t.Fatalf("answer %q (%v), want 502", line, err)
			}
			reqs := samples(t, p, start, 1)
			if len(reqs) != 1 || reqs[0].Status != http.StatusBadGateway {
				t.Fatalf("request log %+v, want the upstream's 502 in the analysis", reqs)
			}
		})
	}
}
