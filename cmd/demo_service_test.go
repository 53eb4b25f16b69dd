package cmd

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemoServiceAddrFile: `demo-service --port 0 --addr-file F` binds a port the system picks and
// writes it to F once listening, so a caller never hands it a port that another listener may take
// first; the address in F answers.
func TestDemoServiceAddrFile(t *testing.T) {
	t.Parallel()
	addrFile := filepath.Join(t.TempDir(), "stable.addr")
	ctx, stop := context.WithCancel(t.Context())
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, _, stderr := rtRun(ctx, map[string]string{"PORT": "1"}, "demo-service", "--port", "0", "--addr-file", addrFile)
		done <- result{code, stderr}
	}()
	var addr string
	deadline := time.Now().Add(10 * time.Second)
	for addr == "" {
		select {
		case r := <-done:
			t.Fatalf("demo-service exited %d before writing --addr-file:\n%s", r.code, r.stderr)
		default:
		}
		b, err := os.ReadFile(addrFile)
		switch {
		case err == nil:
			addr = strings.TrimSpace(string(b))
		case !os.IsNotExist(err):
			t.Fatal(err)
		case time.Now().After(deadline):
			t.Fatal("no --addr-file after 10 s")
		default:
			time.Sleep(10 * time.Millisecond) // polling a file the service writes once
		}
	}
	if strings.HasSuffix(addr, ":0") || strings.HasSuffix(addr, ":1") {
		t.Fatalf("--addr-file holds %q, want the port the system picked (not 0, not $PORT)", addr)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("the address in --addr-file does not answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz at %s: %d", addr, resp.StatusCode)
	}
	stop()
	if r := <-done; r.code != ExitOK {
		t.Fatalf("exit %d after SIGTERM's equivalent, want 0:\n%s", r.code, r.stderr)
	}
}

// TestDemoServicePortErrors: a port out of range names the flag and the fix.
func TestDemoServicePortErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{name: "no port at all", args: nil, want: "--port 0 is out of range; set --port (or PORT) to 1..65535, or --port 0 for a free port"},
		{name: "negative", args: []string{"--port", "-1"}, want: "--port -1 is out of range"},
		{name: "too large", args: []string{"--port", "65536"}, want: "--port 65536 is out of range"},
		{name: "PORT not a number", vars: map[string]string{"PORT": "x"}, want: `PORT="x" is not a port number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := rtRun(t.Context(), tc.vars, append([]string{"demo-service"}, tc.args...)...)
			if code != ExitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want %d with %q in stderr:\n%s", code, ExitUsage, tc.want, stderr)
			}
		})
	}
}
