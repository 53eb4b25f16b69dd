package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// loadDuration is 5 s by default, 1 s with -short, and CANARYCTL_PROXY_LOAD (e.g. "30s") for the
// long run: CANARYCTL_PROXY_LOAD=30s go test -race -run TestLoad ./providers/proxy/
func loadDuration(t *testing.T) time.Duration {
	if s := os.Getenv("CANARYCTL_PROXY_LOAD"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > 10*time.Minute {
			t.Fatalf("CANARYCTL_PROXY_LOAD=%q must be a duration up to 10m, e.g. 30s", s)
		}
		return d
	}
	if testing.Short() {
		return time.Second
	}
	return 5 * time.Second
}

// loadUpstream is an upstream of the load test: it answers each request with its id (the query
// parameter id) and names itself in X-Upstream. For requests with X-Stray it sends a whole second
// answer nobody asked for (a badly framed upstream): "same" in the same write as the answer,
// "idle" once the proxy has put the connection back in its pool (strays.whileIdle). Canary and
// baseline take 1 ms per request, to keep requests in flight across table swaps.
func loadUpstream(t *testing.T, name string, strays *strayInjector) (url string, served *atomic.Int64) {
	served = new(atomic.Int64)
	const stray = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTRAY"
	url = rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			served.Add(1)
			if name != "stable" {
				time.Sleep(time.Millisecond)
			}
			id := req.URL.Query().Get("id")
			a := fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Length: %d\r\n\r\n%s", name, len(id), id)
			if req.Header.Get("X-Stray") == "same" {
				a += stray
			}
			if _, err := io.WriteString(c, a); err != nil {
				return
			}
			if req.Header.Get("X-Stray") == "idle" {
				strays.whileIdle(c, stray)
			}
		}
	})
	return url, served
}

// strayInjector writes stray bytes to an upstream connection while the proxy holds it idle in its
// pool: it waits (up to 20 ms) for the proxy's end of c to be in a pool, and, holding that pool's
// lock so that no request can take the connection meanwhile, writes the bytes and waits until they
// are in the proxy's socket. The guarantee under test is for exactly those bytes: bytes that come
// while a connection is idle are never read as an answer. (Bytes that come after a request was sent
// on the connection are its answer by the protocol, for nginx and http.Transport too; see README.)
//
// The proxy's end of c is the pooled connection with c's two addresses swapped — both of them: the
// kernel gives one local port to connections to different upstreams, so the local address alone
// can name another upstream's idle connection while c's own is carrying a request
// (TestStrayInjectorFindsItsOwnConnection).
type strayInjector struct {
	p                 atomic.Pointer[Proxy]
	injected, skipped atomic.Int64
	// late: stray bytes that were written but not in the proxy's socket after strayDelivery, so
	// the run cannot tell whether a request sent later got them by the protocol
	late atomic.Int64
}

// strayDelivery bounds the wait for stray bytes written on loopback to reach the proxy's socket.
const strayDelivery = 10 * time.Second

// waitInput reports whether nc (the proxy's end of an idle pooled connection) has input within d.
// It looks with peekInput rather than waiting on the poller with a read deadline: the h1 loop
// keeps a connection's read deadline across requests, which a deadline set here would change.
func waitInput(nc net.Conn, d time.Duration) bool {
	for end, pause := time.Now().Add(d), 10*time.Microsecond; ; pause = min(2*pause, time.Millisecond) {
		if peekInput(nc) {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(pause)
	}
}

func (s *strayInjector) whileIdle(c net.Conn, stray string) {
	p := s.p.Load()
	local, remote := c.RemoteAddr().String(), c.LocalAddr().String() // of the proxy's end
	deadline := time.Now().Add(20 * time.Millisecond)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		ups := make([]*upstream, 0, len(p.known))
		for _, u := range p.known {
			ups = append(ups, u)
		}
		p.mu.Unlock()
		for _, u := range ups {
			u.pool.mu.Lock()
			for _, uc := range u.pool.idle {
				if uc.nc.LocalAddr().String() != local || uc.nc.RemoteAddr().String() != remote {
					continue
				}
				if _, err := io.WriteString(c, stray); err == nil {
					if waitInput(uc.nc, strayDelivery) {
						s.injected.Add(1)
					} else {
						s.late.Add(1)
					}
				}
				u.pool.mu.Unlock()
				return
			}
			u.pool.mu.Unlock()
		}
		time.Sleep(50 * time.Microsecond)
	}
	s.skipped.Add(1) // taken again before it was seen idle: no stray this time
}

