package kong_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/kong"
	"github.com/canaryctl/canaryctl/providers/kong/kongtest"
	"github.com/canaryctl/canaryctl/rollout"
)

// forgedBatch is what an attacker who can reach the receiver would post to roll a good canary
// back: Kong 3.x entries naming the canary's target, every one a slow 500.
func forgedBatch(canary string, n int) []byte {
	host, port, _ := strings.Cut(canary, ":")
	var parts []string
	for range n {
		e := kongtest.LogEntry(kongtest.LogInput{
			Method: http.MethodGet, Host: "web", URI: "/", Status: http.StatusInternalServerError,
			Started: time.Now().Add(-2 * time.Second), Request: 2 * time.Second, Proxy: 2 * time.Second,
			Tries: []kongtest.Try{{IP: host, Port: atoi(port), Start: time.Now()}}, ClientIP: "203.0.113.5",
		})
		parts = append(parts, string(mustJSON(e)))
	}
	return []byte("[" + strings.Join(parts, ",") + "]")
}

// TestE2EForgedPostsChangeNothing runs a good canary through kongtest with metrics.type kong-log
// while an attacker posts batches of slow 500s naming the canary's target to the receiver, without
// the header and with a wrong secret: every forged post is answered 401, none reaches the analysis,
// the canary is promoted, and the intervals report the rejected posts. A genuine post captured on
// the way (an eavesdropper on a network without log.tls) and replayed after the rollout ended finds
// no receiver, and the next rollout's receiver (a new secret) answers it 401.
func TestE2EForgedPostsChangeNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end rollouts take seconds")
	}
	t.Parallel()
	for _, mode := range []string{"kayenta", "sequential"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			k := kongtest.New()
			t.Cleanup(k.Close)
			s0, s1 := instance(t, "stable", 0, 1), instance(t, "stable", 0, 2)
			base, can := instance(t, "baseline", 0, 3), instance(t, "canary", 0, 4)
			addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
			for _, e := range []struct {
				kind string
				body map[string]any
			}{
				{"upstreams", map[string]any{"name": "web-up"}},
				{"services", map[string]any{"name": "web", "host": "web-up"}},
				{"routes", map[string]any{"paths": []string{"/"}, "service": map[string]any{"name": "web"}}},
				{"targets", map[string]any{"upstream": "web-up", "target": addr(s0)}},
				{"targets", map[string]any{"upstream": "web-up", "target": addr(s1)}},
			} {
				if _, err := k.Create("", e.kind, e.body); err != nil {
					t.Fatal(err)
				}
			}
			// the tap sits between Kong and the receiver, keeps a copy of the first genuine post
			// and forwards every post
			var (
				tapMu    sync.Mutex
				captured []byte
				capAuth  string
				target   atomic.Value // the receiver's URL
			)
			tap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				tapMu.Lock()
				if captured == nil && r.Header.Get("Authorization") != "" {
					captured, capAuth = body, r.Header.Get("Authorization")
				}
				tapMu.Unlock()
				req, _ := http.NewRequestWithContext(r.Context(), r.Method, target.Load().(string), bytes.NewReader(body))
				req.Header = r.Header.Clone()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					w.WriteHeader(http.StatusBadGateway)
					return
				}
				_ = resp.Body.Close()
				w.WriteHeader(resp.StatusCode)
			}))
			t.Cleanup(tap.Close)
			modes := map[string]string{
				"kayenta": "  mode: kayenta",
				// wide margins and an uncapped block (blockCap 10, as the demo): this test is about what
				// reaches the analysis, not about how many requests tell a 1 pp P99 difference on a
				// loaded machine; with the default cap of 0.75 nats per 5 s a step's Pass needs 40 s
				"sequential": "  mode: sequential\n  sequential: {minBake: 2s, maxBake: 40s, blockCap: 10, expandFactor: 10, thresholdSamples: 20, errorMargin: 5, medianMargin: 30, tailQuantile: 0.9, tailMargin: 5}",
			}
			raw := strings.Replace(fmt.Sprintf(e2eSpec, s0.URL, s1.URL, base.URL, can.URL, k.AdminURL(), modes[mode]),
				"log: {flush: 100ms}", fmt.Sprintf("log: {flush: 100ms, endpoint: %q}", tap.URL+"/"), 1)
			spec, err := rollout.ParseSpec(strings.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			eng, logs := assemble(t, spec, []byte(raw))
			target.Store(logs.URL())

			lctx, stopLoad := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var forged, rejected atomic.Int64
			wg.Add(2)
			go func() { // clients: 150 requests/s through Kong's proxy
				defer wg.Done()
				tick := time.NewTicker(time.Second / 150)
				defer tick.Stop()
				for lctx.Err() == nil {
					select {
					case <-lctx.Done():
						return
					case <-tick.C:
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						if resp, err := http.Get(k.ProxyURL() + "/"); err == nil {
							_, _ = io.Copy(io.Discard, resp.Body)
							_ = resp.Body.Close()
						}
					}()
				}
			}()
			go func() { // the attacker: 10 batches of 50 forged entries a second
				defer wg.Done()
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for i := 0; lctx.Err() == nil; i++ {
					select {
					case <-lctx.Done():
						return
					case <-tick.C:
					}
					req, _ := http.NewRequestWithContext(lctx, http.MethodPost, logs.URL(), bytes.NewReader(forgedBatch(addr(can), 50)))
					req.Header.Set("Content-Type", "application/json")
					if i%2 == 1 {
						req.Header.Set("Authorization", "Bearer "+strings.Repeat("x", 43))
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						continue
					}
					_ = resp.Body.Close()
					forged.Add(1)
					if resp.StatusCode == http.StatusUnauthorized {
						rejected.Add(1)
					}
				}
			}()
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			if err := eng.Start(ctx); err != nil {
				t.Fatal(err)
			}
			out, runErr := eng.Run(ctx)
			stopLoad()
			wg.Wait()
			if runErr != nil {
				t.Fatal(runErr)
			}
			if out.Phase != rollout.Promoted {
				t.Fatalf("outcome %s %q, want the good canary promoted despite the forged posts", out.Phase, out.Reason)
			}
			if forged.Load() == 0 || rejected.Load() != forged.Load() {
				t.Fatalf("%d of %d forged posts answered 401, want all", rejected.Load(), forged.Load())
			}
			reqs, _ := logs.Requests(t.Context(), time.Time{}, time.Now().Add(time.Minute))
			for _, q := range reqs {
				// the forged entries are the canary's 500s (the real canary never fails)
				if q.Cohort == providers.Canary && q.Status == http.StatusInternalServerError {
					t.Fatalf("a forged entry reached the analysis: %+v", q)
				}
			}
			c := logs.Counters()
			reported := 0
			for _, iv := range eng.State().Intervals {
				if iv.Ingest != nil && iv.Ingest.RejectedPosts > c.RejectedPosts {
					t.Errorf("interval %d/%d reports %d rejected posts, the receiver saw %d: counted twice", iv.Step, iv.Index, iv.Ingest.RejectedPosts, c.RejectedPosts)
				}
				if iv.Ingest != nil && iv.Ingest.RejectedPosts > 0 {
					reported++
					if !strings.Contains(iv.Reason, "rejected") {
						t.Errorf("interval %d/%d reports %d rejected posts, but its reason does not say so: %q", iv.Step, iv.Index, iv.Ingest.RejectedPosts, iv.Reason)
					}
				}
			}
			t.Logf("%d forged posts rejected (receiver counted %d), %d genuine entries, %d intervals name the rejections", rejected.Load(), c.RejectedPosts, c.Received, reported)
			if c.RejectedPosts < int(rejected.Load()) || reported == 0 || c.StaleEntries != 0 {
				t.Fatalf("receiver counters %+v, %d intervals report rejections; want every rejected post counted and reported", c, reported)
			}

			// the rollout ended: its receiver is gone, and a replay of a genuine post finds nothing
			_ = eng.Close()
			_ = logs.Close()
			tapMu.Lock()
			body, auth := captured, capAuth
			tapMu.Unlock()
			if body == nil {
				t.Fatal("the tap saw no genuine post")
			}
			replay := func(url string) (int, error) {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Authorization", auth)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return 0, err
				}
				_ = resp.Body.Close()
				return resp.StatusCode, nil
			}
			if code, err := replay(logs.URL()); err == nil {
				t.Fatalf("replay to the ended rollout's receiver answered %d, want no receiver", code)
			}
			next, err := kong.NewLogReceiver(kong.LogConfig{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = next.Close() })
			if code, err := replay(next.URL()); err != nil || code != http.StatusUnauthorized {
				t.Fatalf("replay to the next rollout's receiver: %d, %v; want 401", code, err)
			}
			if nc := next.Counters(); nc.Received != 0 || nc.RejectedPosts != 1 {
				t.Fatalf("next receiver counters %+v, want the replay rejected", nc)
			}
		})
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
