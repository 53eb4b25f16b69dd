package proxy

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *stepClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestOwnerLease drives the admin API's owner lease through two clients, as two runners on two
// machines would: the second is refused with the holder's identity, writes without the live token
// are refused, an expired lease refuses its old holder even before anyone took it over, and a
// takeover needs the same run (resume) or --force-takeover.
func TestOwnerLease(t *testing.T) {
	t.Parallel()
	clk := &stepClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	p, err := New(Config{Upstreams: map[providers.Cohort][]string{providers.Stable: {"http://127.0.0.1:1"}}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	h, err := p.AdminHandler(AdminConfig{Token: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	client := func() *Client {
		c, err := NewClient(ClientConfig{BaseURL: srv.URL, Token: adminToken})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b, manual := client(), client(), client()
	ctx := t.Context()
	ha := providers.Holder{Host: "ci-1", PID: 11, User: "alice"}
	hb := providers.Holder{Host: "ci-2", PID: 22, User: "bob"}
	const ttl = 10 * time.Second

	la, err := a.Claim(ctx, providers.Claim{Service: "shop", RunID: "run-a", Holder: ha, TTL: ttl})
	if err != nil || la.Token == "" {
		t.Fatalf("first claim: %+v %v", la, err)
	}
	_, err = b.Claim(ctx, providers.Claim{Service: "shop", RunID: "run-b", Holder: hb, TTL: ttl})
	var oe *providers.OwnedError
	if !errors.As(err, &oe) || !errors.Is(err, providers.ErrOwned) || oe.Owner.RunID != "run-a" || oe.Owner.Holder != ha || oe.Owner.Token != "" || oe.Expired {
		t.Fatalf("second claim: %v (%+v), want OwnedError naming run-a held by alice", err, oe)
	}
	if msg := err.Error(); !strings.Contains(msg, "alice@ci-1 pid 11") || !strings.Contains(msg, "--force-takeover") {
		t.Errorf("refusal does not name the holder and the way out: %s", msg)
	}
	// Force does not take a live lease.
	if _, err := b.Claim(ctx, providers.Claim{Service: "shop", RunID: "run-b", Holder: hb, TTL: ttl, Force: true}); !errors.Is(err, providers.ErrOwned) {
		t.Fatalf("forced claim of a live lease: %v, want ErrOwned", err)
	}
	// Writes: the holder's go through; a token-less one (b never got a lease) is refused with 409 owned.
	if err := a.SetSplit(ctx, providers.Split{}); err != nil {
		t.Fatalf("holder's write: %v", err)
	}
	if err := manual.SetSplit(ctx, providers.Split{Canary: 100, Baseline: 100}); !errors.Is(err, providers.ErrOwned) {
		t.Fatalf("write without token during a live lease: %v, want ErrOwned", err)
	}
	var ae *APIError
	if !errors.As(manual.Rollback(ctx), &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("rollback without token: %v, want 409", ae)
	}
	if got, err := manual.Owner(ctx); err != nil || got == nil || got.RunID != "run-a" || got.Token != "" {
		t.Fatalf("GET /v1/owner: %+v %v", got, err)
	}
	// Renewal extends the lease.
	clk.Add(ttl - time.Second)
	if la, err = a.Renew(ctx, la, ttl); err != nil {
		t.Fatalf("renew: %v", err)
	}
	clk.Add(ttl - time.Second)
	if err := a.SetSplit(ctx, providers.Split{}); err != nil {
		t.Fatalf("write after renewal: %v", err)
	}
	// The lease expires (the holder was paused): its old token no longer writes, nor renews.
	clk.Add(2 * time.Second)
	if err := a.SetSplit(ctx, providers.Split{}); !errors.Is(err, providers.ErrLeaseLost) {
		t.Fatalf("write with an expired token: %v, want ErrLeaseLost", err)
	}
	if _, err := a.Renew(ctx, la, ttl); !errors.Is(err, providers.ErrLeaseLost) {
		t.Fatalf("renew after expiry: %v, want ErrLeaseLost", err)
	}
	// Another run needs --force-takeover for an expired lease; the refusal says it expired.
	_, err = b.Claim(ctx, providers.Claim{Service: "shop", RunID: "run-b", Holder: hb, TTL: ttl})
	if !errors.As(err, &oe) || !oe.Expired {
		t.Fatalf("claim of an expired lease without force: %v, want OwnedError{Expired}", err)
	}
	// The same run resumed elsewhere takes it over (and would even before expiry, holding the store lock).
	lb, err := b.Claim(ctx, providers.Claim{Service: "shop", RunID: "run-a", Holder: hb, TTL: ttl, Resume: true})
	if err != nil || lb.Token == la.Token {
		t.Fatalf("resume takeover: %+v %v", lb, err)
	}
	if err := a.SetSplit(ctx, providers.Split{}); !errors.Is(err, providers.ErrLeaseLost) {
		t.Fatalf("old holder's write after the takeover: %v, want ErrLeaseLost", err)
	}
	if err := b.SetSplit(ctx, providers.Split{}); err != nil {
		t.Fatalf("new holder's write: %v", err)
	}
	// Release by the old holder does nothing; by the holder it frees the service.
	if err := a.Release(ctx, la); err != nil {
		t.Fatal(err)
	}
	if got, _ := manual.Owner(ctx); got == nil || got.Holder != hb {
		t.Fatalf("owner after a stale release: %+v", got)
	}
	if err := b.Release(ctx, lb); err != nil {
		t.Fatal(err)
	}
	if got, _ := manual.Owner(ctx); got != nil {
		t.Fatalf("owner after release: %+v", got)
	}
	if err := manual.SetSplit(ctx, providers.Split{}); err != nil {
		t.Fatalf("manual write with no owner: %v", err)
	}
	if _, err := b.Claim(ctx, providers.Claim{Service: "shop", RunID: "run-b", Holder: hb, TTL: time.Millisecond}); err == nil || errors.Is(err, providers.ErrOwned) {
		t.Fatalf("claim with a 1ms ttl: %v, want a 400", err)
	}
}
