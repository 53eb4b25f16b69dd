// Package kong drives Kong Gateway through its Admin API to split traffic between the stable,
// baseline and canary cohorts of a rollout.
//
// The default mode works with Kong OSS: baseline and canary instances become targets of the
// Upstream that the Service sends traffic to, tagged canaryctl, cohort:<cohort> and rollout:<id>,
// and the split is set as exact integer target weights. Other modes: sticky cohorts through the
// Upstream's hash_on, blue/green (switch the Service's host between two Upstreams), DB-less Kong
// (read-modify-write of /config) and the Enterprise canary plugin. See README.md.
//
// The adapter is built on github.com/kong/go-kong: its typed entities, paginated lists, workspaces
// and request helpers. Two things go-kong does not do are added here: PATCH of a target (go-kong's
// Targets.Update uses PUT, which resets fields that are not sent) and Kong's 400 "fields" body
// (go-kong's APIError keeps only the message); both go through go-kong's NewRequest/Do with a
// custom Doer that also adds the admin token, per-call timeouts and retries.
package kong

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	gokong "github.com/kong/go-kong/kong"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/kong/internal/schemaerr"
)

// Mode selects how traffic is split.
type Mode string

// The modes.
const (
	ModeTargets      Mode = "targets"       // upstream targets with weights (default, Kong OSS)
	ModeHash         Mode = "hash"          // targets + the upstream's hash_on for sticky cohorts
	ModeBlueGreen    Mode = "bluegreen"     // switch the Service's host between two upstreams
	ModeDBLess       Mode = "dbless"        // targets, written through /config (Kong with database=off)
	ModeCanaryPlugin Mode = "canary-plugin" // Kong Enterprise canary plugin
)

// Modes lists the valid modes.
var Modes = []Mode{ModeTargets, ModeHash, ModeBlueGreen, ModeDBLess, ModeCanaryPlugin}

// Defaults.
const (
	// DefaultPropagation bounds the wait after a change of targets until the Admin node's balancer
	// holds it, as GET /upstreams/{u}/health reports (Kong workers rebuild balancers every
	// worker_state_update_frequency, default 5 s); where the balancer cannot be read it is a fixed
	// wait. Other nodes of a cluster are not visible from one Admin API: ClusterWait is added for
	// them. Propagation plus ClusterWait must stay below the engine's per-call timeout (15 s).
	DefaultPropagation = 10 * time.Second
	DefaultRetries     = 4
	DefaultBackoff     = 250 * time.Millisecond
	maxBackoff         = 5 * time.Second
	DefaultTimeout     = 5 * time.Second // per attempt: two fit in the engine's 15 s per call
	// TokenHeader is the header of Kong Enterprise's RBAC token.
	TokenHeader = "Kong-Admin-Token"
	// TagCanaryctl marks every entity canaryctl creates.
	TagCanaryctl = "canaryctl"
	// maxWeight is the largest target weight Kong accepts (kong/db/schema/entities/targets.lua).
	maxWeight = 65535
	// maxWait bounds propagation + clusterWait: the rollout engine gives one gateway call 15 s.
	maxWait = 15 * time.Second
)

// TLS configures the connection to the Admin API.
type TLS struct {
	CAFile             string
	CertFile           string
	KeyFile            string
	InsecureSkipVerify bool
}

