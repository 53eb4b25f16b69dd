package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/canaryctl/canaryctl/providers"
)

// countingUpstream answers every request with its method and body and counts the requests that
// reached it.
func countingUpstream(t *testing.T) (url string, reached *atomic.Int32) {
	t.Helper()
	reached = new(atomic.Int32)
	url = rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			reached.Add(1)
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return
			}
			a := req.Method + " " + string(body)
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(a), a); err != nil {
				return
			}
		}
	})
	return url, reached
}

// sendRaw writes raw to a new connection to the proxy, closes its sending side when closeAfter
// is set, and returns what the proxy answered (up to its end of stream), "" when nothing.
func sendRaw(t *testing.T, addr, raw string, closeAfter bool) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(addr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	if closeAfter {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

func statusOf(answer string) string {
	if len(answer) < 12 {
		return answer
	}
	return answer[9:12]
}

// requestsCounted is canaryctl_proxy_requests_total of a cohort, code and route.
func requestsCounted(t *testing.T, p *Proxy, cohort, code, route string) float64 {
	t.Helper()
	var m dto.Metric
	if err := p.metrics.requests.WithLabelValues(cohort, code, route).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestClientBodyErrorsAreTheClients (issue 15, item 2): a request whose body the client gets wrong
// (a malformed chunk size), breaks off or lets stall is answered and recorded as the client's
// error — 400, 499, 408 as nginx — and never as a 502 of the cohort it was routed to; a short body
// is read whole before the upstream is contacted, so such a request never reaches it. Both fronts.
func TestClientBodyErrorsAreTheClients(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		raw      string
		half     bool   // close the sending side after raw
		want     string // status answered, "" for none expected (client gone)
		code     string // status counted
		mayReach bool   // the request may reach the upstream (when false, it must not)
	}{
		{"negative chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabcde\r\n0\r\n\r\n", false, "400", "400", false},
		{"chunk size not hex", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabcde\r\n0\r\n\r\n", false, "400", "400", false},
		{"upload broken off", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc", true, "", "499", false},
		{"chunked upload broken off", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", true, "", "499", false},
		{"upload stalls", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc", false, "408", "408", false},
		{"long upload broken off while streaming", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("x", 40), true, "", "499", true},
	}
	for _, f := range fronts {
		for _, tc := range cases {
			t.Run(f.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				up, reached := countingUpstream(t)
				cfg := stableOnly(up)
				cfg.ClientBodyTimeout = 300 * time.Millisecond
				cfg.RequestBodyBuffer = 16
				p, srv := startProxyFront(t, cfg, f.netHTTPOnly)
				start := time.Now()
				got := sendRaw(t, srv.URL, tc.raw, tc.half)
				if tc.want != "" && statusOf(got) != tc.want {
					t.Fatalf("answer %q, want status %s", got, tc.want)
				}
				if tc.want == "" && strings.HasPrefix(got, "HTTP/1.1 502") {
					t.Fatalf("answer %q: a client's error answered as the upstream's", got)
				}
				counted := func() float64 {
					return requestsCounted(t, p, "stable", tc.code, "split")
				}
				deadline := time.Now().Add(5 * time.Second)
				for counted() != 1 {
					if time.Now().After(deadline) {
						t.Fatalf("canaryctl_proxy_requests_total{code=%q} = %v, want 1", tc.code, counted())
					}
					time.Sleep(5 * time.Millisecond)
				}
				if n := requestsCounted(t, p, "stable", "502", "split"); n != 0 {
					t.Errorf("%v requests counted as 502", n)
				}
				if reqs, _ := p.Requests(t.Context(), start, time.Now().Add(time.Second)); len(reqs) != 0 {
					t.Errorf("request log %+v: a client's error must stay out of the analysis", reqs)
				}
				if reached.Load() > 0 && !tc.mayReach {
					t.Errorf("the request reached the upstream: a short body is read whole first")
				}
			})
		}
	}
}

// TestBufferedBodyIsSentWhole: a short body (chunked or not, with Expect: 100-continue or not)
// reaches the upstream whole, with its length, as nginx sends a buffered body.
func TestBufferedBodyIsSentWhole(t *testing.T) {
	t.Parallel()
	var heads atomic.Value
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			heads.Store(fmt.Sprintf("cl=%d te=%v expect=%q body=%q", req.ContentLength, req.TransferEncoding, req.Header.Get("Expect"), body))
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			_, srv := startProxyFront(t, stableOnly(up), f.netHTTPOnly)
			got := sendRaw(t, srv.URL, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", false)
			if !strings.Contains(got, "200 OK") {
				t.Fatalf("answer %q", got)
			}
			if h := heads.Load(); h != `cl=5 te=[] expect="" body="abcde"` {
				t.Fatalf("upstream saw %v", h)
			}
		})
	}
}

// TestClientErrorsCannotRollBackAGoodCanary (issue 15, item 2): clients pinned by their sticky key
// to a good canary's buckets send malformed chunked bodies and uploads they break off. Before, each
// was recorded as a 502 of the canary and a handful rolled it back ("5xx guard: canary 42.86%
// (3/7)"); now none of them is in the request log the analysis reads, and the canary's error rate
// stays 0.
func TestClientErrorsCannotRollBackAGoodCanary(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			stable, _ := countingUpstream(t)
			canary, _ := countingUpstream(t)
			key := ""
			for i := 0; ; i++ {
				if k := fmt.Sprintf("user-%d", i); bucketOf("h:"+k) < 5000 {
					key = k
					break
				}
			}
			cfg := Config{Upstreams: map[providers.Cohort][]string{providers.Stable: {stable}, providers.Canary: {canary}},
				Split: providers.Split{Canary: 5000}, HashOn: "header:X-User"}
			p, srv := startProxyFront(t, cfg, f.netHTTPOnly)
			start := time.Now()
			for i := range 5 {
				good := sendRaw(t, srv.URL, "POST / HTTP/1.1\r\nHost: a\r\nX-User: "+key+"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", false)
				if statusOf(good) != "200" {
					t.Fatalf("good request %d: %q", i, good)
				}
				sendRaw(t, srv.URL, "POST / HTTP/1.1\r\nHost: a\r\nX-User: "+key+"\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabcde\r\n0\r\n\r\n", false)
				sendRaw(t, srv.URL, "POST / HTTP/1.1\r\nHost: a\r\nX-User: "+key+"\r\nContent-Length: 100\r\n\r\nabc", true)
			}
			// all 15 recorded (the counters), and the log holds only the 5 good ones
			deadline := time.Now().Add(5 * time.Second)
			for {
				st, _ := p.State(t.Context())
				if st.Served[providers.Canary].Split == 15 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("canary served %d, want 15", st.Served[providers.Canary].Split)
				}
				time.Sleep(5 * time.Millisecond)
			}
			reqs := samples(t, p, start, 5)
			if len(reqs) != 5 {
				t.Fatalf("request log has %d requests, want the 5 good ones: %+v", len(reqs), reqs)
			}
			for _, r := range reqs {
				if r.Cohort != providers.Canary || r.Status != http.StatusOK {
					t.Errorf("logged %+v, want canary 200", r)
				}
			}
			pair, err := Series(reqs, providers.Metric{Name: "errors", Kind: providers.ErrorRate},
				providers.Window{Start: start, End: time.Now().Add(time.Second), Step: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if pair.Canary[0] != 0 {
				t.Fatalf("canary error rate %v%%, want 0", pair.Canary[0])
			}
		})
	}
}

// TestClientNotReadingIsDisconnected (issue 15, item 4): a client that asks for a large answer and
// stops reading it holds the upstream connection only for SendTimeout (nginx's send_timeout), then
// is disconnected and recorded as the client's failure (499, out of the analysis). Both fronts,
// for a GET (the h1 loop, the fast path) and a POST (ReverseProxy).
func TestClientNotReadingIsDisconnected(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 32<<20)
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(big), big); err != nil {
				return
			}
		}
	})
	for _, f := range fronts {
		for _, method := range []string{"GET", "POST"} {
			t.Run(f.name+"/"+method, func(t *testing.T) {
				t.Parallel()
				cfg := stableOnly(up)
				cfg.SendTimeout = 300 * time.Millisecond
				p, srv := startProxyFront(t, cfg, f.netHTTPOnly)
				c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
				req := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
				if method == "POST" {
					req = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
				}
				if _, err := io.WriteString(c, req); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				deadline := start.Add(10 * time.Second)
				for requestsCounted(t, p, "stable", "499", "split") != 1 {
					if time.Now().After(deadline) {
						t.Fatal("a client that stopped reading was not disconnected within 10 s")
					}
					time.Sleep(10 * time.Millisecond)
				}
				if n := requestsCounted(t, p, "stable", "200", "split"); n != 0 {
					t.Errorf("%v answers counted as delivered", n)
				}
				if reqs, _ := p.Requests(t.Context(), start.Add(-time.Minute), time.Now().Add(time.Second)); len(reqs) != 0 {
					t.Errorf("request log %+v: an answer the client did not take stays out of the analysis", reqs)
				}
			})
		}
	}
}

