package providers

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Ownership of a service at the gateway: one rollout at a time may change a service's routing. A
// rollout claims the service before it deploys anything and renews its lease while it runs; the
// gateway (the built-in proxy's admin API, or a marker entity in Kong) keeps the lease, so two runners
// that share nothing else still exclude each other.

// Sentinel errors of gateway ownership.
var (
	// ErrOwned: another rollout owns the service at the gateway.
	ErrOwned = errors.New("the service is owned by another rollout at the gateway")
	// ErrLeaseLost: this runner's lease expired or was taken over; it must not touch the gateway again.
	ErrLeaseLost = errors.New("ownership lease lost")
	// ErrNoOwnership: the gateway keeps no ownership lease (in this mode).
	ErrNoOwnership = errors.New("the gateway keeps no ownership lease")
)

// Holder identifies the process that holds a lease.
type Holder struct {
	Host string `json:"host"`
	PID  int    `json:"pid"`
	User string `json:"user"`
}

func (h Holder) String() string { return fmt.Sprintf("%s@%s pid %d", h.User, h.Host, h.PID) }

// Lease is one rollout's ownership of a service at the gateway. Token is known only to its holder and
// changes with every takeover (a fencing token): a write that carries an old token is refused.
type Lease struct {
	Service string    `json:"service"`
	RunID   string    `json:"runId"`
	Holder  Holder    `json:"holder"`
	Expires time.Time `json:"expires"`
	Token   string    `json:"token,omitempty"`
}

// Claim asks for the ownership of a service.
type Claim struct {
	Service string
	RunID   string
	Holder  Holder
	TTL     time.Duration
	// Resume: the claimer continues the run RunID (run --resume, abort) and holds its state store's
	// lock, which proves the previous runner is gone: it takes over the lease of the same run even
	// before it expired.
	Resume bool
	// Force: take over an expired lease of another run (--force-takeover). A live lease is never
	// taken by force.
	Force bool
}

// Decide applies the ownership rules to the current lease (nil: none) at time now. It returns nil
// when the claim may take the service, else an *OwnedError.
func (c Claim) Decide(cur *Lease, now time.Time) error {
	if cur == nil {
		return nil
	}
	live := now.Before(cur.Expires)
	switch {
	case c.Resume && c.RunID == cur.RunID:
		return nil
	case !live && (c.Force || c.RunID == cur.RunID):
		return nil
	}
	owner := *cur
	owner.Token = ""
	return &OwnedError{Owner: owner, Expired: !live}
}

// OwnedError: the service is owned by another rollout. It names the holder and how to take over.
type OwnedError struct {
	Owner   Lease
	Expired bool
}

func (e *OwnedError) Error() string {
	o := e.Owner
	s := o.Service
	if e.Expired {
		return fmt.Sprintf("%s is owned at the gateway by run %s (held by %s; its lease expired %s): continue that rollout with canaryctl run --resume --service %s, end it with canaryctl abort %s (or abort --spec FILE), or start anew with --force-takeover",
			s, o.RunID, o.Holder, o.Expires.UTC().Format(time.RFC3339), s, s)
	}
	return fmt.Sprintf("%s is owned at the gateway by run %s, held by %s until %s: act on it with canaryctl status|pause|promote|abort %s where it runs; once its lease expired, canaryctl run --resume --service %s takes it over (or --force-takeover starts anew)",
		s, o.RunID, o.Holder, o.Expires.UTC().Format(time.RFC3339), s, s)
}

// Is makes errors.Is(err, ErrOwned) true.
func (e *OwnedError) Is(target error) bool { return target == ErrOwned }

// Owner is implemented by gateways that keep an ownership lease.
type Owner interface {
	// Claim takes the service for the claimer (see Claim.Decide) and returns the lease with its token.
	Claim(ctx context.Context, c Claim) (Lease, error)
	// Renew extends a live lease by ttl; ErrLeaseLost once it expired or was taken over.
	Renew(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// Release gives the service up (a no-op when the lease is no longer this holder's).
	Release(ctx context.Context, l Lease) error
}
