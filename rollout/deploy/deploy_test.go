package deploy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// newTest returns a Deployer whose files go to a temporary directory and whose .Executable is this
// test binary (see TestMain).
func newTest(t *testing.T, cfg Config) *Deployer {
	t.Helper()
	d, err := New(cfg, testOptions(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func testOptions(t *testing.T, dir string) Options {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Options{Service: "shop", LogDir: dir, Executable: exe}
}

func helperTarget(mode string) Target {
	return Target{
		Type:        Process,
		Command:     "{{.Executable}}",
		Args:        []string{"--cohort={{.Cohort}}", "--port={{.Port}}", "--instance={{.Instance}}"},
		Env:         map[string]string{"DEPLOY_TEST_HELPER": mode},
		Readiness:   &Probe{Interval: 20 * time.Millisecond},
		Timeout:     10 * time.Second,
		GracePeriod: 2 * time.Second,
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// assertGone fails unless pid has exited (a zombie left to an init that does not reap counts as gone).
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if running(pid) {
		t.Errorf("pid %d is still running", pid)
	}
}

func TestStatic(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if hits.Add(1) < 3 { // ready on the third probe
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	tests := []struct {
		name    string
		target  Target
		wantErr error
	}{
		{name: "no probe", target: Target{Type: Static, Addresses: []string{"http://127.0.0.1:1"}}},
		{name: "probe passes", target: Target{Type: Static, Addresses: []string{srv.URL},
			Readiness: &Probe{Path: "/healthz", Status: 204, Interval: 10 * time.Millisecond}}},
		{name: "probe never passes", target: Target{Type: Static, Addresses: []string{srv.URL}, Timeout: 200 * time.Millisecond,
			Readiness: &Probe{Path: "/nope", Interval: 10 * time.Millisecond}}, wantErr: ErrNotReady},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newTest(t, Config{Baseline: tc.target, Canary: tc.target})
			addrs, err := d.Deploy(t.Context(), providers.Canary)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Deploy error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "last probe") || !strings.Contains(err.Error(), "404") {
					t.Errorf("error %q does not explain the last probe", err)
				}
				return
			}
			if strings.Join(addrs, ",") != strings.Join(tc.target.Addresses, ",") {
				t.Errorf("addresses = %v, want %v", addrs, tc.target.Addresses)
			}
			if err := d.Teardown(t.Context(), providers.Canary); err != nil {
				t.Errorf("Teardown: %v", err)
			}
		})
	}
}

func TestStableHasNoTarget(t *testing.T) {
	t.Parallel()
	static := Target{Type: Static, Addresses: []string{"http://127.0.0.1:1"}}
	d := newTest(t, Config{Baseline: static, Canary: static})
	if _, err := d.Deploy(t.Context(), providers.Stable); !errors.Is(err, ErrNoTarget) {
		t.Errorf("Deploy(stable) error = %v, want ErrNoTarget", err)
	}
	if err := d.Teardown(t.Context(), providers.Stable); !errors.Is(err, ErrNoTarget) {
		t.Errorf("Teardown(stable) error = %v, want ErrNoTarget", err)
	}
}

func TestNewRejectsInvalid(t *testing.T) {
	t.Parallel()
	_, err := New(Config{Canary: Target{Type: Exec}}, Options{LogDir: t.TempDir()})
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.HasPrefix(ce.Field, "deploy.") {
		t.Fatalf("New error = %v, want a *ConfigError", err)
	}
}

func TestExec(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	ready := &Probe{Interval: 10 * time.Millisecond}

	t.Run("deploy and teardown", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		marker := filepath.Join(dir, "deployed-{{.Cohort}}")
		target := Target{
			Type:      Exec,
			Version:   "v2",
			Image:     "shop:it's v2",
			Vars:      map[string]string{"ns": "prod"},
			Command:   "echo {{.Cohort}} {{.Version}} {{quote .Image}} {{.Vars.ns}} {{.Port}} $PORT $CANARYCTL_SERVICE > " + marker,
			Teardown:  "rm " + marker,
			Addresses: []string{srv.URL + "/{{.Cohort}}/{{.Port}}"},
			Port:      4242,
			Readiness: ready,
		}
		d := newTest(t, Config{Baseline: target, Canary: target})
		addrs, err := d.Deploy(t.Context(), providers.Canary)
		if err != nil {
			t.Fatal(err)
		}
		if want := srv.URL + "/canary/4242"; len(addrs) != 1 || addrs[0] != want {
			t.Errorf("addresses = %v, want [%s]", addrs, want)
		}
		b, err := os.ReadFile(filepath.Join(dir, "deployed-canary"))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(b), "canary v2 shop:it's v2 prod 4242 4242 shop\n"; got != want {
			t.Errorf("deploy command wrote %q, want %q", got, want)
		}
		if again, err := d.Deploy(t.Context(), providers.Canary); err != nil || again[0] != addrs[0] {
			t.Errorf("second Deploy = %v, %v; want the same addresses", again, err)
		}
		if err := d.Teardown(t.Context(), providers.Canary); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "deployed-canary")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("teardown command did not run: %v", err)
		}
		// Idempotent: nothing is deployed any more, so the teardown command (rm, which would now
		// fail) is not run again.
		if err := d.Teardown(t.Context(), providers.Canary); err != nil {
			t.Errorf("second Teardown: %v", err)
		}
	})

	t.Run("failed deploy is torn down", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		torn := filepath.Join(dir, "torn")
		target := Target{Type: Exec, Command: "echo pulling image; echo 'no such image' >&2; exit 7",
			Teardown: "touch " + torn, Addresses: []string{srv.URL}}
		d := newTest(t, Config{Baseline: target, Canary: target})
		_, err := d.Deploy(t.Context(), providers.Baseline)
		if err == nil || !strings.Contains(err.Error(), "exit status 7") || !strings.Contains(err.Error(), "no such image") {
			t.Fatalf("Deploy error = %v, want exit status 7 with the output", err)
		}
		if _, err := os.Stat(torn); err != nil {
			t.Errorf("teardown was not attempted after a failed deploy: %v", err)
		}
		log, _ := os.ReadFile(filepath.Join(d.LogDir(), "shop-baseline-exec.log"))
		if !strings.Contains(string(log), "pulling image") || !strings.Contains(string(log), "teardown") {
			t.Errorf("exec log misses the output:\n%s", log)
		}
	})

	t.Run("timeout kills the command", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		torn := filepath.Join(dir, "torn")
		target := Target{Type: Exec, Command: "sleep 30", Teardown: "touch " + torn, Addresses: []string{srv.URL},
			Timeout: 300 * time.Millisecond, GracePeriod: 200 * time.Millisecond}
		d := newTest(t, Config{Baseline: target, Canary: target})
		start := time.Now()
		_, err := d.Deploy(t.Context(), providers.Canary)
		if !errors.Is(err, ErrNotReady) {
			t.Fatalf("Deploy error = %v, want ErrNotReady", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Deploy took %s after a 300ms timeout", took)
		}
		if _, err := os.Stat(torn); err != nil {
			t.Errorf("teardown was not attempted after a timeout: %v", err)
		}
	})

	t.Run("teardown by a later run", func(t *testing.T) {
		t.Parallel()
		dir, logs := t.TempDir(), t.TempDir()
		out := filepath.Join(dir, "teardown-port")
		target := Target{Type: Exec, Command: "true", Teardown: "echo {{.Port}} > " + out, Addresses: []string{srv.URL}}
		cfg := Config{Baseline: target, Canary: target}
		first, err := New(cfg, testOptions(t, logs))
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := first.Deploy(t.Context(), providers.Canary)
		if err != nil {
			t.Fatal(err)
		}
		// A new Deployer over the same directories, as after a crash, tears down with the same port.
		second, err := New(cfg, testOptions(t, logs))
		if err != nil {
			t.Fatal(err)
		}
		if err := second.Teardown(t.Context(), providers.Canary); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		port := first.units[providers.Canary].port
		if strings.TrimSpace(string(b)) != strconv.Itoa(port) || port == 0 {
			t.Errorf("later teardown saw port %q, want %d (addresses %v)", b, port, addrs)
		}
	})
}

