package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// ClientConfig configures a Client of a `canaryctl proxy` admin API.
type ClientConfig struct {
	// BaseURL of the admin listener, e.g. "http://127.0.0.1:8081".
	BaseURL string
	// Token is the admin bearer token.
	Token string
	// HTTPClient defaults to a client with a 10 s timeout.
	HTTPClient *http.Client
}

// Client drives a separate `canaryctl proxy` process over its admin API, so a rollout survives
// its own crash. It satisfies the same Gateway and RequestLog interfaces as *Proxy.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
	// owner is the token of the owner lease this client holds (owner_client.go), sent with every write.
	owner atomic.Pointer[string]
}

// ErrUnauthorized: the admin API rejected the token.
var ErrUnauthorized = errors.New("admin API rejected the token")

// APIError is an error answered by the admin API. errors.Is maps it to providers.ErrInvalidSplit,
// providers.ErrNotFound or ErrUnauthorized; a 400 is invalid input (exit code 2).
type APIError struct {
	Status  int
	Kind    string
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("admin API: %d %s", e.Status, e.Message) }

// Is matches the sentinel named by the error kind.
func (e *APIError) Is(target error) bool {
	switch e.Kind {
	case kindInvalidSplit:
		return target == providers.ErrInvalidSplit
	case kindNotFound:
		return target == providers.ErrNotFound
	case kindUnauthorized:
		return target == ErrUnauthorized
	case kindOwned:
		return target == providers.ErrOwned
	case kindLeaseLost:
		return target == providers.ErrLeaseLost
	}
	return false
}

// InvalidInput reports whether the request itself was wrong.
func (e *APIError) InvalidInput() bool { return e.Status == http.StatusBadRequest }

// NewClient validates cfg and returns a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &ConfigError{Field: "admin", Err: fmt.Errorf("%q must be the admin API's base URL, e.g. http://127.0.0.1:8081", cfg.BaseURL)}
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &Client{base: u, token: cfg.Token, hc: hc}, nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// the admin API refuses writes without it (or a JSON body): no web form can send it
	req.Header.Set(AdminHeader, "1")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if t := c.owner.Load(); t != nil && method != http.MethodGet {
		req.Header.Set(OwnerTokenHeader, *t)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var eb errorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(b))
		}
		return &APIError{Status: resp.StatusCode, Kind: eb.Kind, Message: eb.Error}
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// SetUpstreams points cohort c at addrs.
func (c *Client) SetUpstreams(ctx context.Context, co providers.Cohort, addrs []string) error {
	if addrs == nil {
		addrs = []string{}
	}
	body := struct {
		Upstreams []string `json:"upstreams"`
	}{addrs}
	if err := c.do(ctx, http.MethodPut, "/v1/upstreams/"+url.PathEscape(string(co)), body, nil); err != nil {
		return fmt.Errorf("proxy admin: set upstreams of %s: %w", co, err)
	}
	return nil
}

// SetSplit sets canary/baseline shares in basis points.
func (c *Client) SetSplit(ctx context.Context, s providers.Split) error {
	if err := c.do(ctx, http.MethodPut, "/v1/split", s, nil); err != nil {
		return fmt.Errorf("proxy admin: set split to %s: %w", s, err)
	}
	return nil
}

// Split reads back the split the proxy applies now.
func (c *Client) Split(ctx context.Context) (providers.Split, error) {
	var s providers.Split
	if err := c.do(ctx, http.MethodGet, "/v1/split", nil, &s); err != nil {
		return s, fmt.Errorf("proxy admin: read split: %w", err)
	}
	return s, nil
}

// Rollback sends all traffic to stable and removes canary and baseline.
func (c *Client) Rollback(ctx context.Context) error {
	if err := c.do(ctx, http.MethodPost, "/v1/rollback", nil, nil); err != nil {
		return fmt.Errorf("proxy admin: roll back: %w", err)
	}
	return nil
}

// Promote makes canary's upstreams stable's.
func (c *Client) Promote(ctx context.Context) error {
	if err := c.do(ctx, http.MethodPost, "/v1/promote", nil, nil); err != nil {
		return fmt.Errorf("proxy admin: promote: %w", err)
	}
	return nil
}

// State reads the routing table.
func (c *Client) State(ctx context.Context) (State, error) {
	var st State
	if err := c.do(ctx, http.MethodGet, "/v1/state", nil, &st); err != nil {
		return st, fmt.Errorf("proxy admin: read state: %w", err)
	}
	return st, nil
}

// Requests returns the recorded requests that finished in [since, until).
func (c *Client) Requests(ctx context.Context, since, until time.Time) ([]providers.Request, error) {
	q := url.Values{}
	q.Set("since", since.UTC().Format(time.RFC3339Nano))
	q.Set("until", until.UTC().Format(time.RFC3339Nano))
	var out []providers.Request
	if err := c.do(ctx, http.MethodGet, "/v1/requests?"+q.Encode(), nil, &out); err != nil {
		return nil, fmt.Errorf("proxy admin: read requests: %w", err)
	}
	return out, nil
}