// malformedRequests are what the load test's misbehaving client sends, each on a new connection:
// client errors that must never count against the cohort they land in.
var malformedRequests = []string{
	"POST /load?id=bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabcde\r\n0\r\n\r\n",
	"POST /load?id=bad HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc",           // then closed: an aborted upload
	"POST /load?id=bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", // not hex
}

// TestLoadSplitChangesRollbackPromote: 8 clients (one sending POST bodies) send requests for the
// whole run while the admin API changes the split every 100 ms, rolls back once and promotes once;
// the upstreams now and then send stray bytes after an answer, and one more client sends malformed
// bodies and aborts uploads. No well-formed request fails, every answer is its own request's (it
// echoes the request's id), and no client error is in the request log the analysis reads, nor is
// any request recorded as a 5xx.
func TestLoadSplitChangesRollbackPromote(t *testing.T) {
	dur := loadDuration(t)
	type upstreamURL struct {
		url    string
		served *atomic.Int64
	}
	strays := &strayInjector{}
	slow := func(name string) upstreamURL {
		u, n := loadUpstream(t, name, strays)
		return upstreamURL{u, n}
	}
	stable, baseline, canary := slow("stable"), slow("baseline"), slow("canary")
	p, srv := startProxy(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {stable.url}}})
	strays.p.Store(p)
	admin := startAdmin(t, p)
	cl, err := NewClient(ClientConfig{BaseURL: admin.URL, Token: adminToken})
	if err != nil {
		t.Fatal(err)
	}

	// The admin schedule is a fixed number of 100 ms steps (rollback at the middle, promote at three
	// quarters), so it is the same on a loaded machine, where ticks come late: the clients run until
	// the schedule ends. The whole run is capped at 4× the nominal duration plus 30 s.
	steps := max(int(dur/(100*time.Millisecond)), 4)
	rollbackAt, promoteAt := steps/2, steps*3/4
	if steps < 8 {
		promoteAt = -1 // too short for both; the rollback is what matters
	}
	capCtx, capCancel := context.WithTimeout(t.Context(), 4*dur+30*time.Second)
	defer capCancel()
	ctx, cancel := context.WithCancel(capCtx)
	defer cancel()
	const workers, maxRequests = 8, 2_000_000
	var sent, failed, wrong, malformed atomic.Int64
	var wg sync.WaitGroup
	c := testClient()
	runStart := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && sent.Load() < maxRequests {
				n := sent.Add(1)
				id := strconv.FormatInt(n, 10)
				// worker 0 sends bodies, which the h1 loop hands to net/http on the same connection
				var req *http.Request
				if w == 0 {
					req, _ = http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/load?id="+id, strings.NewReader("body"))
				} else {
					req, _ = http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/load?id="+id, nil)
				}
				switch {
				case w > 0 && n%16 == 0:
					req.Header.Set("X-Stray", "idle") // (GETs: they take the proxy's own pool)
				case w > 0 && n%16 == 8:
					req.Header.Set("X-Stray", "same")
				}
				resp, err := c.Do(req)
				if err != nil {
					failed.Add(1)
					t.Errorf("request failed: %v", err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode != http.StatusOK:
					failed.Add(1)
					t.Errorf("request answered %d", resp.StatusCode)
				case string(body) != id:
					wrong.Add(1)
					t.Errorf("request %s got the answer %q: another request's", id, body)
				}
			}
		}()
	}
	// the misbehaving client
	wg.Add(1)
	go func() {
		defer wg.Done()
		addr := strings.TrimPrefix(srv.URL, "http://")
		for i := 0; ctx.Err() == nil && i < 100_000; i++ {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, malformedRequests[i%len(malformedRequests)]); err == nil {
				malformed.Add(1)
			}
			_ = conn.(*net.TCPConn).CloseWrite()
			_, _ = io.Copy(io.Discard, conn)
			_ = conn.Close()
		}
	}()

	splits := []providers.Split{{Canary: 250, Baseline: 250}, {Canary: 1000, Baseline: 1000}, {Canary: 5000, Baseline: 2500}, {Canary: 100}}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var changes, rollbacks, promotes int
	actx := context.WithoutCancel(ctx)
	start := time.Now()
	for i := range steps {
		select {
		case <-capCtx.Done():
			cancel()
			wg.Wait()
			t.Fatalf("schedule stopped at step %d of %d after %s: %v", i, steps, time.Since(start), capCtx.Err())
		case <-tick.C:
		}
		switch i {
		case rollbackAt:
			if err := cl.Rollback(actx); err != nil {
				t.Fatal(err)
			}
			rollbacks++
		case promoteAt:
			if err := cl.Promote(actx); err != nil {
				t.Fatal(err)
			}
			promotes++
		default:
			st, err := cl.State(actx)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Upstreams[providers.Canary]) == 0 {
				if err := cl.SetUpstreams(actx, providers.Canary, []string{canary.url}); err != nil {
					t.Fatal(err)
				}
				if err := cl.SetUpstreams(actx, providers.Baseline, []string{baseline.url}); err != nil {
					t.Fatal(err)
				}
			}
			if err := cl.SetSplit(actx, splits[i%len(splits)]); err != nil {
				t.Fatal(err)
			}
			changes++
		}
	}
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	t.Logf("%s nominal, %s taken: %d requests (%.0f/s), %d failed, %d wrong answers, stray answers %d sent while idle (%d not idle in time, %d late), %d malformed; "+
		"%d split changes, %d rollback, %d promote; served stable %d baseline %d canary %d",
		dur, elapsed.Round(time.Millisecond), sent.Load(), float64(sent.Load())/elapsed.Seconds(), failed.Load(), wrong.Load(),
		strays.injected.Load(), strays.skipped.Load(), strays.late.Load(), malformed.Load(),
		changes, rollbacks, promotes, stable.served.Load(), baseline.served.Load(), canary.served.Load())
	if strays.late.Load() != 0 {
		t.Errorf("%d stray writes did not reach the proxy's socket within %s while it was held idle: "+
			"a later request may have got them by the protocol, so a wrong answer does not prove a leak", strays.late.Load(), strayDelivery)
	}
	if failed.Load() != 0 || wrong.Load() != 0 {
		t.Fatalf("%d of %d requests failed, %d got another request's answer", failed.Load(), sent.Load(), wrong.Load())
	}
	wantPromotes := 1
	if promoteAt < 0 {
		wantPromotes = 0
	}
	if rollbacks != 1 || promotes != wantPromotes || changes != steps-1-wantPromotes {
		t.Fatalf("%d changes, %d rollbacks, %d promotes in %d steps", changes, rollbacks, promotes, steps)
	}
	if canary.served.Load() == 0 || baseline.served.Load() == 0 || stable.served.Load() == 0 {
		t.Fatal("a cohort got no traffic")
	}
	if strays.injected.Load() == 0 || malformed.Load() == 0 {
		t.Fatal("no stray bytes or no malformed requests were sent")
	}
	// the client errors were counted (under their codes), but none is in the request log, and
	// nothing was recorded as a 5xx of any cohort
	var clientErrs float64
	for ci := range nCohorts {
		for _, code := range []string{"400", "408", "499"} {
			clientErrs += requestsCounted(t, p, string(cohortNames[ci]), code, "split")
		}
	}
	if clientErrs == 0 {
		t.Error("no client error was counted")
	}
	reqs, err := p.Requests(t.Context(), runStart, time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		if r.Status != http.StatusOK {
			t.Fatalf("request log has %+v: only the upstreams' own answers (all 200) belong there", r)
		}
	}
	t.Logf("%d requests in the log, %.0f client errors counted apart", len(reqs), clientErrs)
}
