package cmd

import (
	"maps"
	"slices"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
)

// TestWiringCoversTheRegistry: every gateway and metrics type the spec accepts can be opened by
// run, and run opens no type the spec would refuse.
func TestWiringCoversTheRegistry(t *testing.T) {
	t.Parallel()
	if got, want := slices.Sorted(maps.Keys(gatewayOpeners)), providers.GatewayNames(); !slices.Equal(got, want) {
		t.Errorf("gateway openers %v, registered gateway types %v", got, want)
	}
	if got, want := slices.Sorted(maps.Keys(metricsOpeners)), providers.MetricsNames(); !slices.Equal(got, want) {
		t.Errorf("metrics openers %v, registered metrics types %v", got, want)
	}
}
