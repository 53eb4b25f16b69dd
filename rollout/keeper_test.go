package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/fake"
)

// scriptedOwner is a gateway owner whose renewals answer what the test says.
type scriptedOwner struct {
	mu      sync.Mutex
	renew   error
	renews  int
	release int
}

func (o *scriptedOwner) Claim(_ context.Context, c providers.Claim) (providers.Lease, error) {
	return providers.Lease{Service: c.Service, RunID: c.RunID, Token: "t", Expires: time.Now().Add(c.TTL)}, nil
}

func (o *scriptedOwner) Renew(_ context.Context, l providers.Lease, ttl time.Duration) (providers.Lease, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.renews++
	if o.renew != nil {
		return l, o.renew
	}
	l.Expires = time.Now().Add(ttl)
	return l, nil
}

func (o *scriptedOwner) Release(context.Context, providers.Lease) error {
	o.mu.Lock()
	o.release++
	o.mu.Unlock()
	return nil
}

func (o *scriptedOwner) set(err error) { o.mu.Lock(); o.renew = err; o.mu.Unlock() }
func (o *scriptedOwner) count() int    { o.mu.Lock(); defer o.mu.Unlock(); return o.renews }

// waitFor polls cond (the keeper works on the real clock) for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestKeeper(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		renew error
		// unconfirmed: the gateway never said the lease is gone, so a rollback may still go on once
		// the gateway answers that the lease is still this runner's (Keeper.Recheck)
		unconfirmed bool
	}{
		{"taken over", fmt.Errorf("%w: 409", providers.ErrLeaseLost), false},
		{"gateway unreachable past the ttl", errors.New("connection refused"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := &scriptedOwner{}
			// The keeper renews every ttl/3 on the real clock and reports the lease lost when a
			// renewal is not sent within the ttl: a renewal goroutine not scheduled for 2 s. With
			// 300 ms (200 ms of slack) the whole package under -race on a loaded machine lost the
			// lease before the test took it away (4 renewals took 2 s instead of 0.4 s).
			const ttl = 3 * time.Second
			k := NewKeeper(o, ttl, nil)
			if err := k.Claim(t.Context(), providers.Claim{Service: "shop", RunID: "r"}); err != nil {
				t.Fatal(err)
			}
			defer k.Stop()
			gw := fake.NewGateway()
			fenced := FenceGateway(gw, Fences{k, nil})
			// Renewals keep the lease past its TTL (4 renewals: 4/3 of it).
			waitFor(t, "renewed 4 times", func() bool { return o.count() >= 4 })
			if err := k.Err(); err != nil {
				t.Fatalf("renewed lease reported lost: %v", err)
			}
			if err := fenced.SetUpstreams(t.Context(), providers.Canary, []string{"http://127.0.0.1:1"}); err != nil {
				t.Fatal(err)
			}
			o.set(tc.renew)
			waitFor(t, "lost", func() bool { return k.Err() != nil })
			if !errors.Is(k.Err(), providers.ErrLeaseLost) {
				t.Fatalf("Err %v, want ErrLeaseLost", k.Err())
			}
			calls := len(gw.Calls())
			if err := fenced.SetSplit(t.Context(), providers.Split{}); !errors.Is(err, providers.ErrLeaseLost) {
				t.Fatalf("a gateway call after the loss: %v", err)
			}
			if err := fenced.Rollback(t.Context()); !errors.Is(err, tc.renew) {
				t.Fatalf("a rollback while the gateway says %v: %v", tc.renew, err)
			}
			if len(gw.Calls()) != calls {
				t.Fatalf("the fenced gateway was called after the loss: %v", gw.Calls()[calls:])
			}
			if k.RollbackOK() != tc.unconfirmed {
				t.Fatalf("RollbackOK %v, want %v", k.RollbackOK(), tc.unconfirmed)
			}
			if tc.unconfirmed {
				// The gateway answers again and the lease is still ours: the rollback goes on (and
				// nothing else does).
				o.set(nil)
				if err := fenced.Rollback(t.Context()); err != nil {
					t.Fatalf("a rollback once the gateway renewed the lease: %v", err)
				}
				if len(gw.Calls()) == calls {
					t.Fatal("the rollback did not reach the gateway")
				}
				if err := fenced.SetSplit(t.Context(), providers.Split{}); !errors.Is(err, providers.ErrLeaseLost) {
					t.Fatalf("a split after the loss: %v", err)
				}
				// The gateway now says another runner holds it: nothing passes any more.
				o.set(fmt.Errorf("%w: taken over", providers.ErrLeaseLost))
				calls = len(gw.Calls())
				if err := fenced.Rollback(t.Context()); !errors.Is(err, providers.ErrLeaseLost) || len(gw.Calls()) != calls {
					t.Fatalf("a rollback after the gateway said the lease is gone: %v", err)
				}
				if k.RollbackOK() {
					t.Fatal("RollbackOK after a confirmed loss")
				}
			}
			if err := k.Release(t.Context()); err != nil || o.release != 0 {
				t.Fatalf("release of a lost lease: %v, %d releases sent", err, o.release)
			}
		})
	}
	t.Run("no owner", func(t *testing.T) {
		t.Parallel()
		k := NewKeeper(nil, time.Second, nil)
		if err := k.Claim(t.Context(), providers.Claim{}); err != nil || k.Err() != nil || !k.Deadline().IsZero() {
			t.Fatalf("a gateway without ownership: %v %v %v", err, k.Err(), k.Deadline())
		}
	})
}

// blockingGateway's SetSplit waits until its context ends and says why.
type blockingGateway struct {
	*fake.Gateway
	started chan struct{}
}

func (g *blockingGateway) SetSplit(ctx context.Context, _ providers.Split) error {
	close(g.started)
	<-ctx.Done()
	return ctx.Err()
}

// TestFencedCallEndsWhenTheLeaseIsLost: a gateway call in flight when the lease is taken over is
// cancelled at once, not at the lease's deadline.
func TestFencedCallEndsWhenTheLeaseIsLost(t *testing.T) {
	t.Parallel()
	o := &scriptedOwner{}
	k := NewKeeper(o, time.Minute, nil) // a deadline far away: only the loss can end the call
	if err := k.Claim(t.Context(), providers.Claim{Service: "shop", RunID: "r"}); err != nil {
		t.Fatal(err)
	}
	defer k.Stop()
	gw := &blockingGateway{Gateway: fake.NewGateway(), started: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- FenceGateway(gw, k).SetSplit(t.Context(), providers.Split{}) }()
	<-gw.started
	k.setLost(fmt.Errorf("%w: taken over", providers.ErrLeaseLost))
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the call ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call in flight outlived the loss of the lease")
	}
}
