package kong

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
)

// failAfter fails every Admin API request of a method after the first n of them (a connection
// error: the request never reaches Kong), as a Kong that went away half-way through a promotion.
type failAfter struct {
	method string
	n      int
	mu     sync.Mutex
	seen   int
}

func (f *failAfter) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	if req.Method == f.method {
		f.seen++
		if f.seen > f.n {
			f.mu.Unlock()
			return nil, errors.New("connection refused (test)")
		}
	}
	f.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

// admin sends one Admin API request as an operator would, and fails the test on an error answer.
func admin(t *testing.T, f *fixture, method, path string, body any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, f.kong.AdminURL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
}

// shape renders web-up's targets as address=weight[tags], sorted.
func shape(f *fixture) string {
	var out []string
	for _, t := range f.kong.Targets("web-up") {
		tags := append([]string{}, t.Tags...)
		sort.Strings(tags)
		out = append(out, fmt.Sprintf("%s=%d%v", t.Target, t.Weight, tags))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// A rollback after a promotion that deleted stable's targets (a promotion that failed half-way, or
// was killed: see TestKillAtEveryAdminCallThenResume) restores exactly the recorded original
// upstream: the deleted targets are created again with their weights and tags, the drained target
// stays at 0, the canary's target (already untagged by the promotion) is deleted. A stable target
// someone deleted before any promotion is theirs to bring back: a rollback does not.
func TestRollbackAfterPromotionDeletedStable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		deletes int // DELETEs the promotion gets through before Kong goes away (stable's two, then the baseline's)
		resumed bool
	}{
		{"promotion failed after deleting one old stable target", 1, false},
		{"promotion failed after deleting both old stable targets", 2, false},
		{"killed after deleting one old stable target, aborted from another process", 1, true},
		{"killed after deleting both old stable targets, aborted from another process", 2, true},
		{"killed when Kong was promoted, before the state said so; aborted from another process", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			stable := f.kong.Targets("web-up")
			admin(t, f, http.MethodPatch, "/upstreams/web-up/targets/"+stable[0].Target, map[string]any{"weight": 30, "tags": []string{"team-web", "az-a"}})
			if _, err := f.kong.Create("", "targets", map[string]any{"upstream": "web-up", "target": "10.9.9.9:80", "weight": 0, "tags": []string{"drained"}}); err != nil {
				t.Fatal(err)
			}
			original := shape(f)
			cfg := f.config(ModeTargets)
			cfg.Retries = -1
			cfg.HTTPClient = &http.Client{Transport: &failAfter{method: http.MethodDelete, n: tc.deletes}}
			r := newRouter(t, cfg)
			orig, err := r.Original(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			setUp(t, r, f)
			if err := r.SetSplit(ctx(t), providers.Split{Canary: 5000, Baseline: 5000}); err != nil {
				t.Fatal(err)
			}
			if err := r.Promote(ctx(t)); (err == nil) != (tc.deletes == 3) {
				t.Fatalf("Promote with Kong gone after %d DELETEs: %v", tc.deletes, err)
			}
			mid := shape(f)
			if n := strings.Count(mid, "=") - 1; n != 4-min(tc.deletes, 3) || !strings.Contains(mid, f.canary.addr()+"=100") {
				t.Fatalf("the promotion did not get as far as the test wants (%d targets besides the drained one): %s", n, mid)
			}
			back := r
			if tc.resumed {
				cfg.HTTPClient = nil
				back = newRouter(t, cfg)
				if err := back.Preflight(ctx(t)); err != nil {
					t.Fatal(err)
				}
				if err := back.SetOriginal(orig); err != nil {
					t.Fatal(err)
				}
				if err := back.Recall(map[providers.Cohort][]string{providers.Baseline: {f.baseline.URL}, providers.Canary: {f.canary.URL}}, true); err != nil {
					t.Fatal(err)
				}
			} else {
				r.cfg.HTTPClient.Transport.(*failAfter).n = 1 << 20 // Kong is back
			}
			if err := back.Rollback(ctx(t)); err != nil {
				t.Fatalf("rollback after a promotion deleted stable (%s): %v", mid, err)
			}
			if got := shape(f); got != original {
				t.Fatalf("after the rollback:\n  %s\nwant the original\n  %s", got, original)
			}
		})
	}
	t.Run("a stable target deleted by someone else before any promotion stays deleted", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		r := newRouter(t, f.config(ModeTargets))
		if _, err := r.Original(ctx(t)); err != nil {
			t.Fatal(err)
		}
		setUp(t, r, f)
		if err := r.SetSplit(ctx(t), providers.Split{Canary: 1000, Baseline: 1000}); err != nil {
			t.Fatal(err)
		}
		gone := f.stable[1].addr()
		admin(t, f, http.MethodDelete, "/upstreams/web-up/targets/"+gone, nil)
		if err := r.Rollback(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if got, want := shape(f), f.stable[0].addr()+"=100[]"; got != want {
			t.Fatalf("after the rollback %s, want %s (the deleted target stays deleted)", got, want)
		}
	})
}
