package kong

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// Ownership in Kong: a marker Upstream named canaryctl-owner.<rollout id>, with no targets and
// referenced by no Service (it routes nothing), whose tags carry the lease:
//
//	canaryctl, canaryctl-owner, owner-service:<service>, owner-run:<run id>,
//	owner-host:<host>, owner-user:<user>, owner-pid:<pid>, owner-expires:<unix ms>, owner-token:<token>
//
// Kong has no conditional update, so the claim rests on the Upstream name's unique constraint: a
// claim POSTs the marker and a second claimer gets 409; a takeover DELETEs the marker it read by its
// id (a no-op if someone else did first) and POSTs a new one, so of two takers only one wins. A
// renewal PATCHes the marker by id after checking its token: once taken over the id is gone (404).
// Times are the claimers' clocks: keep the machines' clocks in sync (NTP) well within the TTL.
//
// Kong ignores ?tags= on nested endpoints (Kong/kong#6779); the marker is read by name, never
// filtered, so that does not matter here.

// ErrNoOwnership: the mode keeps no ownership lease (dbless: Kong's configuration is one document
// written whole by /config; ownership then rests on the state store alone).
var ErrNoOwnership = fmt.Errorf("kong: dbless mode: %w", providers.ErrNoOwnership)

var _ providers.Owner = (*Router)(nil)

const (
	tagOwner       = "canaryctl-owner"
	ownerPrefix    = "canaryctl-owner."
	tOwnerService  = "owner-service:"
	tOwnerRun      = "owner-run:"
	tOwnerHost     = "owner-host:"
	tOwnerUser     = "owner-user:"
	tOwnerPID      = "owner-pid:"
	tOwnerExpires  = "owner-expires:"
	tOwnerToken    = "owner-token:"
	ownerTagUnsafe = ",/"
)

type marker struct {
	ID   string   `json:"id"`
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// markerName is the marker Upstream's name: a hostname (Kong validates upstream names as hosts).
func (r *Router) markerName() string {
	id := strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.':
			return c
		case c >= 'A' && c <= 'Z':
			return c + 'a' - 'A'
		}
		return '-'
	}, r.cfg.RolloutID)
	return ownerPrefix + strings.Trim(id, ".-")
}

func tagSafe(s string) string {
	return strings.Map(func(c rune) rune {
		if strings.ContainsRune(ownerTagUnsafe, c) || c < ' ' || c > '~' {
			return '_'
		}
		return c
	}, s)
}

func leaseTags(l providers.Lease) []string {
	return []string{TagCanaryctl, tagOwner, tOwnerService + tagSafe(l.Service), tOwnerRun + tagSafe(l.RunID),
		tOwnerHost + tagSafe(l.Holder.Host), tOwnerUser + tagSafe(l.Holder.User), tOwnerPID + strconv.Itoa(l.Holder.PID),
		tOwnerExpires + strconv.FormatInt(l.Expires.UnixMilli(), 10), tOwnerToken + l.Token}
}

func leaseOf(m marker) providers.Lease {
	var l providers.Lease
	for _, t := range m.Tags {
		k, v, ok := strings.Cut(t, ":")
		if !ok {
			continue
		}
		switch k + ":" {
		case tOwnerService:
			l.Service = v
		case tOwnerRun:
			l.RunID = v
		case tOwnerHost:
			l.Holder.Host = v
		case tOwnerUser:
			l.Holder.User = v
		case tOwnerPID:
			l.Holder.PID, _ = strconv.Atoi(v)
		case tOwnerExpires:
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
				l.Expires = time.UnixMilli(ms)
			}
		case tOwnerToken:
			l.Token = v
		}
	}
	return l
}

func (r *Router) readMarker(ctx context.Context) (*marker, error) {
	var m marker
	err := r.call(ctx, http.MethodGet, "/upstreams/"+r.markerName(), nil, nil, &m)
	if errors.Is(err, providers.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kong: read ownership marker %s: %w", r.markerName(), err)
	}
	return &m, nil
}

