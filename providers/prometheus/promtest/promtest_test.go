package promtest

import (
	"strings"
	"testing"
)

// A missing binary is an error that says how to install it (the integration tests fail with it).
func TestMissingBinarySaysHowToInstall(t *testing.T) {
	t.Setenv("PROMETHEUS_BIN", "/nonexistent/prometheus")
	_, err := Binary()
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y prometheus") {
		t.Fatalf("err = %v, want the install command", err)
	}
}
