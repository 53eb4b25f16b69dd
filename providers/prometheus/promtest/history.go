package promtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// StartWithHistory runs a Prometheus server whose TSDB holds the given OpenMetrics text (ending in
// "# EOF"), written into blocks with promtool tsdb create-blocks-from openmetrics: hours of
// synthetic scrapes in seconds, for tests that need many rollout steps of data. The samples should
// lie within the last few days (the server keeps 30 days). It scrapes nothing.
func StartWithHistory(t testing.TB, openMetrics []byte) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	tool := filepath.Join(filepath.Dir(bin), "promtool")
	if _, err := os.Stat(tool); err != nil {
		if tool, err = exec.LookPath("promtool"); err != nil {
			t.Fatalf("promtool not found beside %s or on PATH (it ships with prometheus): %v\n%s", bin, err, InstallHint)
		}
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	in := filepath.Join(dir, "history.om")
	if err := os.WriteFile(in, openMetrics, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "tsdb", "create-blocks-from", "openmetrics", in, data).CombinedOutput(); err != nil {
		t.Fatalf("promtool create-blocks-from openmetrics: %v\n%s", err, out)
	}
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte("global:\n  scrape_interval: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServer(t, bin, conf, data, "30d", 60*time.Second)
}