// Config configures a Router.
type Config struct {
	// AdminURL is the base URL of the Admin API, e.g. https://kong-admin:8444.
	AdminURL string
	// Service is the Kong Service (name or id) whose traffic is split. Its host names the Upstream.
	Service string
	// Upstream names the Upstream directly (targets, hash and dbless modes) when Service is empty.
	Upstream string
	// Token is the Kong-Admin-Token (from CANARYCTL_KONG_TOKEN, read by the caller); TokenFile is
	// a file holding it (trailing newline ignored). At most one may be set.
	Token     string
	TokenFile string
	// Workspace is the Kong Enterprise workspace ("" = default).
	Workspace string
	TLS       TLS
	// Mode, default targets.
	Mode Mode
	// RolloutID tags what this rollout creates (rollout:<id>); required.
	RolloutID string
	// Propagation bounds the wait after each change until Kong's Admin node routes by it (verified
	// through GET /upstreams/{u}/health where the mode changes targets; a fixed wait where it
	// cannot be verified). 0: DefaultPropagation; negative: no wait and no verification.
	Propagation time.Duration
	// ClusterWait is a fixed wait added after a verified change, for the other nodes of a cluster
	// (db_update_frequency, default 5 s), which one Admin API cannot see. Default 0 (one node).
	ClusterWait time.Duration
	// Retries of an Admin API call that timed out or got a 5xx/429 (0: DefaultRetries; negative: none).
	Retries int
	// Backoff is the first retry delay, doubled per retry up to 5 s (0: DefaultBackoff).
	Backoff time.Duration
	// Timeout bounds each Admin API call (0: DefaultTimeout).
	Timeout time.Duration

	// HashOn (hash mode): consumer, ip, header or cookie; HashOnHeader/HashOnCookie name the
	// header or cookie.
	HashOn       string
	HashOnHeader string
	HashOnCookie string

	// GreenUpstream (bluegreen mode) is the Upstream the canary's targets go into; the Service is
	// switched to it on promotion (created if missing, deleted on rollback if canaryctl created it).
	GreenUpstream string

	// CanaryHash (canary-plugin mode): consumer, ip, none or header (default none);
	// CanaryHashHeader names the header for "header"; CanaryUpstreamURI is the plugin's
	// upstream_uri.
	CanaryHash        string
	CanaryHashHeader  string
	CanaryUpstreamURI string

	// Log, if set, learns which target address belongs to which cohort (the kong-log source).
	Log *LogReceiver
	// LogEndpoint, if set, is the receiver's URL as Kong reaches it: an http-log plugin posting to
	// it is added to the Service and removed at the end of the rollout.
	LogEndpoint string
	// LogFlush is the http-log queue's max_coalescing_delay: how long Kong holds a batch before
	// sending it (0: Kong's default, 1 s).
	LogFlush time.Duration

	// HTTPClient overrides the client built from TLS and Timeout (tests).
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// ConfigError is an invalid field of the Kong configuration; it names the field and the fix.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return "gateway.kong." + e.Field + ": " + e.Msg }

// InvalidInput marks the error as the user's input being wrong (exit code 2).
func (e *ConfigError) InvalidInput() bool { return true }

// Errors matched with errors.Is.
var (
	// ErrUnauthorized: Kong answered 401 or 403; the admin token is wrong or lacks permission.
	ErrUnauthorized = errors.New("kong admin token rejected")
	// ErrUnavailable: the Admin API did not answer (timeouts, 5xx) after all retries.
	ErrUnavailable = errors.New("kong admin API unavailable")
	// ErrUnsupported: the operation does not exist in the selected mode.
	ErrUnsupported = errors.New("not supported in this mode")
	// ErrGatewayChanged: what the rollout changed is gone from Kong (a 404 for an id it
	// remembered): nothing can be rolled back or restored automatically.
	ErrGatewayChanged = errors.New("kong entity of this rollout is gone")
)

// APIError is an error answer of the Admin API, with Kong's error body.
type APIError struct {
	Method string
	Path   string
	Status int
	Code   int            // Kong's error code (2 schema violation, 5 unique violation...)
	Name   string         // Kong's error name
	Msg    string         // Kong's message
	Fields map[string]any // the fields of a schema violation
	// NoToken: the request carried no Kong-Admin-Token (none was configured).
	NoToken bool
}

func (e *APIError) Error() string {
	switch e.Status {
	case http.StatusUnauthorized:
		if e.NoToken {
			return fmt.Sprintf("Kong answered 401 to %s %s (%s): this Kong requires an admin token and none was set; export CANARYCTL_KONG_TOKEN (or the variable gateway.kong.tokenEnv names) or set gateway.kong.tokenFile to a valid %s", e.Method, e.Path, e.Msg, TokenHeader)
		}
		return fmt.Sprintf("Kong answered 401 to %s %s (%s): the admin token is wrong; set CANARYCTL_KONG_TOKEN or gateway.kong.tokenFile to a valid %s", e.Method, e.Path, e.Msg, TokenHeader)
	case http.StatusForbidden:
		return fmt.Sprintf("Kong answered 403 to %s %s (%s): the admin token is wrong for this: it lacks permission; use a token whose RBAC role may write upstreams, targets, services and plugins", e.Method, e.Path, e.Msg)
	}
	if len(e.Fields) > 0 {
		parts := schemaerr.Parts(e.Fields)
		name := e.Name
		if name == "" {
			name = "invalid request"
		}
		return fmt.Sprintf("Kong rejected %s %s (%d %s): %s", e.Method, e.Path, e.Status, name, strings.Join(parts, "; "))
	}
	return fmt.Sprintf("Kong answered %d to %s %s: %s", e.Status, e.Method, e.Path, e.Msg)
}

// Unwrap maps the status to a sentinel: 401/403 ErrUnauthorized, 404 providers.ErrNotFound,
// 5xx ErrUnavailable.
func (e *APIError) Unwrap() error {
	switch {
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		return ErrUnauthorized
	case e.Status == http.StatusNotFound:
		return providers.ErrNotFound
	case e.Status >= 500:
		return ErrUnavailable
	}
	return nil
}

func isStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status
}

