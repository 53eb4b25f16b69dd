package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

var _ providers.Owner = (*Client)(nil)

// Claim takes the owner lease of the proxy's service (see providers.Claim.Decide). On success every
// later write of this client carries the lease's token.
func (c *Client) Claim(ctx context.Context, cl providers.Claim) (providers.Lease, error) {
	body := claimBody{Service: cl.Service, RunID: cl.RunID, Holder: cl.Holder, TTLMs: cl.TTL.Milliseconds(), Resume: cl.Resume, Force: cl.Force}
	var l providers.Lease
	if err := c.ownerCall(ctx, "/v1/owner/claim", body, &l); err != nil {
		return l, fmt.Errorf("proxy admin: claim %s: %w", cl.Service, err)
	}
	tok := l.Token
	c.owner.Store(&tok)
	return l, nil
}

// Renew extends the lease; providers.ErrLeaseLost once it expired or was taken over.
func (c *Client) Renew(ctx context.Context, l providers.Lease, ttl time.Duration) (providers.Lease, error) {
	var nl providers.Lease
	if err := c.ownerCall(ctx, "/v1/owner/renew", tokenBody{Token: l.Token, TTLMs: ttl.Milliseconds()}, &nl); err != nil {
		return l, fmt.Errorf("proxy admin: renew lease of %s: %w", l.Service, err)
	}
	return nl, nil
}

// Release gives the lease up; later writes of this client carry no token.
func (c *Client) Release(ctx context.Context, l providers.Lease) error {
	if err := c.ownerCall(ctx, "/v1/owner/release", tokenBody{Token: l.Token}, nil); err != nil {
		return fmt.Errorf("proxy admin: release lease of %s: %w", l.Service, err)
	}
	c.owner.Store(nil)
	return nil
}

// Owner reads the current lease (without its token); nil when none.
func (c *Client) Owner(ctx context.Context) (*providers.Lease, error) {
	var a ownerAnswer
	if err := c.do(ctx, http.MethodGet, "/v1/owner", nil, &a); err != nil {
		return nil, fmt.Errorf("proxy admin: read owner: %w", err)
	}
	return a.Owner, nil
}

// ownerCall posts in to path; a 409 becomes a *providers.OwnedError (kind owned) or wraps
// providers.ErrLeaseLost (kind lease_lost).
func (c *Client) ownerCall(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		var ob ownedBody
		if json.Unmarshal(raw, &ob) != nil || ob.Error == "" {
			ob.Error = strings.TrimSpace(string(raw))
		}
		switch {
		case resp.StatusCode == http.StatusConflict && ob.Kind == kindOwned && ob.Owner != nil:
			return &providers.OwnedError{Owner: *ob.Owner, Expired: ob.Expired}
		case resp.StatusCode == http.StatusConflict && ob.Kind == kindLeaseLost:
			return fmt.Errorf("%w: %s", providers.ErrLeaseLost, ob.Error)
		}
		return &APIError{Status: resp.StatusCode, Kind: ob.Kind, Message: ob.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}
