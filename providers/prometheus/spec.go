package prometheus

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// Spec is the rollout spec's metrics.prometheus section (metrics.type: prometheus). Secrets are
// never written into the spec: tokenEnv/passwordEnv name environment variables, tokenFile and
// passwordFile name files read on every request.
type Spec struct {
	URL          string            `yaml:"url" json:"url"`
	TokenEnv     string            `yaml:"tokenEnv,omitempty" json:"tokenEnv,omitempty"`
	TokenFile    string            `yaml:"tokenFile,omitempty" json:"tokenFile,omitempty"`
	BasicAuth    *BasicAuthSpec    `yaml:"basicAuth,omitempty" json:"basicAuth,omitempty"`
	Headers      map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	TLS          TLSSpec           `yaml:"tls,omitempty" json:"tls,omitempty"`
	Timeout      time.Duration     `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Retries      int               `yaml:"retries,omitempty" json:"retries,omitempty"`
	Backoff      time.Duration     `yaml:"backoff,omitempty" json:"backoff,omitempty"`
	QuerySet     string            `yaml:"querySet,omitempty" json:"querySet,omitempty"`
	CohortLabel  string            `yaml:"cohortLabel,omitempty" json:"cohortLabel,omitempty"`
	CohortValues map[string]string `yaml:"cohortValues,omitempty" json:"cohortValues,omitempty"`
	Selector     string            `yaml:"selector,omitempty" json:"selector,omitempty"`
	ServiceLabel string            `yaml:"serviceLabel,omitempty" json:"serviceLabel,omitempty"`
	AppMetric    string            `yaml:"appMetric,omitempty" json:"appMetric,omitempty"`
	MinWindow    time.Duration     `yaml:"minWindow,omitempty" json:"minWindow,omitempty"`
}

// BasicAuthSpec is Spec's basic auth: the password comes from an environment variable or a file.
type BasicAuthSpec struct {
	User         string `yaml:"user" json:"user"`
	PasswordEnv  string `yaml:"passwordEnv,omitempty" json:"passwordEnv,omitempty"`
	PasswordFile string `yaml:"passwordFile,omitempty" json:"passwordFile,omitempty"`
}

// TLSSpec is Spec's TLS section: the provider's TLS files and the server name to check.
type TLSSpec struct {
	providers.TLSSpec `yaml:",inline"`
	ServerName        string `yaml:"serverName,omitempty" json:"serverName,omitempty"`
}

// specFields maps Config field names in ConfigErrors to the spec's names.
var specFields = map[string]string{"bearerTokenFile": "tokenFile", "basicAuth.passwordFile": "basicAuth.passwordFile"}

// Config turns the spec into a provider Config for service; getenv reads tokenEnv and
// passwordEnv (an empty variable is an error, so a missing secret fails before traffic moves).
func (s *Spec) Config(service string, getenv func(string) string, log *slog.Logger) (Config, error) {
	cfg := Config{
		URL: s.URL, BearerTokenFile: s.TokenFile, Headers: s.Headers,
		TLS:     TLS{CAFile: s.TLS.CAFile, CertFile: s.TLS.CertFile, KeyFile: s.TLS.KeyFile, ServerName: s.TLS.ServerName, InsecureSkipVerify: s.TLS.InsecureSkipVerify},
		Timeout: s.Timeout, Retries: s.Retries, Backoff: s.Backoff,
		QuerySet: s.QuerySet, CohortLabel: s.CohortLabel, Selector: s.Selector, Service: service,
		ServiceLabel: s.ServiceLabel, AppMetric: s.AppMetric, MinWindow: s.MinWindow, Logger: log,
	}
	if len(s.CohortValues) > 0 {
		cfg.CohortValues = map[providers.Cohort]string{}
		for k, v := range s.CohortValues {
			cfg.CohortValues[providers.Cohort(k)] = v
		}
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if s.TokenEnv != "" {
		if cfg.BearerToken = getenv(s.TokenEnv); cfg.BearerToken == "" {
			return cfg, configErrorf("tokenEnv", "environment variable %s is empty; export the Prometheus token in it", s.TokenEnv)
		}
	}
	if s.BasicAuth != nil {
		cfg.BasicAuth = BasicAuth{User: s.BasicAuth.User, PasswordFile: s.BasicAuth.PasswordFile}
		if s.BasicAuth.PasswordEnv != "" {
			if cfg.BasicAuth.Password = getenv(s.BasicAuth.PasswordEnv); cfg.BasicAuth.Password == "" {
				return cfg, configErrorf("basicAuth.passwordEnv", "environment variable %s is empty; export the password in it", s.BasicAuth.PasswordEnv)
			}
		}
	}
	return cfg, nil
}

// Problems lists what is wrong with the spec, without reading secrets or files, each with the
// field (relative to metrics.prometheus) and a message saying how to fix it.
func (s *Spec) Problems() []*ConfigError {
	var out []*ConfigError
	add := func(err error) {
		var ce *ConfigError
		if errors.As(err, &ce) {
			f := ce.Field
			if m, ok := specFields[f]; ok {
				f = m
			}
			out = append(out, &ConfigError{Field: f, Err: ce.Err})
		} else if err != nil {
			out = append(out, &ConfigError{Field: "(prometheus)", Err: err})
		}
	}
	if s.TokenEnv != "" && s.TokenFile != "" {
		add(configErrorf("tokenFile", "set either tokenEnv or tokenFile, not both"))
	}
	if s.BasicAuth != nil {
		if s.BasicAuth.User == "" {
			add(configErrorf("basicAuth.user", "required with basicAuth"))
		}
		if s.BasicAuth.PasswordEnv != "" && s.BasicAuth.PasswordFile != "" {
			add(configErrorf("basicAuth.passwordFile", "set either passwordEnv or passwordFile, not both"))
		}
		if s.TokenEnv != "" || s.TokenFile != "" {
			add(configErrorf("basicAuth", "set either basic auth or a bearer token, not both"))
		}
	}
	if s.Retries < 0 {
		add(configErrorf("retries", "%d is negative; use 0 for the default (%d) or a positive count", s.Retries, DefaultRetries))
	}
	cfg, _ := s.Config("", func(string) string { return "x" }, nil)
	cfg.TLS = TLS{} // files are checked when the provider is built
	cfg.BearerTokenFile = ""
	cfg.BasicAuth = BasicAuth{}
	if s.TLS.CertFile != "" && s.TLS.KeyFile == "" || s.TLS.CertFile == "" && s.TLS.KeyFile != "" {
		add(configErrorf("tls.keyFile", "a client certificate needs both certFile and keyFile"))
	}
	if full, err := cfg.withDefaults(); err != nil {
		add(err)
	} else if _, err := lookupQuerySet(full); err != nil {
		add(err)
	}
	return out
}

// String names the Prometheus server (for progress lines), never a secret.
func (s *Spec) String() string {
	return fmt.Sprintf("prometheus %s (query set %s)", s.URL, orDefault(s.QuerySet, "builtin"))
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