// Claim takes the service's ownership marker (see providers.Claim.Decide).
func (r *Router) Claim(ctx context.Context, c providers.Claim) (providers.Lease, error) {
	if r.cfg.Mode == ModeDBLess {
		return providers.Lease{}, ErrNoOwnership
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	for attempt := 0; attempt < 3; attempt++ {
		m, err := r.readMarker(ctx)
		if err != nil {
			return providers.Lease{}, err
		}
		now := time.Now()
		if m != nil {
			cur := leaseOf(*m)
			if err := c.Decide(&cur, now); err != nil {
				return providers.Lease{}, err
			}
			// Take over: delete the marker read (by id: a marker someone else created since stays).
			if err := r.call(ctx, http.MethodDelete, "/upstreams/"+m.ID, nil, nil, nil); err != nil && !errors.Is(err, providers.ErrNotFound) {
				return providers.Lease{}, fmt.Errorf("kong: take over ownership marker %s: %w", r.markerName(), err)
			}
		}
		l := providers.Lease{Service: c.Service, RunID: c.RunID, Holder: c.Holder, Expires: now.Add(c.TTL), Token: hex.EncodeToString(b[:])}
		body := map[string]any{"name": r.markerName(), "tags": leaseTags(l)}
		err = r.call(ctx, http.MethodPost, "/upstreams", nil, body, nil)
		if isStatus(err, http.StatusConflict) {
			continue // another claimer was faster: decide again on its marker
		}
		if err != nil {
			return providers.Lease{}, fmt.Errorf("kong: create ownership marker %s: %w", r.markerName(), err)
		}
		return l, nil
	}
	return providers.Lease{}, fmt.Errorf("kong: claim %s: the ownership marker changed under three attempts; another runner is claiming it", c.Service)
}

// Renew extends the lease when the marker still carries its token and has not expired.
func (r *Router) Renew(ctx context.Context, l providers.Lease, ttl time.Duration) (providers.Lease, error) {
	m, err := r.readMarker(ctx)
	if err != nil {
		return l, err
	}
	now := time.Now()
	if m == nil {
		return l, fmt.Errorf("kong: renew %s: %w: the ownership marker is gone", l.Service, providers.ErrLeaseLost)
	}
	cur := leaseOf(*m)
	// A marker that still carries this lease's token was taken by nobody, even past its expiry (a
	// takeover replaces the marker): renewing it is safe, and lets a runner that lost the Admin API
	// for longer than the TTL finish its rollback.
	if cur.Token != l.Token {
		return l, fmt.Errorf("kong: renew %s: %w: the marker is run %s's held by %s until %s", l.Service, providers.ErrLeaseLost,
			cur.RunID, cur.Holder, cur.Expires.UTC().Format(time.RFC3339))
	}
	nl := l
	nl.Expires = now.Add(ttl)
	err = r.call(ctx, http.MethodPatch, "/upstreams/"+m.ID, nil, map[string]any{"tags": leaseTags(nl)}, nil)
	if errors.Is(err, providers.ErrNotFound) {
		return l, fmt.Errorf("kong: renew %s: %w: the marker was taken over", l.Service, providers.ErrLeaseLost)
	}
	if err != nil {
		return l, fmt.Errorf("kong: renew ownership marker of %s: %w", l.Service, err)
	}
	return nl, nil
}

// Release deletes the marker if it still carries the lease's token.
func (r *Router) Release(ctx context.Context, l providers.Lease) error {
	m, err := r.readMarker(ctx)
	if err != nil || m == nil || leaseOf(*m).Token != l.Token {
		return err
	}
	if err := r.call(ctx, http.MethodDelete, "/upstreams/"+m.ID, nil, nil, nil); err != nil && !errors.Is(err, providers.ErrNotFound) {
		return fmt.Errorf("kong: release ownership marker of %s: %w", l.Service, err)
	}
	return nil
}

// Owner reads the current lease (nil: none).
func (r *Router) Owner(ctx context.Context) (*providers.Lease, error) {
	m, err := r.readMarker(ctx)
	if err != nil || m == nil {
		return nil, err
	}
	l := leaseOf(*m)
	l.Token = ""
	return &l, nil
}
