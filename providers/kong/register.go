package kong

import (
	"cmp"
	"fmt"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// The gateway type kong (gateway.kong, Spec) and the metrics type kong-log (its http-log receiver,
// configured in gateway.kong.log), as the rollout spec knows them.
func init() {
	providers.RegisterGateway("kong", gatewayType{})
	providers.RegisterMetrics("kong-log", logMetrics{})
}

type gatewayType struct{}

func (gatewayType) Section() any { return &Spec{} }

func (gatewayType) Example() string { return "kong: {admin: http://127.0.0.1:8001, service: web}" }

func (gatewayType) Problems(section any) []providers.Problem {
	var out []providers.Problem
	for _, p := range section.(*Spec).Problems() {
		out = append(out, providers.Problem{Field: p.Field, Msg: p.Msg})
	}
	return out
}

// Caps: what the mode routes (see Mode), and how late the http-log plugin posts a request.
func (gatewayType) Caps(section any) providers.GatewayCaps {
	s, _ := section.(*Spec)
	if s == nil {
		return providers.FullCaps
	}
	mode := cmp.Or(s.Mode, ModeTargets)
	mt, ok := modeTypes[mode]
	if !ok {
		return providers.FullCaps // an unknown mode: Problems says so
	}
	c := mt.caps(s)
	c.Setting, c.Instead = fmt.Sprintf("gateway.kong.mode %s", mode), "gateway.kong.mode targets"
	c.LogDelay = time.Second // the plugin's default queue.max_coalescing_delay
	if s.Log != nil && s.Log.Flush > 0 {
		c.LogDelay = s.Log.Flush
	}
	return c
}

// logMetrics is configured in gateway.kong.log.
type logMetrics struct{ providers.NoSection }

func (logMetrics) Gateway() (name, origin string) { return "kong", "Kong's http-log plugin" }
func (logMetrics) PerRequest() bool               { return true }
