package prometheus

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// Defaults used when a Config field is zero.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultRetries     = 2
	DefaultBackoff     = 500 * time.Millisecond
	DefaultCohortLabel = "cohort"
	DefaultMinWindow   = 30 * time.Second
	maxBackoff         = 10 * time.Second
)

// Config configures a Provider. Only URL is required.
type Config struct {
	// URL of the Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir, VictoriaMetrics),
	// without /api/v1, e.g. http://127.0.0.1:9090 or https://mimir.example/prometheus.
	URL string

	// BearerToken is sent as "Authorization: Bearer <token>". BearerTokenFile is read on every
	// request (so a rotated token is picked up); at most one of the two may be set.
	BearerToken     string
	BearerTokenFile string
	// BasicAuth is sent when User is set; exclusive with the bearer token.
	BasicAuth BasicAuth
	// Headers are added to every request (e.g. X-Scope-OrgID for Mimir tenants).
	Headers map[string]string
	// TLS configures server verification and the client certificate.
	TLS TLS

	// Timeout bounds one query attempt; the caller's context bounds everything. It is also sent
	// to the server as the query's evaluation timeout. 0 means DefaultTimeout.
	Timeout time.Duration
	// Retries is how many times a query is retried after a 5xx answer, a timeout or a network
	// error (never after a 4xx or bad_data). 0 means DefaultRetries; negative means none.
	Retries int
	// Backoff is the wait before the first retry; it doubles per retry up to 10 s. 0 means
	// DefaultBackoff.
	Backoff time.Duration

	// QuerySet names the ready-made queries for the latency and error_rate kinds: "builtin"
	// (default) or "app-labels". See QuerySetNames.
	QuerySet string
	// CohortLabel is the label that tells the cohorts apart (default "cohort").
	CohortLabel string
	// CohortValues maps a cohort to its value of CohortLabel when they differ from the cohort
	// names, e.g. {canary: "v2", baseline: "v1-baseline"}.
	CohortValues map[providers.Cohort]string
	// Control is the cohort rendered for the control side of a Pair (Kayenta's control, Pair.Baseline):
	// providers.Baseline (default) or providers.Stable (a rollout's analysis.control stable: no
	// baseline is deployed and the canary is compared with stable's series).
	Control providers.Cohort
	// Selector holds extra label matchers joined into .Selector, e.g. `namespace="shop"`.
	Selector string
	// RouteLabel and Route narrow every query to one route (canaryctl analyze --route-label): the
	// matcher RouteLabel="Route" joins .Selector, and templates see .Route and .RouteLabel. The
	// label must tell routes apart in the application's metrics (Micrometer's uri, promhttp's
	// handler); the built-in proxy's metrics have none (their route label is split or rule), and
	// Kong's Prometheus plugin has a route label but no upstream-target label, so it cannot tell
	// canary from stable at all.
	RouteLabel, Route string
	// Service is the service name, available to templates as .Service (and, when set, matched by
	// the app-labels set through its ServiceLabel).
	Service string
	// ServiceLabel is the label carrying Service in application metrics (default "service");
	// used by the app-labels query set only.
	ServiceLabel string
	// AppMetric selects the application histogram for the app-labels set:
	// "http_server_requests_seconds" (Micrometer, default) or "http_request_duration_seconds"
	// (client_golang).
	AppMetric string
	// MinWindow is the smallest rate window (.Window); the window is the larger of the step and
	// MinWindow, so that rate() always sees two scrapes: make it at least twice the scrape interval.
	// Points are one window apart (Provider.Points), so a step below MinWindow gives fewer points
	// rather than overlapping ones. 0 means 30s (scrape intervals up to 15s).
	MinWindow time.Duration

	// Logger receives warnings returned by the server and retry notices. Nil discards.
	Logger *slog.Logger
	// Transport overrides the HTTP transport (tests); the auth and header settings still apply.
	Transport http.RoundTripper
}

// BasicAuth is HTTP basic authentication; the password comes from Password or PasswordFile.
type BasicAuth struct {
	User         string
	Password     string
	PasswordFile string
}

// TLS configures the client side of a TLS connection.
type TLS struct {
	CAFile             string // PEM bundle of CAs that sign the server certificate
	CertFile           string // client certificate (PEM), together with KeyFile
	KeyFile            string
	ServerName         string // overrides the name checked in the server certificate
	InsecureSkipVerify bool   // skip server verification (testing only)
}

// ConfigError is a problem with the configuration or a query template: the user's input is
// wrong (exit code 2 in the CLI).
type ConfigError struct {
	Field string // the configuration field, e.g. "url" or "metrics[latency].query"
	Err   error
}