// Router drives one Kong Service or Upstream for one rollout. It implements the rollout engine's
// Gateway interface.
type Router struct {
	cfg     Config
	client  *gokong.Client
	log     *slog.Logger
	token   string
	retries int

	mu       sync.Mutex
	resolved bool
	st       state
	orig     Original // the gateway before the rollout (original.go)
	recorded bool     // orig came from the rollout's state (SetOriginal), not from this preflight
	version  [2]int   // Kong's major.minor from GET / (0.0: unknown)
	noHealth bool     // the node cannot show its balancer: propagation is a fixed wait
	mode     router   // the mode's gateway operations (mode.go)
	recall   recall   // what the rollout's state says it did (recall.go)
}

// New validates cfg and builds a Router. It does not call Kong; the first method call does
// (Preflight checks everything before any traffic moves).
func New(cfg Config) (*Router, error) {
	if cfg.Mode == "" {
		cfg.Mode = ModeTargets
	}
	token, errs := validate(cfg)
	hc := cfg.HTTPClient
	if hc == nil && len(errs) == 0 {
		tc, err := tlsConfig(cfg.TLS)
		if err != nil {
			errs = append(errs, err)
		} else {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = tc
			hc = &http.Client{Transport: tr}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return build(cfg, token, hc)
}

// validate reports every problem of cfg, a *ConfigError each, in the order of the fields, and
// returns the admin token (read from TokenFile when set).
func validate(cfg Config) (token string, errs []error) {
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	u, err := url.Parse(cfg.AdminURL)
	switch {
	case cfg.AdminURL == "":
		bad("adminURL", "required; e.g. http://127.0.0.1:8001")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		bad("adminURL", "%q is not an http(s) URL; e.g. http://127.0.0.1:8001", cfg.AdminURL)
	}
	mt, known := modeTypes[cfg.Mode]
	if !known {
		bad("mode", "unknown mode %q; use one of %s", cfg.Mode, modeList())
	}
	validateService(cfg, mt, bad)
	if cfg.RolloutID == "" {
		bad("rolloutID", "required: an id that tags what this rollout creates in Kong")
	} else if strings.ContainsAny(cfg.RolloutID, ",/") {
		bad("rolloutID", "%q must not contain ',' or '/' (Kong tag separators)", cfg.RolloutID)
	}
	token = readToken(cfg, bad)
	if mt.validate != nil {
		mt.validate(cfg, bad)
	}
	if cfg.LogEndpoint != "" {
		if u, err := url.Parse(cfg.LogEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("log.endpoint", "%q is not an http(s) URL that Kong can reach; e.g. http://10.0.0.5:9900/", cfg.LogEndpoint)
		}
		if mt.declarative {
			bad("log.manual", "DB-less Kong cannot add plugins through the Admin API; add an http-log plugin posting to the receiver to your declarative config and set gateway.kong.log.manual: true")
		}
	}
	validateWaits(cfg, bad)
	return token, errs
}

// validateService checks service and upstream: one of them, the service for the modes that change
// it and for an http-log plugin canaryctl adds.
func validateService(cfg Config, mt modeType, bad badFunc) {
	switch {
	case cfg.Service == "" && cfg.Upstream == "":
		bad("service", "required: the Kong Service to split (or gateway.kong.upstream)")
	case cfg.Service != "" && cfg.Upstream != "":
		bad("upstream", "set either service or upstream, not both (the service's host names its upstream)")
	case cfg.Service == "" && mt.needsService:
		bad("service", "required for mode %s; name the Kong Service", cfg.Mode)
	case cfg.Service == "" && cfg.LogEndpoint != "":
		bad("service", "required for metrics.type kong-log: canaryctl adds its http-log plugin to the Service (or configure the plugin yourself and set gateway.kong.log.manual: true); name the Kong Service")
	}
}

// readToken returns the token of cfg: Token, or the content of TokenFile.
func readToken(cfg Config, bad badFunc) string {
	if cfg.Token != "" && cfg.TokenFile != "" {
		bad("tokenFile", "set either the token (CANARYCTL_KONG_TOKEN) or tokenFile, not both")
	}
	if cfg.TokenFile == "" {
		return cfg.Token
	}
	b, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		bad("tokenFile", "cannot read %q: %v", cfg.TokenFile, errors.Unwrap(err))
		return cfg.Token
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		bad("tokenFile", "%q is empty; put the Kong-Admin-Token in it", cfg.TokenFile)
	}
	return token
}

// validateWaits checks the waits: propagation plus clusterWait within one engine call, no negative
// timeout.
func validateWaits(cfg Config, bad badFunc) {
	if cfg.ClusterWait < 0 {
		bad("clusterWait", "%s is negative; use e.g. 5s (Kong's db_update_frequency) for a cluster, or leave it out for one node", cfg.ClusterWait)
	}
	if p := max(cfg.Propagation, 0); p == 0 && cfg.Propagation == 0 {
		p = DefaultPropagation
		if p+cfg.ClusterWait >= maxWait {
			bad("clusterWait", "propagation (default %s) + clusterWait %s must stay below %s, the engine's time for one gateway call; lower clusterWait or set propagation", DefaultPropagation, cfg.ClusterWait, maxWait)
		}
	} else if p+cfg.ClusterWait >= maxWait {
		bad("propagation", "%s + clusterWait %s must stay below %s, the engine's time for one gateway call", p, cfg.ClusterWait, maxWait)
	}
	if cfg.Timeout < 0 {
		bad("timeout", "%s is negative; use e.g. 10s", cfg.Timeout)
	}
}

// build constructs the Router of a valid cfg: the defaults, the Admin API client and the mode's router.
func build(cfg Config, token string, hc *http.Client) (*Router, error) {
	if cfg.Propagation == 0 {
		cfg.Propagation = DefaultPropagation
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	retries := cfg.Retries
	if retries == 0 {
		retries = DefaultRetries
	} else if retries < 0 {
		retries = 0
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	base := strings.TrimSuffix(cfg.AdminURL, "/")
	client, err := gokong.NewClient(&base, hc)
	if err != nil {
		return nil, &ConfigError{Field: "adminURL", Msg: err.Error()}
	}
	client.SetWorkspace(cfg.Workspace)
	r := &Router{cfg: cfg, client: client, log: logger.With("gateway", "kong"), token: token, retries: retries}
	r.mode = modeTypes[cfg.Mode].router(r)
	client.SetDoer(r.do)
	return r, nil
}

func modeList() string {
	s := make([]string, len(Modes))
	for i, m := range Modes {
		s[i] = string(m)
	}
	return strings.Join(s, ", ")
}

func tlsConfig(t TLS) (*tls.Config, error) {
	c := &tls.Config{InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // the user asked for it
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, &ConfigError{Field: "tls.caFile", Msg: fmt.Sprintf("cannot read %q: %v", t.CAFile, errors.Unwrap(err))}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &ConfigError{Field: "tls.caFile", Msg: fmt.Sprintf("%q holds no PEM certificate", t.CAFile)}
		}
		c.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, &ConfigError{Field: "tls.certFile", Msg: "set both certFile and keyFile for a client certificate"}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, &ConfigError{Field: "tls.certFile", Msg: fmt.Sprintf("cannot load the client certificate: %v", err)}
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// do is go-kong's Doer: it adds the admin token, bounds each attempt with cfg.Timeout, retries
// timeouts, connection errors, 5xx and 429 (honouring Retry-After) with exponential back-off, and
// turns error answers into *APIError with Kong's body.
func (r *Router) do(ctx context.Context, hc *http.Client, req *http.Request) (*http.Response, error) {
	if r.token != "" {
		req.Header.Set(TokenHeader, r.token)
	}
	path := req.URL.Path
	if req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	delay := r.cfg.Backoff
	var last error
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		rq := req.Clone(actx)
		if req.GetBody != nil {
			rq.Body, _ = req.GetBody()
		}
		resp, err := hc.Do(rq)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(io.LimitReader(resp.Body, 32<<20))
			_ = resp.Body.Close()
		}
		cancel()
		wait := delay
		switch {
		case ctx.Err() != nil:
			if last != nil {
				return nil, fmt.Errorf("%w: gave up after %d attempts when the caller's time ran out (%v): %w", ErrUnavailable, attempt+1, context.Cause(ctx), last)
			}
			return nil, fmt.Errorf("%s %s: %w", req.Method, path, context.Cause(ctx))
		case err != nil:
			last = fmt.Errorf("%s %s: %w", req.Method, path, err)
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			last = apiError(req.Method, path, resp.StatusCode, body)
			if resp.StatusCode == http.StatusTooManyRequests {
				if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
					wait = time.Duration(s) * time.Second
				}
			}
		case resp.StatusCode >= 400:
			ae := apiError(req.Method, path, resp.StatusCode, body)
			ae.NoToken = r.token == ""
			return nil, ae
		default:
			resp.Body = io.NopCloser(strings.NewReader(string(body)))
			return resp, nil
		}
		if attempt >= r.retries {
			if isStatus(last, http.StatusTooManyRequests) {
				return nil, last
			}
			return nil, fmt.Errorf("%w after %d attempts: %w", ErrUnavailable, attempt+1, last)
		}
		r.log.Warn("kong admin API call failed; retrying", "method", req.Method, "path", path, "attempt", attempt+1, "in", wait, "err", last)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w: gave up after %d attempts when the caller's time ran out (%v): %w", ErrUnavailable, attempt+1, context.Cause(ctx), last)
		case <-t.C:
		}
		if delay *= 2; delay > maxBackoff {
			delay = maxBackoff
		}
	}
}

