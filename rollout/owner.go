package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"sync"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// DefaultLeaseTTL is how long a lease (at the gateway, and in etcd) outlives its holder's last
// renewal: a crashed runner holds the service this long at most, and a paused or partitioned one
// stops acting within it.
const DefaultLeaseTTL = 15 * time.Second

// ThisHolder identifies this process (host, pid, user) in a lease.
func ThisHolder() providers.Holder {
	h := providers.Holder{PID: os.Getpid(), User: "unknown"}
	h.Host, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		h.User = u.Username
	}
	return h
}

// Keeper holds this runner's ownership lease at the gateway: it claims it, renews it every third of
// its TTL in the background, and reports its loss. Err is checked before every gateway call (see
// FenceGateway) and by the engine before every tick, on the monotonic clock: a runner paused (SIGSTOP)
// or cut off past its lease finds it lost the moment it runs again, before it touches anything.
type Keeper struct {
	owner providers.Owner
	ttl   time.Duration
	log   *slog.Logger

	mu         sync.Mutex
	lease      *providers.Lease
	validUntil time.Time // send time of the last successful claim or renewal + ttl (monotonic)
	lost       error
	lostCh     chan struct{} // closed when lost is set
	// confirmed: the gateway itself answered that the lease is gone (taken over, released, expired
	// there). A lease that only ran out here, because the gateway could not be reached to renew it,
	// is unconfirmed: see RollbackOK.
	confirmed bool
	stop      chan struct{}
	done      chan struct{}
}

// NewKeeper returns a Keeper for owner (nil: the gateway keeps no lease; Err is then always nil).
func NewKeeper(owner providers.Owner, ttl time.Duration, log *slog.Logger) *Keeper {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Keeper{owner: owner, ttl: ttl, log: log}
}

// TTL is the lease's time to live.
func (k *Keeper) TTL() time.Duration { return k.ttl }

// Claim takes the lease and starts renewing it. A gateway without ownership (nil owner, Kong dbless)
// is not an error: the state store's lock is then the only exclusion.
func (k *Keeper) Claim(ctx context.Context, c providers.Claim) error {
	if k.owner == nil {
		return nil
	}
	c.TTL = k.ttl
	sent := time.Now()
	l, err := k.owner.Claim(ctx, c)
	if err != nil {
		if errors.Is(err, providers.ErrNoOwnership) {
			k.log.Info("the gateway keeps no ownership lease in this mode", "err", err)
			return nil
		}
		return fmt.Errorf("claim %s at the gateway: %w", c.Service, err)
	}
	k.mu.Lock()
	k.lease, k.validUntil, k.lost, k.lostCh = &l, sent.Add(k.ttl), nil, make(chan struct{})
	k.stop, k.done = make(chan struct{}), make(chan struct{})
	k.mu.Unlock()
	go k.renew(k.stop, k.done)
	return nil
}

func (k *Keeper) renew(stop, done chan struct{}) {
	defer close(done)
	every := k.ttl / 3
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		k.mu.Lock()
		l := *k.lease
		until := k.validUntil
		k.mu.Unlock()
		sent := time.Now()
		if !sent.Before(until) {
			k.setLost(fmt.Errorf("%w: not renewed within %s", providers.ErrLeaseLost, k.ttl))
			// Keep asking: until the gateway answers, nobody knows whether another runner took the
			// service, and a rollback already under way goes on (RollbackOK).
			until = sent.Add(k.ttl)
		}
		ctx, cancel := context.WithDeadline(context.Background(), until)
		nl, err := k.owner.Renew(ctx, l, k.ttl)
		cancel()
		switch {
		case errors.Is(err, providers.ErrLeaseLost):
			k.mu.Lock()
			k.confirmed = true
			k.mu.Unlock()
			k.setLost(err)
			return
		case err == nil && k.Err() != nil:
			// The gateway came back and the lease was still ours, but it had run out here: the
			// runner already stopped acting on it; only a rollback goes on.
			t.Reset(every)
			continue
		case err != nil:
			k.log.Warn("renew the gateway lease; retrying", "err", err, "validFor", time.Until(until).Round(time.Millisecond))
			t.Reset(min(every, max(time.Until(until)/2, 50*time.Millisecond)))
			continue
		}
		k.mu.Lock()
		if k.lost == nil {
			k.lease, k.validUntil = &nl, sent.Add(k.ttl)
		}
		k.mu.Unlock()
		t.Reset(every)
	}
}