func (e *ConfigError) Error() string      { return "prometheus: " + e.Field + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error      { return e.Err }
func (e *ConfigError) InvalidInput() bool { return true }

func configErrorf(field, format string, args ...any) error {
	return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
}

// withDefaults validates cfg and fills in the defaults.
func (cfg Config) withDefaults() (Config, error) {
	if err := cfg.checkAccess(); err != nil {
		return cfg, err
	}
	cfg = cfg.defaulted()
	return cfg, cfg.checkLabels()
}

// checkAccess checks how the server is reached: its URL, the credentials, the client certificate
// and the durations; the first problem, in this order.
func (cfg Config) checkAccess() error {
	u, err := url.Parse(cfg.URL)
	ba := cfg.BasicAuth
	bearer := cfg.BearerToken != "" || cfg.BearerTokenFile != ""
	rules := []struct {
		bad        bool
		field, msg string
	}{
		{cfg.URL == "", "url", "is required, e.g. http://127.0.0.1:9090"},
		{err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "", "url",
			fmt.Sprintf("%q must be an http:// or https:// address, e.g. http://127.0.0.1:9090", cfg.URL)},
		{cfg.BearerToken != "" && cfg.BearerTokenFile != "", "bearerTokenFile", "set either a bearer token or a token file, not both"},
		{ba.User != "" && bearer, "basicAuth", "set either basic auth or a bearer token, not both"},
		{ba.Password != "" && ba.PasswordFile != "", "basicAuth.passwordFile", "set either a password or a password file, not both"},
		{(ba.Password != "" || ba.PasswordFile != "") && ba.User == "", "basicAuth.user", "is required when a password is set"},
		{(cfg.TLS.CertFile == "") != (cfg.TLS.KeyFile == ""), "tls.keyFile", "a client certificate needs both certFile and keyFile"},
		{cfg.Timeout < 0 || cfg.Backoff < 0 || cfg.MinWindow < 0, "timeout", "durations must not be negative"},
	}
	for _, r := range rules {
		if r.bad {
			return configErrorf(r.field, "%s", r.msg)
		}
	}
	return nil
}

// defaulted fills the fields left out.
func (cfg Config) defaulted() Config {
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	switch {
	case cfg.Retries == 0:
		cfg.Retries = DefaultRetries
	case cfg.Retries < 0:
		cfg.Retries = 0
	}
	cfg.Backoff = cmp.Or(cfg.Backoff, DefaultBackoff)
	cfg.MinWindow = cmp.Or(cfg.MinWindow, DefaultMinWindow)
	cfg.CohortLabel = cmp.Or(cfg.CohortLabel, DefaultCohortLabel)
	cfg.ServiceLabel = cmp.Or(cfg.ServiceLabel, "service")
	cfg.Control = cmp.Or(cfg.Control, providers.Baseline)
	cfg.QuerySet = cmp.Or(cfg.QuerySet, "builtin")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// checkLabels checks what the queries are built from: the label names, the service, the cohorts'
// label values and the control.
func (cfg Config) checkLabels() error {
	for _, l := range []struct{ field, name string }{{"cohortLabel", cfg.CohortLabel}, {"serviceLabel", cfg.ServiceLabel}} {
		if !validLabelName(l.name) {
			return configErrorf(l.field, "%q is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)", l.name)
		}
	}
	if strings.ContainsAny(cfg.Service, "\"\\{}\n") {
		return configErrorf("service", "%q must not contain quotes, backslashes, braces or newlines", cfg.Service)
	}
	for c := range cfg.CohortValues {
		if !c.Valid() {
			return configErrorf("cohortValues", "unknown cohort %q (valid: stable, baseline, canary)", c)
		}
	}
	if cfg.Control != providers.Baseline && cfg.Control != providers.Stable {
		return configErrorf("control", "%q: the control is baseline or stable", cfg.Control)
	}
	return nil
}

func validLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}

// roundTripper builds the transport: TLS settings, then auth and extra headers on every request.
func (cfg Config) roundTripper() (http.RoundTripper, error) {
	base := cfg.Transport
	if base == nil {
		tlsCfg, err := cfg.TLS.config()
		if err != nil {
			return nil, err
		}
		base = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       tlsCfg,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          16,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	return &authTransport{cfg: cfg, next: base}, nil
}

func (t TLS) config() (*tls.Config, error) {
	c := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // opt-in
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, &ConfigError{Field: "tls.caFile", Err: fmt.Errorf("read CA bundle: %w", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, configErrorf("tls.caFile", "%s holds no PEM certificate", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, &ConfigError{Field: "tls.certFile", Err: fmt.Errorf("load client certificate: %w", err)}
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// authTransport adds credentials and headers. Secret files are read per request so that rotated
// credentials are picked up without a restart.
type authTransport struct {
	cfg  Config
	next http.RoundTripper
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, v := range t.cfg.Headers {
		req.Header.Set(k, v)
	}
	switch {
	case t.cfg.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+t.cfg.BearerToken)
	case t.cfg.BearerTokenFile != "":
		tok, err := readSecret(t.cfg.BearerTokenFile)
		if err != nil {
			return nil, &credentialError{fmt.Errorf("read bearer token file: %w", err)}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	case t.cfg.BasicAuth.User != "":
		pw := t.cfg.BasicAuth.Password
		if t.cfg.BasicAuth.PasswordFile != "" {
			var err error
			if pw, err = readSecret(t.cfg.BasicAuth.PasswordFile); err != nil {
				return nil, &credentialError{fmt.Errorf("read basic auth password file: %w", err)}
			}
		}
		req.SetBasicAuth(t.cfg.BasicAuth.User, pw)
	}
	return t.next.RoundTrip(req)
}

func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", errors.New(path + " is empty")
	}
	return s, nil
}