// TestClientTimeoutsConfig: the client-side settings are read from the YAML file, default to
// nginx's values, and out-of-range values are one-line errors naming the field.
func TestClientTimeoutsConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		field      string // "" when valid
		body, send time.Duration
		buffer     int
	}{
		{"defaults", "upstreams: {stable: [http://127.0.0.1:9]}\n", "", DefaultClientTimeout, DefaultClientTimeout, DefaultRequestBodyBuffer},
		{"set", "upstreams: {stable: [http://127.0.0.1:9]}\ntimeouts: {clientBody: 5s, send: 7s}\nrequestBodyBuffer: 1024\n", "", 5 * time.Second, 7 * time.Second, 1024},
		{"negative body timeout", "timeouts: {clientBody: -1s}\n", "timeouts.clientBody", 0, 0, 0},
		{"negative send timeout", "timeouts: {send: -1s}\n", "timeouts.send", 0, 0, 0},
		{"buffer too large", "requestBodyBuffer: 1000000000\n", "requestBodyBuffer", 0, 0, 0},
		{"negative buffer", "requestBodyBuffer: -1\n", "requestBodyBuffer", 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc, err := ParseFileConfig([]byte(tc.yaml))
			if tc.field != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Field != tc.field {
					t.Fatalf("error %v, want a ConfigError naming %s", err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := fc.ProxyConfig()
			if err != nil {
				t.Fatal(err)
			}
			p, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if p.bodyTimeout != tc.body || p.sendTimeout != tc.send || p.bodyBuffer != tc.buffer {
				t.Fatalf("body timeout %v, send timeout %v, buffer %d; want %v, %v, %d", p.bodyTimeout, p.sendTimeout, p.bodyBuffer, tc.body, tc.send, tc.buffer)
			}
		})
	}
}

