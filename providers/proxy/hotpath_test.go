package proxy

import (
	"bytes"
	"errors"
	"math"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// rawBenchUpstream answers every request head on a connection with the same 64-byte answer,
// allocating nothing per request (unlike httptest), so a measurement of allocations counts the
// proxy's own.
func rawBenchUpstream(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 64\r\n\r\n" + strings.Repeat("x", 64))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
			go func() {
				buf := make([]byte, 16<<10)
				have := 0
				for {
					n, err := c.Read(buf[have:])
					if err != nil {
						return
					}
					have += n
					for {
						i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						if _, err := c.Write(answer); err != nil {
							return
						}
						have = copy(buf, buf[i+4:have])
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// rawBenchClient sends GET requests on one keep-alive connection and reads answers of a known
// length into a fixed buffer.
type rawBenchClient struct {
	c      net.Conn
	buf    []byte
	answer int // length of one answer
}

var benchRequest = []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n\r\n")

func dialBenchClient(t testing.TB, addr string) *rawBenchClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	rc := &rawBenchClient{c: c, buf: make([]byte, 4096)}
	// the first answer tells the length of all of them (the head is the same every time)
	if _, err := c.Write(benchRequest); err != nil {
		t.Fatal(err)
	}
	have := 0
	for {
		n, err := c.Read(rc.buf[have:])
		if err != nil {
			t.Fatal(err)
		}
		have += n
		if i := bytes.Index(rc.buf[:have], []byte("\r\n\r\n")); i >= 0 && have >= i+4+64 {
			if !bytes.HasPrefix(rc.buf, []byte("HTTP/1.1 200 ")) {
				t.Fatalf("answer %q", rc.buf[:have])
			}
			rc.answer = i + 4 + 64
			return rc
		}
	}
}

func (rc *rawBenchClient) do() error {
	if _, err := rc.c.Write(benchRequest); err != nil {
		return err
	}
	for have := 0; have < rc.answer; {
		n, err := rc.c.Read(rc.buf[have:rc.answer])
		if err != nil {
			return err
		}
		have += n
	}
	if !bytes.HasPrefix(rc.buf, []byte("HTTP/1.1 200 ")) {
		return errors.New("answer is not a 200")
	}
	return nil
}

// BenchmarkH1HotPath: whole requests through the h1 loop over loopback, from clients and to an
// upstream that allocate nothing per request, so allocs/op is the proxy's own (BenchmarkServeFront
// counts its net/http client and httptest upstream too).
func BenchmarkH1HotPath(b *testing.B) {
	up := rawBenchUpstream(b)
	_, srv := startProxyFront(b, Config{Upstreams: map[providers.Cohort][]string{"stable": {up}, "canary": {up}},
		Split: providers.Split{Canary: 500}}, false)
	addr := strings.TrimPrefix(srv.URL, "http://")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		rc := dialBenchClient(b, addr)
		for pb.Next() {
			if err := rc.do(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestH1HotPathAllocations: a bodiless GET through the h1 loop over a pooled keep-alive upstream
// connection allocates nothing per request (bench/RESULTS.md: allocations are CPU and GC work on
// the path the loopback benchmark measures), without routes and with them (Config.RouteSegments:
// the template is built on the stack and found in the interned table). Counted over whole requests
// with runtime.MemStats; the raw client and upstream allocate nothing per request themselves.
func TestH1HotPathAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("counts allocations over 3000 requests")
	}
	for _, tc := range []struct {
		name     string
		segments int
	}{{"routes off", 0}, {"routes on", 2}} {
		t.Run(tc.name, func(t *testing.T) { // not parallel: the count is process-wide
			up := rawBenchUpstream(t)
			p, srv := startProxyFront(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {up}, "canary": {up}},
				Split: providers.Split{Canary: 500}, RouteSegments: tc.segments}, false)
			rc := dialBenchClient(t, strings.TrimPrefix(srv.URL, "http://"))
			for range 200 { // warm up: pools, buffers, metric series of both cohorts, the route table
				if err := rc.do(); err != nil {
					t.Fatal(err)
				}
			}
			// The fewest of three rounds: goroutines other tests left behind may allocate meanwhile, but
			// an allocation on the path is one or more per request in every round.
			const n = 1000
			fewest := math.Inf(1)
			for range 3 {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for range n {
					if err := rc.do(); err != nil {
						t.Fatal(err)
					}
				}
				runtime.ReadMemStats(&after)
				fewest = min(fewest, float64(after.Mallocs-before.Mallocs)/n)
			}
			if fewest >= 0.5 {
				t.Errorf("%.2f allocations per request through the h1 loop, want none", fewest)
			}
			reqs, err := p.Requests(t.Context(), time.Unix(0, 0), time.Now().Add(time.Hour))
			if err != nil || len(reqs) == 0 {
				t.Fatalf("requests %d, %v", len(reqs), err)
			}
			if got, want := reqs[len(reqs)-1].Route, map[int]string{0: "", 2: "GET /bench"}[tc.segments]; got != want {
				t.Errorf("route %q, want %q", got, want)
			}
		})
	}
}
