package kong

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// DefaultTokenEnv is the environment variable the admin token is read from by default.
const DefaultTokenEnv = "CANARYCTL_KONG_TOKEN"

// Spec is the `gateway.kong` section of a rollout spec (gateway.type: kong).
//
//	gateway:
//	  type: kong
//	  kong:
//	    admin: https://kong-admin:8444
//	    service: checkout          # or upstream: checkout-up
//	    tokenFile: /run/secrets/kong-token   # or tokenEnv (default CANARYCTL_KONG_TOKEN)
//	    workspace: payments
//	    mode: targets              # hash | bluegreen | dbless | canary-plugin
//	    propagation: 5s
//	    log: {listen: 0.0.0.0:9900, endpoint: http://10.0.0.5:9900/}
type Spec struct {
	Admin     string  `yaml:"admin" json:"admin"`
	Service   string  `yaml:"service,omitempty" json:"service,omitempty"`
	Upstream  string  `yaml:"upstream,omitempty" json:"upstream,omitempty"`
	TokenEnv  string  `yaml:"tokenEnv,omitempty" json:"tokenEnv,omitempty"`
	TokenFile string  `yaml:"tokenFile,omitempty" json:"tokenFile,omitempty"`
	Workspace string  `yaml:"workspace,omitempty" json:"workspace,omitempty"`
	TLS       TLSSpec `yaml:"tls,omitempty" json:"tls,omitempty"`
	Mode      Mode    `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Propagation: nil (unset) is DefaultPropagation; an explicit 0 means no wait at all.
	Propagation *time.Duration `yaml:"propagation,omitempty" json:"propagation,omitempty"`
	ClusterWait time.Duration  `yaml:"clusterWait,omitempty" json:"clusterWait,omitempty"`
	Retries     int            `yaml:"retries,omitempty" json:"retries,omitempty"`
	Timeout     time.Duration  `yaml:"timeout,omitempty" json:"timeout,omitempty"`

	HashOn            string `yaml:"hashOn,omitempty" json:"hashOn,omitempty"`
	HashOnHeader      string `yaml:"hashOnHeader,omitempty" json:"hashOnHeader,omitempty"`
	HashOnCookie      string `yaml:"hashOnCookie,omitempty" json:"hashOnCookie,omitempty"`
	GreenUpstream     string `yaml:"greenUpstream,omitempty" json:"greenUpstream,omitempty"`
	CanaryHash        string `yaml:"canaryHash,omitempty" json:"canaryHash,omitempty"`
	CanaryHashHeader  string `yaml:"canaryHashHeader,omitempty" json:"canaryHashHeader,omitempty"`
	CanaryUpstreamURI string `yaml:"canaryUpstreamURI,omitempty" json:"canaryUpstreamURI,omitempty"`

	// Log configures the kong-log metrics source (metrics.type: kong-log).
	Log *LogSpec `yaml:"log,omitempty" json:"log,omitempty"`
}

// TLSSpec is Spec's TLS section: the Admin API's CA, a client certificate.
type TLSSpec = providers.TLSSpec

// LogSpec configures the http-log receiver.
type LogSpec struct {
	// Listen is the receiver's address (default 127.0.0.1:0; Kong must reach it).
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty"`
	// Endpoint is the receiver's URL as Kong reaches it; canaryctl adds an http-log plugin posting
	// there to the Service and removes it at the end. Empty: http://LISTEN/ (loopback Kong only).
	Endpoint string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	// Manual: the http-log plugin is configured by you (DB-less Kong); canaryctl only listens.
	Manual bool `yaml:"manual,omitempty" json:"manual,omitempty"`
	// Flush is the plugin's queue.max_coalescing_delay (default Kong's 1s): logs arrive up to this
	// late, so keep it well below the analysis interval.
	Flush time.Duration `yaml:"flush,omitempty" json:"flush,omitempty"`
	// TLS: the receiver serves https with this certificate (Kong's http-log does not verify it, but
	// the secret no longer crosses the network in clear).
	TLS *LogTLSSpec `yaml:"tls,omitempty" json:"tls,omitempty"`
	// SecretFile or SecretEnv: the secret Kong must send (Authorization: Bearer SECRET), for a
	// manual plugin whose headers you configure. Default: a random secret per rollout, kept in the
	// rollout's state directory (kong-log.secret, mode 0600).
	SecretFile string `yaml:"secretFile,omitempty" json:"secretFile,omitempty"`
	SecretEnv  string `yaml:"secretEnv,omitempty" json:"secretEnv,omitempty"`
}

