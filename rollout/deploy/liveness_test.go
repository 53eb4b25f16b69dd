package deploy

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// waitDead polls Alive (a state read; the watcher has no event to wait on from outside) until it
// reports the cohort dead, or fails after 15s.
func waitDead(t *testing.T, d *Deployer, c providers.Cohort) error {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if err := d.Alive(t.Context(), c); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s still alive after 15s", c)
	return nil
}

func TestLiveness(t *testing.T) {
	t.Parallel()

	t.Run("a process killed after it was ready", func(t *testing.T) {
		t.Parallel()
		d := newTest(t, Config{Baseline: helperTarget("serve"), Canary: helperTarget("serve")})
		if _, err := d.Deploy(t.Context(), providers.Canary); err != nil {
			t.Fatal(err)
		}
		if err := d.Alive(t.Context(), providers.Canary); err != nil {
			t.Fatalf("Alive right after Deploy: %v", err)
		}
		p := d.units[providers.Canary].procs[0]
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
		<-p.done
		err := d.Alive(t.Context(), providers.Canary) // the wait goroutine reported it before done closed
		if !errors.Is(err, ErrNotAlive) || !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("Alive after SIGKILL = %v, want ErrNotAlive and ErrExited naming the signal", err)
		}
		if err := d.Teardown(t.Context(), providers.Canary); err != nil {
			t.Fatal(err)
		}
		if err := d.Alive(t.Context(), providers.Canary); err == nil {
			t.Log("a torn-down cohort keeps its last liveness until it is deployed again")
		}
	})

	t.Run("a readiness probe failing three times in a row", func(t *testing.T) {
		t.Parallel()
		sick := filepath.Join(t.TempDir(), "sick")
		target := helperTarget("sickens")
		target.Env["SICK_FILE"] = sick
		target.Readiness = &Probe{Interval: 50 * time.Millisecond, FailureThreshold: 3}
		d := newTest(t, Config{Baseline: target, Canary: target})
		if _, err := d.Deploy(t.Context(), providers.Baseline); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sick, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		err := waitDead(t, d, providers.Baseline)
		if !errors.Is(err, ErrNotAlive) || !strings.Contains(err.Error(), "3 times in a row") || !strings.Contains(err.Error(), "503") {
			t.Fatalf("Alive = %v, want the probe's third failure", err)
		}
		if err := d.Teardown(t.Context(), providers.Baseline); err != nil {
			t.Fatal(err)
		}
		// a teardown does not count as a death, and a new deploy starts alive
		_ = os.Remove(sick)
		if _, err := d.Deploy(t.Context(), providers.Baseline); err != nil {
			t.Fatal(err)
		}
		if err := d.Alive(t.Context(), providers.Baseline); err != nil {
			t.Fatalf("Alive after a new deploy: %v", err)
		}
		if err := d.Teardown(t.Context(), providers.Baseline); err != nil {
			t.Fatal(err)
		}
		if err := d.Alive(t.Context(), providers.Baseline); err != nil {
			t.Fatalf("Alive after a clean teardown: %v", err)
		}
	})

	t.Run("an exec status command failing", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		flag := filepath.Join(dir, "down")
		target := Target{Type: Exec, Command: "true", Teardown: "true", Addresses: []string{"http://127.0.0.1:{{.Port}}"},
			Status: "test ! -e " + shellQuote(flag), StatusInterval: 20 * time.Millisecond}
		d := newTest(t, Config{Baseline: target, Canary: target})
		if _, err := d.Deploy(t.Context(), providers.Canary); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(flag, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		err := waitDead(t, d, providers.Canary)
		if !errors.Is(err, ErrNotAlive) || !strings.Contains(err.Error(), "status command failed 3 times") {
			t.Fatalf("Alive = %v, want the status command's third failure", err)
		}
		if err := d.Teardown(t.Context(), providers.Canary); err != nil {
			t.Fatal(err)
		}
	})
}

// TestListenFD: the instance serves on the socket canaryctl bound (fd 3, LISTEN_PID its own pid):
// the port is never free between its choice and the instance listening.
func TestListenFD(t *testing.T) {
	t.Parallel()
	target := helperTarget("serve")
	target.ListenFD = true
	target.Instances = 3
	d := newTest(t, Config{Baseline: target, Canary: target})
	addrs, err := d.Deploy(t.Context(), providers.Canary)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		port := strings.TrimPrefix(a, "http://127.0.0.1:")
		if got := get(t, a); got != "canary "+port+" fd3" {
			t.Errorf("GET %s = %q, want the instance serving on the passed fd 3 with LISTEN_PID its own", a, got)
		}
	}
	if err := d.Teardown(t.Context(), providers.Canary); err != nil {
		t.Fatal(err)
	}
}

// TestTeardownOrphanedGroup: an earlier run's instance died, its child lives on in the instance's
// process group; tearing the recorded deployment down stops that child too.
func TestTeardownOrphanedGroup(t *testing.T) {
	t.Parallel()
	logs := t.TempDir()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	target := helperTarget("child")
	target.Env["CHILD_PID_FILE"] = pidFile
	cfg := Config{Baseline: target, Canary: target}
	first, err := New(cfg, testOptions(t, logs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Deploy(t.Context(), providers.Canary); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(string(b))
	leader := first.units[providers.Canary].procs[0]
	leader.stopping.Store(true)
	_ = syscall.Kill(leader.pid, syscall.SIGKILL) // the leader only: the child stays in its group
	<-leader.done
	if !running(child) {
		t.Fatalf("grandchild %d died with its parent", child)
	}
	second, err := New(cfg, testOptions(t, logs))
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Teardown(t.Context(), providers.Canary); err != nil {
		t.Fatal(err)
	}
	assertGone(t, child)
}
