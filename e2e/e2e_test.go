package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bin is the canaryctl binary built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "canaryctl-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "canaryctl")
	build := exec.Command("go", "build", "-o", bin, "../cmd/canaryctl")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build canaryctl:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
}

// result is a finished canaryctl process.
type result struct {
	code           int
	stdout, stderr string
}

// run runs canaryctl to completion.
func run(t *testing.T, timeout time.Duration, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) } // let it roll back
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("canaryctl %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Errorf("canaryctl %s: timed out after %s; stderr:\n%s", strings.Join(args, " "), timeout, errb.String())
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

func TestDemoRejectsBadFlags(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, args := range [][]string{
		{"demo", "--scenario", "flaky"},
		{"demo", "--rps", "0"},
		{"demo", "-o", "yaml"},
	} {
		t.Run(strings.Join(args[1:], " "), func(t *testing.T) {
			t.Parallel()
			r := run(t, 30*time.Second, nil, args...)
			if r.code != 2 || !strings.Contains(r.stderr, args[1]) {
				t.Errorf("exit %d, want 2 with an error naming %s; stderr:\n%s", r.code, args[1], r.stderr)
			}
		})
	}
}

func TestInvalidSpecExitsBeforeDeploying(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	marker := filepath.Join(dir, "deployed")
	spec := fmt.Sprintf(`version: 1
service: bad
stable: {addresses: ["http://127.0.0.1:1"]}
deploy:
  baseline: {type: exec, command: "touch %s", teardown: "true", addresses: ["http://127.0.0.1:2"]}
  canary: {type: exec, command: "touch %s"}
gateway: {type: builtin, listen: "127.0.0.1:0"}
steps:
  - {weight: 0, interval: 1m, duration: 5m}
`, marker, marker)
	path := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, time.Minute, nil, "run", "--spec", path, "--state-dir", filepath.Join(dir, "state"))
	if r.code != 2 {
		t.Fatalf("exit code %d, want 2; stderr:\n%s", r.code, r.stderr)
	}
	for _, field := range []string{"deploy.canary.teardown", "deploy.canary.addresses", "steps[0].weight"} {
		if !strings.Contains(r.stderr, field) {
			t.Errorf("stderr does not name %s:\n%s", field, r.stderr)
		}
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a deploy command ran for an invalid spec (%v)", err)
	}
}
