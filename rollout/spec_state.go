package rollout

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// StateSpec selects where the rollout's state lives: a local directory (type local, the default:
// --state-dir) or etcd (type etcd), which every machine reaching the cluster shares.
type StateSpec struct {
	Type      string        `yaml:"type,omitempty" json:"type,omitempty"`
	Endpoints []string      `yaml:"endpoints,omitempty" json:"endpoints,omitempty"`
	Prefix    string        `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	TLS       *StateTLSSpec `yaml:"tls,omitempty" json:"tls,omitempty"`
	// UsernameEnv and PasswordEnv name the variables holding etcd credentials (optional).
	UsernameEnv string `yaml:"usernameEnv,omitempty" json:"usernameEnv,omitempty"`
	PasswordEnv string `yaml:"passwordEnv,omitempty" json:"passwordEnv,omitempty"`
	// LeaseTTL: how long the runner's leases (in etcd, at the gateway) outlive it (default 15s).
	LeaseTTL time.Duration `yaml:"leaseTTL,omitempty" json:"leaseTTL,omitempty"`
}

// StateTLSSpec: client TLS to etcd.
type StateTLSSpec struct {
	CAFile   string `yaml:"caFile,omitempty" json:"caFile,omitempty"`
	CertFile string `yaml:"certFile,omitempty" json:"certFile,omitempty"`
	KeyFile  string `yaml:"keyFile,omitempty" json:"keyFile,omitempty"`
}

// StateTypes lists the state stores.
var StateTypes = []string{"local", "etcd"}

// Lease returns the lease TTL (default DefaultLeaseTTL).
func (s StateSpec) Lease() time.Duration {
	if s.LeaseTTL > 0 {
		return s.LeaseTTL
	}
	return DefaultLeaseTTL
}

func (s *Spec) validateState(bad func(string, string, ...any)) {
	st := s.State
	switch st.Type {
	case "", "local":
		if len(st.Endpoints) > 0 || st.Prefix != "" || st.TLS != nil {
			bad("state.type", "endpoints, prefix and tls are for type etcd; set state.type: etcd or remove them")
		}
	case "etcd":
		if len(st.Endpoints) == 0 {
			bad("state.endpoints", "required for type etcd; list the cluster's client URLs, e.g. [https://etcd-0:2379]")
		}
		for i, e := range st.Endpoints {
			if err := CheckEtcdEndpoint(e); err != nil {
				bad(fmt.Sprintf("state.endpoints[%d]", i), "%v", err)
			}
		}
		if st.Prefix != "" && !strings.HasPrefix(st.Prefix, "/") {
			bad("state.prefix", "%q must start with '/', e.g. /canaryctl", st.Prefix)
		}
	default:
		bad("state.type", "unknown store %q; use one of %s", st.Type, strings.Join(StateTypes, ", "))
	}
	if st.LeaseTTL != 0 && (st.LeaseTTL < 2*time.Second || st.LeaseTTL > 10*time.Minute) {
		bad("state.leaseTTL", "%s must be between 2s (etcd's minimum) and 10m", st.LeaseTTL)
	}
}

// CheckEtcdEndpoint checks one etcd client URL: http(s)://host:port or unix:///path.
func CheckEtcdEndpoint(e string) error {
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix") || (u.Scheme != "unix" && u.Host == "") {
		return fmt.Errorf("%q is not an etcd client URL; use e.g. https://etcd-0:2379", e)
	}
	return nil
}

// TLSConfig builds the client TLS configuration (nil without tls).
func (s StateSpec) TLSConfig() (*tls.Config, error) {
	if s.TLS == nil {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.TLS.CAFile != "" {
		pem, err := os.ReadFile(s.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("state.tls.caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("state.tls.caFile: %s holds no PEM certificate", s.TLS.CAFile)
		}
		c.RootCAs = pool
	}
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		return nil, fmt.Errorf("state.tls: set both certFile and keyFile, or neither")
	}
	if s.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.TLS.CertFile, s.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("state.tls.certFile/keyFile: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
