package rollout

import (
	"slices"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
	// The provider types this package's specs use register themselves (providers.RegisterGateway,
	// providers.RegisterMetrics) when linked in, as canaryctl's commands link them.
	_ "github.com/canaryctl/canaryctl/providers/kong"
	_ "github.com/canaryctl/canaryctl/providers/prometheus"
)

// TestRegistry: the types this build knows, as the spec's errors list them.
func TestRegistry(t *testing.T) {
	t.Parallel()
	if got, want := providers.GatewayNames(), []string{"builtin", "kong"}; !slices.Equal(got, want) {
		t.Errorf("gateway types %v, want %v", got, want)
	}
	if got, want := providers.MetricsNames(), []string{"builtin", "kong-log", "prometheus"}; !slices.Equal(got, want) {
		t.Errorf("metrics types %v, want %v", got, want)
	}
}