func apiError(method, path string, status int, body []byte) *APIError {
	e := &APIError{Method: method, Path: path, Status: status}
	var b struct {
		Code    int            `json:"code"`
		Name    string         `json:"name"`
		Message string         `json:"message"`
		Fields  map[string]any `json:"fields"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		e.Msg = strings.TrimSpace(string(body))
		if len(e.Msg) > 200 {
			e.Msg = e.Msg[:200] + "..."
		}
		if e.Msg == "" {
			e.Msg = http.StatusText(status)
		}
		return e
	}
	e.Code, e.Name, e.Msg, e.Fields = b.Code, b.Name, b.Message, b.Fields
	return e
}

// call sends a request through go-kong's request helpers; v receives the JSON answer if not nil.
func (r *Router) call(ctx context.Context, method, endpoint string, qs, body, v any) error {
	req, err := r.client.NewRequest(method, endpoint, qs, body)
	if err != nil {
		return err
	}
	_, err = r.client.Do(ctx, req, v)
	return err
}

// wait sleeps for the propagation delay (plus ClusterWait), or until ctx ends: for changes Kong's
// health endpoint cannot confirm (a Service's host, a plugin).
func (r *Router) wait(ctx context.Context, why string) error {
	if r.cfg.Propagation <= 0 {
		return nil
	}
	return r.sleep(ctx, r.cfg.Propagation+r.cfg.ClusterWait, why)
}

func (r *Router) sleep(ctx context.Context, d time.Duration, why string) error {
	if d <= 0 {
		return nil
	}
	r.log.Debug("waiting for Kong to propagate the change", "wait", d, "after", why)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("kong: wait for propagation after %s: %w", why, context.Cause(ctx))
	case <-t.C:
		return nil
	}
}

func (r *Router) tags(c providers.Cohort) []string {
	return []string{TagCanaryctl, "cohort:" + string(c), "rollout:" + r.cfg.RolloutID}
}

func (r *Router) rolloutTag() string { return "rollout:" + r.cfg.RolloutID }

func ptr[T any](v T) *T { return &v }
