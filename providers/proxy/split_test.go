package proxy

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
)

func TestWheelIsExactAndSmooth(t *testing.T) {
	t.Parallel()
	for _, s := range []providers.Split{{Canary: 250}, {Canary: 250, Baseline: 250}, {Canary: 1}, {Canary: 5000, Baseline: 5000}, {}, {Canary: 10000}, {Canary: 1234, Baseline: 4321}} {
		t.Run(s.String(), func(t *testing.T) {
			t.Parallel()
			w := buildWheel(s)
			// The wheel is cyclic, so every window of 10,000 consecutive slots (not only the
			// aligned one) holds exactly each cohort's share.
			for _, off := range []int{0, 1, 4999, 9999} {
				var n [nCohorts]int
				for i := range providers.BasisPoints {
					n[w[(off+i)%providers.BasisPoints]]++
				}
				if n[iStable] != s.Stable() || n[iBaseline] != s.Baseline || n[iCanary] != s.Canary {
					t.Fatalf("offset %d: got stable %d baseline %d canary %d, want %v", off, n[iStable], n[iBaseline], n[iCanary], s)
				}
			}
			// Smooth: canary's picks are spread evenly, never more than one period apart plus one.
			if s.Canary > 0 {
				period := providers.BasisPoints / s.Canary
				last := -1
				for i := range providers.BasisPoints {
					if w[i] == iCanary {
						if last >= 0 && i-last > period+1 {
							t.Fatalf("canary gap %d at slot %d exceeds period %d", i-last, i, period)
						}
						last = i
					}
				}
			}
		})
	}
}

// TestExactSplitOverRealUpstreams: over 10,000 requests through the proxy to real upstreams,
// each cohort gets exactly its share.
func TestExactSplitOverRealUpstreams(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		split providers.Split
	}{
		{"canary and baseline 2.5% each", providers.Split{Canary: 250, Baseline: 250}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stable, baseline, canary, ups := three(t)
			_, srv := startProxy(t, Config{Upstreams: ups, Split: tc.split})
			c := testClient()
			const total, workers = providers.BasisPoints, 8
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < total; i += workers {
						resp, err := c.Get(srv.URL + "/x")
						if err != nil {
							errs <- err
							return
						}
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							errs <- fmt.Errorf("status %d", resp.StatusCode)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if got := canary.served.Load(); got != int64(tc.split.Canary) {
				t.Errorf("canary served %d of %d, want exactly %d", got, total, tc.split.Canary)
			}
			if got := baseline.served.Load(); got != int64(tc.split.Baseline) {
				t.Errorf("baseline served %d of %d, want exactly %d", got, total, tc.split.Baseline)
			}
			if got := stable.served.Load(); got != int64(tc.split.Stable()) {
				t.Errorf("stable served %d of %d, want exactly %d", got, total, tc.split.Stable())
			}
		})
	}
}

// TestStickyCohortsAsCanaryGrows: with hashing on a header, a user never leaves canary as its
// share grows 2.5% -> 10% -> 50%, and stable users only ever move to canary.
func TestStickyCohortsAsCanaryGrows(t *testing.T) {
	t.Parallel()
	_, _, _, ups := three(t)
	p, srv := startProxy(t, Config{Upstreams: ups, HashOn: "header:X-User"})
	c := testClient()
	const users = 150
	prev := make([]string, users)
	for _, bp := range []int{250, 1000, 5000} {
		if err := p.SetSplit(t.Context(), providers.Split{Canary: bp}); err != nil {
			t.Fatal(err)
		}
		inCanary := 0
		for u := range users {
			req := newReq(t, srv.URL+"/")
			req.Header.Set("X-User", fmt.Sprintf("user-%d", u))
			got := get(t, c, req)
			// the same user asked twice lands in the same cohort
			again := newReq(t, srv.URL+"/")
			again.Header.Set("X-User", fmt.Sprintf("user-%d", u))
			if g2 := get(t, c, again); g2 != got {
				t.Fatalf("user-%d flipped from %s to %s at the same split", u, got, g2)
			}
			if prev[u] == "canary" && got != "canary" {
				t.Fatalf("user-%d left canary when its share grew to %s", u, providers.Percent(bp))
			}
			if got == "canary" {
				inCanary++
			}
			prev[u] = got
		}
		// The hash spreads users evenly: the canary share is close to bp.
		want := float64(users) * float64(bp) / providers.BasisPoints
		if d := float64(inCanary) - want; d*d > 9*want+16 {
			t.Errorf("at %s, %d of %d users in canary, want about %.0f", providers.Percent(bp), inCanary, users, want)
		}
	}
}

func TestStickyKeyFallsBackToClientIP(t *testing.T) {
	t.Parallel()
	p, err := New(Config{Upstreams: map[providers.Cohort][]string{"stable": {"http://127.0.0.1:1"}}, HashOn: "header:X-User"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, header, remote, want string
		ok                         bool
	}{
		{"header present", "alice", "10.0.0.1:5555", "h:alice", true},
		{"no header uses ip", "", "10.0.0.1:5555", "ip:10.0.0.1", true},
		{"ipv6 peer", "", "[::1]:80", "ip:::1", true},
		{"nothing: no hashing", "", "garbage", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
			r.RemoteAddr = tc.remote
			if tc.header != "" {
				r.Header.Set("X-User", tc.header)
			}
			key, ok := p.stickyKey(&reqInfo{r: r})
			if key != tc.want || ok != tc.ok {
				t.Fatalf("stickyKey = %q, %v; want %q, %v", key, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestBucketCohort(t *testing.T) {
	t.Parallel()
	s := providers.Split{Canary: 250, Baseline: 250}
	for _, tc := range []struct{ b, want int }{{0, iCanary}, {249, iCanary}, {250, iBaseline}, {499, iBaseline}, {500, iStable}, {9999, iStable}} {
		if got := bucketCohort(tc.b, s); got != tc.want {
			t.Errorf("bucket %d: got %d want %d", tc.b, got, tc.want)
		}
	}
	if b := BucketOf("anything"); b < 0 || b >= providers.BasisPoints {
		t.Fatalf("bucket %d out of range", b)
	}
}
