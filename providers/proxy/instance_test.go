package proxy

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// statusBackend is an upstream on 127.0.0.1 that answers every request with status: the status of
// a sample tells which upstream answered it, whatever the order the samples were recorded in.
func statusBackend(t *testing.T, status int) string {
	t.Helper()
	return newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(status)
	})).URL
}

// TestRequestsNameTheInstanceThatAnswered: with two canary upstreams, every sample names the
// upstream that answered it (Request.Instance, the upstream's URL as /v1/state lists it), on both
// fronts and read back through the admin API; and after reloads that reorder the upstreams and
// replace one, the samples recorded before still name the upstream that answered them then.
func TestRequestsNameTheInstanceThatAnswered(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			stable := newBackend(t, "stable")
			c1, c2, c3 := statusBackend(t, http.StatusOK), statusBackend(t, http.StatusServiceUnavailable), statusBackend(t, http.StatusCreated)
			want := map[int]string{http.StatusOK: c1, http.StatusServiceUnavailable: c2, http.StatusCreated: c3}
			p, srv := startProxyFront(t, Config{
				Upstreams: map[providers.Cohort][]string{providers.Stable: {stable.url()}, providers.Canary: {c1, c2}},
				Split:     providers.Split{Canary: providers.BasisPoints},
			}, f.netHTTPOnly)
			cl, err := NewClient(ClientConfig{BaseURL: startAdmin(t, p).URL, Token: adminToken})
			if err != nil {
				t.Fatal(err)
			}
			since := time.Now()
			client := testClient()
			const perPhase = 6
			sent := 0
			for i, ups := range [][]string{{c1, c2}, {c2, c1}, {c3, c2}} {
				if i > 0 {
					if err := p.SetUpstreams(t.Context(), providers.Canary, ups); err != nil {
						t.Fatal(err)
					}
				}
				for range perPhase {
					resp, err := client.Do(newReq(t, srv.URL+"/"))
					if err != nil {
						t.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if want[resp.StatusCode] == "" {
						t.Fatalf("status %d from the proxy, not one of the canary upstreams'", resp.StatusCode)
					}
					sent++
				}
			}
			for _, src := range []struct {
				name string
				log  interface {
					Requests(ctx context.Context, since, until time.Time) ([]providers.Request, error)
				}
			}{{"proxy", p}, {"admin API", cl}} {
				reqs := samples(t, src.log, since, sent)
				if len(reqs) != sent {
					t.Fatalf("%s: %d samples, want %d", src.name, len(reqs), sent)
				}
				seen := map[string]int{}
				for _, r := range reqs {
					if r.Cohort != providers.Canary || r.Instance != want[r.Status] {
						t.Errorf("%s: sample %s %d names instance %q, want %q", src.name, r.Cohort, r.Status, r.Instance, want[r.Status])
					}
					seen[r.Instance]++
				}
				// round robin over two upstreams: each answered in every phase it was in
				if seen[c1] < perPhase || seen[c2] < 3*perPhase/2 || seen[c3] < perPhase/2 {
					t.Errorf("%s: samples per instance %v, want c1 ≥ %d, c2 ≥ %d, c3 ≥ %d", src.name, seen, perPhase, 3*perPhase/2, perPhase/2)
				}
			}
		})
	}
}
