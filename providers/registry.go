package providers

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// GatewayType is a kind of gateway (gateway.type of the rollout spec) as the spec sees it: its own
// section of settings, their problems and the capabilities the engine asks about. A gateway package
// registers its type in an init function (RegisterGateway); the spec decodes gateway.<name> into the
// value Section returns.
type GatewayType interface {
	// Section returns a new zero value of the type's section (a pointer to a struct with yaml tags),
	// or nil when the type has none.
	Section() any
	// Example shows a minimal section, for the error when a required section is left out.
	Example() string
	// Problems validates a decoded section (never nil); Field is relative to the section.
	Problems(section any) []Problem
	// Caps are the capabilities of the gateway a section configures (nil: left out).
	Caps(section any) GatewayCaps
}

// GatewayCaps are what the engine must know of a gateway: which cohorts it routes and how.
// The zero value is a gateway without any capability; Full is one with every capability.
type GatewayCaps struct {
	// Baseline: the gateway routes a baseline cohort beside stable and canary (a fresh copy of
	// stable as the canary's control, Kayenta's recommendation).
	Baseline bool
	// AtOnce: stable and canary serve at the same time (a split of the traffic), so the canary can be
	// compared with a control observed over the same window.
	AtOnce bool
	// BeforeAfterOnly: all traffic switches at once; the canary can only be compared with stable
	// observed before the switch (AtOnce is false).
	BeforeAfterOnly bool
	// Sticky names the setting that keeps each user on one cohort ("" when the split is per
	// request): the cohorts then serve different users.
	Sticky string
	// LogDelay is how late the gateway's request log may deliver a finished request (batching).
	LogDelay time.Duration
	// Setting names what gives these capabilities, as the spec writes it ("gateway.kong.mode
	// bluegreen"); Instead names the setting of the same gateway with every capability
	// ("gateway.kong.mode targets"). Both are used in error messages.
	Setting, Instead string
}

// FullCaps is a gateway that routes three cohorts at once, per request.
var FullCaps = GatewayCaps{Baseline: true, AtOnce: true}

// MetricsType is a kind of metrics source (metrics.type of the rollout spec).
type MetricsType interface {
	// Section returns a new zero value of the type's section (metrics.<name>), or nil.
	Section() any
	// Example shows a minimal section, for the error when a required section is left out.
	Example() string
	// Problems validates a decoded section (never nil); Field is relative to the section.
	Problems(section any) []Problem
	// Gateway names the gateway type the source reads from ("": any) and where its data come
	// from ("Kong's http-log plugin"), for the error when another gateway is configured.
	Gateway() (name, origin string)
	// PerRequest reports whether the source gives individual requests (analysis.mode sequential).
	PerRequest() bool
}

// Problem is one problem of a provider's section: Field is relative to the section.
type Problem struct {
	Field string
	Msg   string
}

var registry struct {
	mu       sync.RWMutex
	gateways map[string]GatewayType
	metrics  map[string]MetricsType
}

// RegisterGateway makes a gateway type known to the spec under name. It panics when name is taken:
// registration happens in init functions, and two providers under one name is a build error.
func RegisterGateway(name string, t GatewayType) { register(&registry.gateways, "gateway", name, t) }

// RegisterMetrics makes a metrics type known to the spec under name; see RegisterGateway.
func RegisterMetrics(name string, t MetricsType) { register(&registry.metrics, "metrics", name, t) }

func register[T any](m *map[string]T, kind, name string, t T) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if *m == nil {
		*m = map[string]T{}
	}
	if _, dup := (*m)[name]; dup {
		panic(fmt.Sprintf("providers: %s type %q registered twice", kind, name))
	}
	(*m)[name] = t
}

// NoSection gives a type without a section of its own (configured elsewhere) its Section, Example
// and Problems: embed it.
type NoSection struct{}

// Section returns nil: no section.
func (NoSection) Section() any { return nil }

// Example returns "".
func (NoSection) Example() string { return "" }

// Problems returns nil.
func (NoSection) Problems(any) []Problem { return nil }

// LookupGateway returns the gateway type registered under name.
func LookupGateway(name string) (GatewayType, bool) {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	t, ok := registry.gateways[name]
	return t, ok
}

// LookupMetrics returns the metrics type registered under name.
func LookupMetrics(name string) (MetricsType, bool) {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	t, ok := registry.metrics[name]
	return t, ok
}

// GatewayNames lists the registered gateway types, sorted.
func GatewayNames() []string {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	return slices.Sorted(maps.Keys(registry.gateways))
}

// MetricsNames lists the registered metrics types, sorted.
func MetricsNames() []string {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	return slices.Sorted(maps.Keys(registry.metrics))
}

// TLSSpec is the TLS section of a provider's settings (tls:): the CA bundle that signs the server's
// certificate, a client certificate and key (PEM files), and whether to skip verification.
type TLSSpec struct {
	CAFile             string `yaml:"caFile,omitempty" json:"caFile,omitempty"`
	CertFile           string `yaml:"certFile,omitempty" json:"certFile,omitempty"`
	KeyFile            string `yaml:"keyFile,omitempty" json:"keyFile,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecureSkipVerify,omitempty" json:"insecureSkipVerify,omitempty"`
}