// TestBodiesAroundTheBufferArriveIntact: chunked and sized bodies below, at and above
// RequestBodyBuffer reach the upstream byte for byte — whole with a Content-Length when they fit,
// streamed on after the buffered part when they do not. Both fronts.
func TestBodiesAroundTheBufferArriveIntact(t *testing.T) {
	t.Parallel()
	type seen struct {
		clen int64
		body string
	}
	got := make(chan seen, 1)
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			b, err := io.ReadAll(req.Body)
			if err != nil {
				return
			}
			got <- seen{req.ContentLength, string(b)}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	const buffer = 16 << 10
	for _, f := range fronts {
		for _, size := range []int{5000, buffer, buffer + 1, 200 << 10} {
			for _, chunked := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%d/chunked=%v", f.name, size, chunked), func(t *testing.T) {
					cfg := stableOnly(up)
					cfg.RequestBodyBuffer = buffer
					_, srv := startProxyFront(t, cfg, f.netHTTPOnly)
					body := make([]byte, size)
					for i := range body {
						body[i] = byte('a' + i%26)
					}
					req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/", bytes.NewReader(body))
					if chunked {
						req.ContentLength = -1 // sent chunked
						req.Body = io.NopCloser(bytes.NewReader(body))
					}
					resp, err := testClient().Do(req)
					if err != nil {
						t.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("status %d", resp.StatusCode)
					}
					s := <-got
					if s.body != string(body) {
						t.Fatalf("upstream got %d bytes, want the %d sent", len(s.body), size)
					}
					if fits := size <= buffer; fits && s.clen != int64(size) {
						t.Errorf("a body that fits the buffer went upstream with length %d, want %d", s.clen, size)
					}
				})
			}
		}
	}
}