func TestProcess(t *testing.T) {
	t.Parallel()

	t.Run("two instances, logs, teardown", func(t *testing.T) {
		t.Parallel()
		target := helperTarget("serve")
		target.Instances = 2
		d := newTest(t, Config{Baseline: target, Canary: target})
		addrs, err := d.Deploy(t.Context(), providers.Canary)
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) != 2 || addrs[0] == addrs[1] {
			t.Fatalf("addresses = %v, want two distinct", addrs)
		}
		for _, a := range addrs {
			if !strings.HasPrefix(a, "http://127.0.0.1:") {
				t.Errorf("address %q is not on loopback", a)
			}
			port := strings.TrimPrefix(a, "http://127.0.0.1:")
			if got := get(t, a); got != "canary "+port {
				t.Errorf("GET %s = %q, want the cohort and PORT from the environment", a, got)
			}
		}
		procs := d.units[providers.Canary].procs
		if err := d.Teardown(t.Context(), providers.Canary); err != nil {
			t.Fatal(err)
		}
		for i, p := range procs {
			assertGone(t, p.pid)
			log, err := os.ReadFile(filepath.Join(d.LogDir(), "shop-canary-"+strconv.Itoa(i)+".log"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(log), "--instance="+strconv.Itoa(i)) || !strings.Contains(string(log), "SIGTERM: shutting down") {
				t.Errorf("log of instance %d:\n%s", i, log)
			}
		}
		if err := d.Teardown(t.Context(), providers.Canary); err != nil {
			t.Errorf("second Teardown: %v", err)
		}
	})

	t.Run("SIGKILL after the grace period", func(t *testing.T) {
		t.Parallel()
		target := helperTarget("ignore-term")
		target.GracePeriod = 300 * time.Millisecond
		d := newTest(t, Config{Baseline: target, Canary: target})
		if _, err := d.Deploy(t.Context(), providers.Baseline); err != nil {
			t.Fatal(err)
		}
		pid := d.units[providers.Baseline].procs[0].pid
		start := time.Now()
		if err := d.Teardown(t.Context(), providers.Baseline); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
			t.Errorf("teardown took %s, want the 300ms grace period and then SIGKILL", took)
		}
		assertGone(t, pid)
	})

	t.Run("grandchildren are stopped too", func(t *testing.T) {
		t.Parallel()
		pidFile := filepath.Join(t.TempDir(), "child.pid")
		target := helperTarget("child")
		target.Env["CHILD_PID_FILE"] = pidFile
		d := newTest(t, Config{Baseline: target, Canary: target})
		if _, err := d.Deploy(t.Context(), providers.Canary); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		child, _ := strconv.Atoi(string(b))
		if !running(child) {
			t.Fatalf("grandchild %d is not running before teardown", child)
		}
		if err := d.Teardown(t.Context(), providers.Canary); err != nil {
			t.Fatal(err)
		}
		assertGone(t, child)
	})

	t.Run("exit before ready", func(t *testing.T) {
		t.Parallel()
		d := newTest(t, Config{Baseline: helperTarget("exit"), Canary: helperTarget("exit")})
		start := time.Now()
		_, err := d.Deploy(t.Context(), providers.Canary)
		if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "exit status 3") {
			t.Fatalf("Deploy error = %v, want ErrExited with the log tail", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Deploy took %s to notice the exit", took)
		}
		if _, err := os.Stat(d.units[providers.Canary].recordPath()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("record left behind after a failed deploy: %v", err)
		}
	})

	t.Run("never ready", func(t *testing.T) {
		t.Parallel()
		target := helperTarget("never-ready")
		target.Timeout = 3 * time.Second // long enough for the helper to listen on a busy machine
		d := newTest(t, Config{Baseline: target, Canary: target})
		_, err := d.Deploy(t.Context(), providers.Canary)
		if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "status 503") {
			t.Fatalf("Deploy error = %v, want ErrNotReady with the last probe", err)
		}
		if n := len(d.units[providers.Canary].procs); n != 0 {
			t.Errorf("%d processes remembered after a failed deploy", n)
		}
	})

	t.Run("a later run adopts live processes", func(t *testing.T) {
		t.Parallel()
		logs := t.TempDir()
		cfg := Config{Baseline: helperTarget("serve"), Canary: helperTarget("serve")}
		first, err := New(cfg, testOptions(t, logs))
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := first.Deploy(t.Context(), providers.Canary)
		if err != nil {
			t.Fatal(err)
		}
		pid := first.units[providers.Canary].procs[0].pid
		t.Cleanup(func() { _ = first.Teardown(context.Background(), providers.Canary) })

		second, err := New(cfg, testOptions(t, logs))
		if err != nil {
			t.Fatal(err)
		}
		again, err := second.Deploy(t.Context(), providers.Canary)
		if err != nil {
			t.Fatal(err)
		}
		if again[0] != addrs[0] || second.units[providers.Canary].procs[0].pid != pid {
			t.Errorf("second run deployed %v (pid %d), want to adopt %v (pid %d)", again, second.units[providers.Canary].procs[0].pid, addrs, pid)
		}
		if err := second.Teardown(t.Context(), providers.Canary); err != nil {
			t.Fatal(err)
		}
		// Not our child: the first Deployer still holds it and reaps it.
		select {
		case <-first.units[providers.Canary].procs[0].done:
		case <-time.After(5 * time.Second):
			t.Errorf("adopted pid %d still running after teardown", pid)
		}
	})

	t.Run("a later run replaces dead processes", func(t *testing.T) {
		t.Parallel()
		logs := t.TempDir()
		cfg := Config{Baseline: helperTarget("serve"), Canary: helperTarget("serve")}
		first, err := New(cfg, testOptions(t, logs))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := first.Deploy(t.Context(), providers.Baseline); err != nil {
			t.Fatal(err)
		}
		old := first.units[providers.Baseline].procs[0]
		// Stop the process behind the record's back, as if the machine had rebooted.
		_ = signalGroup(old.pid, sigKill)
		<-old.done
		second, err := New(cfg, testOptions(t, logs))
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := second.Deploy(t.Context(), providers.Baseline)
		if err != nil {
			t.Fatal(err)
		}
		if p := second.units[providers.Baseline].procs[0]; p.pid == old.pid || p.done == nil {
			t.Errorf("second run kept dead pid %d instead of starting a new process", old.pid)
		}
		if got := get(t, addrs[0]); !strings.HasPrefix(got, "baseline ") {
			t.Errorf("GET = %q", got)
		}
		if err := second.Teardown(t.Context(), providers.Baseline); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("cancelled deploy leaves nothing running", func(t *testing.T) {
		t.Parallel()
		target := helperTarget("never-ready")
		d := newTest(t, Config{Baseline: target, Canary: target})
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, err := d.Deploy(ctx, providers.Canary)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Deploy error = %v, want the context's error", err)
		}
		rec, _ := d.units[providers.Canary].readRecord()
		if rec != nil {
			t.Errorf("record left: %+v", rec)
		}
	})
}