func (k *Keeper) setLost(err error) {
	k.mu.Lock()
	if k.lost == nil {
		k.lost = err
		close(k.lostCh)
	}
	k.mu.Unlock()
	k.log.Error("lost the ownership lease: this runner stops touching the gateway", "err", err)
}

// Err is nil while the lease is held (or the gateway keeps none); an error wrapping
// providers.ErrLeaseLost once it was lost or not renewed in time.
func (k *Keeper) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lease == nil {
		return nil
	}
	if k.lost != nil {
		return k.lost
	}
	if !time.Now().Before(k.validUntil) {
		k.lost = fmt.Errorf("%w: the lease ran out at %s before it was renewed (was this process paused?)", providers.ErrLeaseLost, k.validUntil.Format(time.RFC3339))
		close(k.lostCh)
		return k.lost
	}
	return nil
}

// RollbackOK reports a lease that ran out only because the gateway could not be reached to renew
// it: no other runner is known to hold the service, so a rollback under way goes on (it moves traffic
// to stable, which any runner taking over would also do for a rollout recorded as rolling back).
// False while the lease is held and once the gateway confirmed it gone (taken over or expired there).
func (k *Keeper) RollbackOK() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lease != nil && k.lost != nil && !k.confirmed
}

// Recheck asks the gateway, before a rollback on a lease that ran out unconfirmed, whether the
// lease is still this runner's: nil when the gateway renewed it (nobody took the service over); the
// gateway's ErrLeaseLost (from then on confirmed: nothing passes the fence any more); or the error
// that kept it from answering (the rollback could not reach it either; the caller retries).
func (k *Keeper) Recheck(ctx context.Context) error {
	k.mu.Lock()
	if k.lease == nil || k.lost == nil {
		k.mu.Unlock()
		return nil
	}
	if k.confirmed {
		err := k.lost
		k.mu.Unlock()
		return err
	}
	l := *k.lease
	k.mu.Unlock()
	_, err := k.owner.Renew(ctx, l, k.ttl)
	if errors.Is(err, providers.ErrLeaseLost) {
		k.mu.Lock()
		k.confirmed, k.lost = true, err
		k.mu.Unlock()
		k.log.Error("the gateway says the ownership lease is gone: this runner stops touching the gateway", "err", err)
	}
	return err
}

// Deadline is when the lease runs out unless renewed (zero: no lease).
func (k *Keeper) Deadline() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lease == nil {
		return time.Time{}
	}
	return k.validUntil
}

// Lost is closed when the lease is lost (nil before a claim).
func (k *Keeper) Lost() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lostCh
}

// Lease returns the held lease (nil: none).
func (k *Keeper) Lease() *providers.Lease {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lease == nil {
		return nil
	}
	l := *k.lease
	return &l
}