// LogTLSSpec is the receiver's certificate and key (PEM files).
type LogTLSSpec struct {
	CertFile string `yaml:"certFile" json:"certFile"`
	KeyFile  string `yaml:"keyFile" json:"keyFile"`
}

// Config turns the spec into a Router Config; the token comes from TokenFile or the environment
// variable TokenEnv (default CANARYCTL_KONG_TOKEN).
func (s *Spec) Config(rolloutID string, getenv func(string) string, logger *slog.Logger) Config {
	c := Config{
		AdminURL: s.Admin, Service: s.Service, Upstream: s.Upstream, TokenFile: s.TokenFile,
		Workspace: s.Workspace, Mode: s.Mode, RolloutID: rolloutID, ClusterWait: s.ClusterWait,
		Retries: s.Retries, Timeout: s.Timeout,
		TLS:    TLS{CAFile: s.TLS.CAFile, CertFile: s.TLS.CertFile, KeyFile: s.TLS.KeyFile, InsecureSkipVerify: s.TLS.InsecureSkipVerify},
		HashOn: s.HashOn, HashOnHeader: s.HashOnHeader, HashOnCookie: s.HashOnCookie, GreenUpstream: s.GreenUpstream,
		CanaryHash: s.CanaryHash, CanaryHashHeader: s.CanaryHashHeader, CanaryUpstreamURI: s.CanaryUpstreamURI,
		Logger: logger,
	}
	switch p := s.Propagation; {
	case p == nil:
	case *p == 0:
		c.Propagation = -1 // an explicit 0: no wait
	default:
		c.Propagation = *p
	}
	if s.TokenFile == "" && getenv != nil {
		env := s.TokenEnv
		if env == "" {
			env = DefaultTokenEnv
		}
		c.Token = getenv(env)
	}
	return c
}

// Problems validates the spec as New would (without calling Kong) and returns every problem; Field
// is relative to gateway.kong.
func (s *Spec) Problems() []*ConfigError {
	var out []*ConfigError
	cfg := s.Config("validate", nil, nil)
	if _, err := New(cfg); err != nil {
		collect(err, &out)
	}
	if s.Propagation != nil && *s.Propagation < 0 {
		out = append(out, &ConfigError{Field: "propagation", Msg: fmt.Sprintf("%s is negative; use e.g. 10s, or 0 for no wait at all", *s.Propagation)})
	}
	if s.Log != nil && s.Log.Listen != "" {
		if _, _, err := net.SplitHostPort(s.Log.Listen); err != nil {
			out = append(out, &ConfigError{Field: "log.listen", Msg: "\"" + s.Log.Listen + "\" is not host:port; use e.g. 0.0.0.0:9900"})
		}
	}
	if s.Log != nil {
		out = append(out, s.Log.problems()...)
	}
	if s.Log != nil && s.Log.Endpoint != "" {
		cfg.LogEndpoint = s.Log.Endpoint
		if _, err := New(cfg); err != nil {
			var ce []*ConfigError
			collect(err, &ce)
			for _, e := range ce {
				if e.Field == "log.endpoint" || e.Field == "log.manual" {
					out = append(out, e)
				}
			}
		}
	}
	return out
}

func collect(err error, out *[]*ConfigError) {
	var ce *ConfigError
	if errors.As(err, &ce) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				collect(e, out)
			}
			return
		}
		*out = append(*out, ce)
		return
	}
	*out = append(*out, &ConfigError{Field: "(kong)", Msg: err.Error()})
}
