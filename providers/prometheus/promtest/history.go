package promtest

import (
	"fmt"
	"net/http"
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
	addr := freeAddr(t)
	var out lockedBuffer
	cmd := exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+data, "--web.listen-address="+addr,
		"--log.level=warn", "--storage.tsdb.retention.time=30d")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", out.String())
		}
	})
	s := &Server{URL: "http://" + addr}
	if err := poll(60*time.Second, 100*time.Millisecond, func() (bool, error) {
		select {
		case <-done:
			return false, fmt.Errorf("prometheus exited early:\n%s", out.String())
		default:
		}
		resp, err := http.Get(s.URL + "/-/ready")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		t.Fatalf("prometheus at %s not ready: %v\n%s", s.URL, err, out.String())
	}
	return s
}