// Stop ends the renewal and leaves the lease to expire (the rollout is paused or this runner failed:
// the next runner resumes or aborts it).
func (k *Keeper) Stop() {
	k.mu.Lock()
	stop, done := k.stop, k.done
	k.stop = nil
	k.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// Release ends the renewal and gives the service up at the gateway (the rollout ended).
func (k *Keeper) Release(ctx context.Context) error {
	k.Stop()
	l := k.Lease()
	if l == nil || k.Err() != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := k.owner.Release(ctx, *l); err != nil {
		return fmt.Errorf("release the gateway lease: %w", err)
	}
	k.mu.Lock()
	k.lease = nil
	k.mu.Unlock()
	return nil
}

// FenceGateway wraps gw so that no call is made once a fence reports an error, and no call outlives
// a lease: each runs on a context that ends when the first lease would run out unless renewed.
func FenceGateway(gw Gateway, fences ...Fence) Gateway {
	return &fencedGateway{gw: gw, fences: Fences(fences).flat()}
}

// flat unnests Fences given as one fence, so each lease is asked for itself (RollbackOK).
func (fs Fences) flat() Fences {
	var out Fences
	for _, f := range fs {
		if inner, ok := f.(Fences); ok {
			out = append(out, inner.flat()...)
			continue
		}
		out = append(out, f)
	}
	return out
}

// Fences combines fences: the first error, the earliest deadline.
type Fences []Fence

// Err is the first fence's error.
func (fs Fences) Err() error {
	for _, f := range fs {
		if f == nil {
			continue
		}
		if err := f.Err(); err != nil {
			return err
		}
	}
	return nil
}

// ErrRollingBack is Err for a runner that is rolling back: a gateway lease that only ran out
// unrenewed (RollbackOK) does not stop it.
func (fs Fences) ErrRollingBack() error { return fs.rollbackFences().Err() }

// rollbackFences leaves out the fences whose lease ran out unconfirmed.
func (fs Fences) rollbackFences() Fences {
	out := make(Fences, 0, len(fs))
	for _, f := range fs {
		if r, ok := f.(interface{ RollbackOK() bool }); ok && r.RollbackOK() {
			continue
		}
		out = append(out, f)
	}
	return out
}

// Deadline is the earliest deadline (zero: none).
func (fs Fences) Deadline() time.Time {
	var d time.Time
	for _, f := range fs {
		if f == nil {
			continue
		}
		if fd := f.Deadline(); !fd.IsZero() && (d.IsZero() || fd.Before(d)) {
			d = fd
		}
	}
	return d
}

type fencedGateway struct {
	gw     Gateway
	fences Fences
}

func (f *fencedGateway) ctx(ctx context.Context) (context.Context, context.CancelFunc, error) {
	return fenced(ctx, f.fences)
}

func fenced(ctx context.Context, fences Fences) (context.Context, context.CancelFunc, error) {
	if err := fences.Err(); err != nil {
		return nil, nil, err
	}
	c, cancel := ctx, context.CancelFunc(func() {})
	if d := fences.Deadline(); !d.IsZero() {
		c, cancel = context.WithDeadline(ctx, d)
	}
	// A lease lost during the call (revoked, taken over) ends it at once.
	for _, fe := range fences {
		l, ok := fe.(interface{ Lost() <-chan struct{} })
		if !ok {
			continue
		}
		if ch := l.Lost(); ch != nil {
			var cc context.CancelFunc
			c, cc = context.WithCancel(c)
			inner := cancel
			go func(c context.Context) {
				select {
				case <-ch:
					cc()
				case <-c.Done():
				}
			}(c)
			cancel = func() { cc(); inner() }
		}
	}
	return c, cancel, nil
}

func (f *fencedGateway) SetUpstreams(ctx context.Context, c providers.Cohort, addrs []string) error {
	cctx, cancel, err := f.ctx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return f.gw.SetUpstreams(cctx, c, addrs)
}

func (f *fencedGateway) SetSplit(ctx context.Context, s providers.Split) error {
	cctx, cancel, err := f.ctx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return f.gw.SetSplit(cctx, s)
}

func (f *fencedGateway) Split(ctx context.Context) (providers.Split, error) {
	cctx, cancel, err := f.ctx(ctx)
	if err != nil {
		return providers.Split{}, err
	}
	defer cancel()
	return f.gw.Split(cctx)
}

// Rollback goes on when the gateway lease only ran out unrenewed (see Keeper.RollbackOK): the
// gateway could not be reached, so no one is known to have taken the service over. Each such lease
// is checked with the gateway first (Keeper.Recheck): a runner that was paused while another took
// the service over finds out before it touches anything.
func (f *fencedGateway) Rollback(ctx context.Context) error {
	cctx, cancel, err := fenced(ctx, f.fences.rollbackFences())
	if err != nil {
		return err
	}
	defer cancel()
	for _, fe := range f.fences {
		if k, ok := fe.(interface {
			RollbackOK() bool
			Recheck(context.Context) error
		}); ok && k.RollbackOK() {
			if err := k.Recheck(cctx); err != nil {
				return fmt.Errorf("check the ownership lease before rolling back: %w", err)
			}
		}
	}
	return f.gw.Rollback(cctx)
}

func (f *fencedGateway) Promote(ctx context.Context) error {
	cctx, cancel, err := f.ctx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return f.gw.Promote(cctx)
}

// Original forwards to the wrapped gateway's GatewayRecorder (nil when it has none): the engine
// records the gateway's original state through the fence, and without the forwarding a fenced
// Kong gateway was never recorded, so an abort or resume after a crash restored a guess.
func (f *fencedGateway) Original(ctx context.Context) (json.RawMessage, error) {
	rec, ok := f.gw.(GatewayRecorder)
	if !ok {
		return nil, nil
	}
	cctx, cancel, err := f.ctx(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	return rec.Original(cctx)
}

// SetOriginal forwards to the wrapped gateway's GatewayRecorder, if it has one.
func (f *fencedGateway) SetOriginal(raw json.RawMessage) error {
	if rec, ok := f.gw.(GatewayRecorder); ok {
		return rec.SetOriginal(raw)
	}
	return nil
}

// Recall forwards to the wrapped gateway's RolloutRecaller, if it has one.
func (f *fencedGateway) Recall(addrs map[providers.Cohort][]string, promoteAttempted bool) error {
	if rc, ok := f.gw.(RolloutRecaller); ok {
		return rc.Recall(addrs, promoteAttempted)
	}
	return nil
}
