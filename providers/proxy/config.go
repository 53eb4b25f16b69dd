package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/canaryctl/canaryctl/internal/yamlerr"
	"github.com/canaryctl/canaryctl/providers"
)

// FileConfig is the YAML configuration of `canaryctl proxy --config FILE` (see README.md).
// Command-line flags override the fields they name.
type FileConfig struct {
	Listen         string                        `yaml:"listen"`
	AdminListen    string                        `yaml:"adminListen"`
	AdminTokenFile string                        `yaml:"adminTokenFile"`
	Upstreams      map[providers.Cohort][]string `yaml:"upstreams"`
	Split          struct {
		CanaryPercent   float64 `yaml:"canaryPercent"`
		BaselinePercent float64 `yaml:"baselinePercent"`
	} `yaml:"split"`
	HashOn         HashOn    `yaml:"hashOn"`
	Rules          []Rule    `yaml:"rules"`
	Deny           []Match   `yaml:"deny"`
	Allow          []Match   `yaml:"allow"`
	JWT            JWTConfig `yaml:"jwt"`
	PreserveHost   bool      `yaml:"preserveHost"`
	TrustForwarded bool      `yaml:"trustForwarded"`
	// GeoIP is the database of country and continent matches.
	GeoIP    GeoIPConfig `yaml:"geoip"`
	Timeouts struct {
		Dial           time.Duration `yaml:"dial"`
		ResponseHeader time.Duration `yaml:"responseHeader"`
		Idle           time.Duration `yaml:"idle"`
		ReadHeader     time.Duration `yaml:"readHeader"`
		Shutdown       time.Duration `yaml:"shutdown"`
		ClientBody     time.Duration `yaml:"clientBody"`
		Send           time.Duration `yaml:"send"`
		UpstreamSend   time.Duration `yaml:"upstreamSend"`
		UpstreamRead   time.Duration `yaml:"upstreamRead"`
	} `yaml:"timeouts"`
	// RequestBodyBuffer: bytes of a request body read before the upstream is contacted (Config.RequestBodyBuffer).
	RequestBodyBuffer int `yaml:"requestBodyBuffer"`
	Backoff           struct {
		Base time.Duration `yaml:"base"`
		Max  time.Duration `yaml:"max"`
	} `yaml:"backoff"`
	SampleCapacity int `yaml:"sampleCapacity"`
	// RouteSegments: record each request's route by its method and this many path segments
	// (Config.RouteSegments; 0, the default, records none).
	RouteSegments int `yaml:"routeSegments"`
	// NetHTTPOnly serves every request through net/http instead of the proxy's HTTP/1.1 loop
	// (ServeConfig.NetHTTPOnly).
	NetHTTPOnly bool `yaml:"netHTTPOnly"`
}

// ParseFileConfig decodes a YAML configuration strictly: unknown fields are errors naming them.
func ParseFileConfig(data []byte) (*FileConfig, error) {
	fc := &FileConfig{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(fc); err != nil && !errors.Is(err, io.EOF) {
		return nil, &ConfigError{Field: "config file", Err: errors.New(yamlerr.Describe(data, err))}
	}
	if err := fc.validate(); err != nil {
		return nil, err
	}
	return fc, nil
}

func (fc *FileConfig) validate() error {
	for c := range fc.Upstreams {
		if !c.Valid() {
			return configErrorf("upstreams."+string(c), "not a cohort (valid: stable, baseline, canary)")
		}
	}
	for _, f := range []struct {
		name string
		v    string
	}{{"listen", fc.Listen}, {"adminListen", fc.AdminListen}} {
		if f.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.v); err != nil {
			return configErrorf(f.name, "%q must be host:port, e.g. 127.0.0.1:8080", f.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeouts.dial", fc.Timeouts.Dial}, {"timeouts.responseHeader", fc.Timeouts.ResponseHeader},
		{"timeouts.idle", fc.Timeouts.Idle}, {"timeouts.readHeader", fc.Timeouts.ReadHeader},
		{"timeouts.shutdown", fc.Timeouts.Shutdown}, {"timeouts.clientBody", fc.Timeouts.ClientBody},
		{"timeouts.send", fc.Timeouts.Send}, {"timeouts.upstreamSend", fc.Timeouts.UpstreamSend},
		{"timeouts.upstreamRead", fc.Timeouts.UpstreamRead}, {"backoff.base", fc.Backoff.Base}, {"backoff.max", fc.Backoff.Max}} {
		if d.v < 0 {
			return configErrorf(d.name, "%s must not be negative", d.v)
		}
	}
	if fc.RequestBodyBuffer < 0 || fc.RequestBodyBuffer > 64<<20 {
		return configErrorf("requestBodyBuffer", "%d must be between 0 (default %d bytes) and %d bytes", fc.RequestBodyBuffer, DefaultRequestBodyBuffer, 64<<20)
	}
	if fc.SampleCapacity < 0 || fc.SampleCapacity > 1<<24 {
		return configErrorf("sampleCapacity", "%d must be between 0 (default %d) and %d", fc.SampleCapacity, DefaultSampleCapacity, 1<<24)
	}
	if _, err := fc.split(); err != nil {
		return err
	}
	return nil
}

func (fc *FileConfig) split() (providers.Split, error) {
	c, err := providers.PercentToBP(fc.Split.CanaryPercent)
	if err != nil {
		return providers.Split{}, configErrorf("split.canaryPercent", "%v", err)
	}
	b, err := providers.PercentToBP(fc.Split.BaselinePercent)
	if err != nil {
		return providers.Split{}, configErrorf("split.baselinePercent", "%v", err)
	}
	s := providers.Split{Canary: c, Baseline: b}
	if err := s.Validate(); err != nil {
		return s, configErrorf("split", "canary and baseline percent add up to more than 100")
	}
	return s, nil
}

// ProxyConfig turns the file into a Config for New.
func (fc *FileConfig) ProxyConfig() (Config, error) {
	s, err := fc.split()
	if err != nil {
		return Config{}, err
	}
	return Config{
		Upstreams: fc.Upstreams, Split: s, HashOn: fc.HashOn, Rules: fc.Rules, Deny: fc.Deny, Allow: fc.Allow,
		JWT: fc.JWT, PreserveHost: fc.PreserveHost, TrustForwarded: fc.TrustForwarded, GeoIP: fc.GeoIP,
		DialTimeout: fc.Timeouts.Dial, ResponseHeaderTimeout: fc.Timeouts.ResponseHeader, IdleConnTimeout: fc.Timeouts.Idle,
		BackoffBase: fc.Backoff.Base, BackoffMax: fc.Backoff.Max, SampleCapacity: fc.SampleCapacity,
		ClientBodyTimeout: fc.Timeouts.ClientBody, SendTimeout: fc.Timeouts.Send, UpstreamSendTimeout: fc.Timeouts.UpstreamSend,
		UpstreamReadTimeout: fc.Timeouts.UpstreamRead, RequestBodyBuffer: fc.RequestBodyBuffer, RouteSegments: fc.RouteSegments,
	}, nil
}
