package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/proxy"
	"github.com/canaryctl/canaryctl/rollout"
)

// killMidStep starts a run of w's spec (with a testLeaseTTL lease) as a child process, SIGKILLs it once the
// first step is judged and returns the spec path and the run's state.
func killMidStep(t *testing.T, w *rtWorld) (string, *rollout.State) {
	t.Helper()
	spec := w.spec(t, "  - {weight: 10, duration: 30s, interval: 1s, warmup: 0s}\n")
	raw, _ := os.ReadFile(spec)
	if err := os.WriteFile(spec, append(raw, []byte("state: {leaseTTL: "+testLeaseTTL.String()+"}\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	child, out := rtChild(t, w.vars(), "run", "--spec", spec, "--state-dir", w.stateDir())
	st := w.waitPhase(t, rollout.Analyzing, 0)
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	if s, _ := w.px.Split(t.Context()); s == (providers.Split{}) {
		t.Fatalf("no split on the canary after the crash (child output %s)", out)
	}
	return spec, st
}

// waitLeaseExpired waits until the proxy's owner lease has run out.
func waitLeaseExpired(t *testing.T, w *rtWorld) {
	t.Helper()
	cl, err := proxy.NewClient(proxy.ClientConfig{BaseURL: w.admin, Token: rtToken})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		l, err := cl.Owner(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if l == nil || !time.Now().Before(l.Expires) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease of %s never expired", l.RunID)
		}
		time.Sleep(time.Until(l.Expires) + 10*time.Millisecond) // the lease's own expiry, read from the proxy
	}
}

// TestRecovery: what a person can do when the state is gone, unreadable, or ended Failed.
func TestRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end rollouts take seconds")
	}
	t.Parallel()
	t.Run("abort --spec with an empty state dir", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		spec, st := killMidStep(t, w)
		empty := t.TempDir()
		// The crashed runner's lease is still live: refused, naming it.
		code, _, serr := rtRun(t.Context(), w.vars(), "abort", "--spec", spec, "--state-dir", empty)
		if code == ExitOK || !strings.Contains(serr, "owned at the gateway by run "+st.RunID) {
			t.Fatalf("abort --spec during the crashed runner's lease: %d %s", code, serr)
		}
		waitLeaseExpired(t, w)
		code, out, serr := rtRun(t.Context(), w.vars(), "abort", "--spec", spec, "--state-dir", empty)
		if code != ExitOK || !strings.Contains(out, "RolledBack") {
			t.Fatalf("abort --spec: %d %q %q", code, out, serr)
		}
		if s, _ := w.px.Split(t.Context()); s != (providers.Split{}) {
			t.Fatalf("split after abort --spec: %v", s)
		}
		if ps := w.pxState(t); strings.Contains(ps, w.canary.URL) || strings.Contains(ps, w.baseline.URL) {
			t.Fatalf("canary or baseline still routed: %s", ps)
		}
	})
	t.Run("corrupt state names the recovery command", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		spec, _ := killMidStep(t, w)
		path := filepath.Join(w.stateDir(), "shop", "state.json")
		raw, _ := os.ReadFile(path)
		if err := os.WriteFile(path, raw[:len(raw)/2], 0o644); err != nil { // a torn write
			t.Fatal(err)
		}
		for _, args := range [][]string{{"status", "shop"}, {"abort", "shop"}, {"run", "--resume", "--service", "shop"}} {
			code, _, serr := rtRun(t.Context(), w.vars(), append(args, "--state-dir", w.stateDir())...)
			want := "canaryctl abort shop --spec " + filepath.Join(w.stateDir(), "shop", "spec.yaml")
			if code == ExitOK || !strings.Contains(serr, want) || strings.Count(strings.TrimSpace(serr), "\n") != 0 {
				t.Errorf("%v: exit %d, stderr %q; want one line with %q", args, code, serr, want)
			}
		}
		waitLeaseExpired(t, w)
		code, out, serr := rtRun(t.Context(), w.vars(), "abort", "shop", "--spec", spec, "--state-dir", w.stateDir())
		if code != ExitOK || !strings.Contains(out, "RolledBack") {
			t.Fatalf("abort --spec over a corrupt state: %d %q %q", code, out, serr)
		}
		if s, _ := w.px.Split(t.Context()); s != (providers.Split{}) {
			t.Fatalf("split after abort --spec: %v", s)
		}
	})
	for _, then := range []string{"abort", "resume"} {
		t.Run(then+" a Failed rollout", func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			_, st := killMidStep(t, w)
			// As if the rollback had failed every attempt (gateway unreachable): Failed, split on the canary.
			st.Phase, st.Reason, st.FinishedAt = rollout.Failed, "rollback failed 10 times: admin API unreachable", time.Now()
			b, _ := json.Marshal(st)
			if err := os.WriteFile(filepath.Join(w.stateDir(), "shop", "state.json"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"abort", "shop"}
			if then == "resume" {
				args = []string{"run", "--resume", "--service", "shop"}
			}
			code, out, serr := rtRun(t.Context(), w.vars(), append(args, "--state-dir", w.stateDir())...)
			if then == "abort" && (code != ExitOK || !strings.Contains(out, "RolledBack")) || then == "resume" && code != ExitFail {
				t.Fatalf("%s of a Failed rollout: %d %q %q", then, code, out, serr)
			}
			if s, _ := w.px.Split(t.Context()); s != (providers.Split{}) {
				t.Fatalf("split after %s: %v", then, s)
			}
			got, _ := rollout.LoadStateFile(filepath.Join(w.stateDir(), "shop", "state.json"))
			if got == nil || got.Phase != rollout.RolledBack {
				t.Fatalf("phase after %s: %+v", then, got)
			}
		})
	}
}

// TestAbortSpecKong: a runner SIGKILLed mid-step against Kong leaves its canary and baseline targets;
// abort --spec from an empty state directory (another machine) deletes them once the runner's lease
// expired, and removes the ownership marker.
func TestAbortSpecKong(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end rollouts take seconds")
	}
	t.Parallel()
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	k, spec := kongWorld(t, ctx, &wg)
	raw, _ := os.ReadFile(spec)
	raw = bytes.Replace(raw, []byte("duration: 3s}"), []byte("duration: 30s}"), 1)
	if err := os.WriteFile(spec, append(raw, []byte("state: {leaseTTL: "+testLeaseTTL.String()+"}\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	child, out := rtChild(t, nil, "run", "--spec", spec, "--state-dir", dir)
	waitStateIn(t, dir, "web", rollout.Analyzing)
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	targets := func() []string {
		var page struct {
			Data []struct {
				Target string   `json:"target"`
				Weight int      `json:"weight"`
				Tags   []string `json:"tags"`
			} `json:"data"`
		}
		resp, err := http.Get(k.AdminURL() + "/upstreams/web-up/targets")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
			t.Fatal(err)
		}
		var ts []string
		for _, d := range page.Data {
			ts = append(ts, fmt.Sprintf("%s w%d %v", d.Target, d.Weight, d.Tags))
		}
		return ts
	}
	if ts := targets(); len(ts) != 3 {
		t.Fatalf("after the crash want stable, baseline and canary targets, got %v (runner output %s)", ts, out)
	}
	empty := t.TempDir()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, sout, serr := rtRun(t.Context(), nil, "abort", "--spec", spec, "--state-dir", empty)
		if code == ExitOK && strings.Contains(sout, "RolledBack") {
			break
		}
		if !strings.Contains(serr, "owned at the gateway") || time.Now().After(deadline) {
			t.Fatalf("abort --spec: %d %q %q", code, sout, serr)
		}
		time.Sleep(200 * time.Millisecond) // the crashed runner's lease (testLeaseTTL) is running out
	}
	if ts := targets(); len(ts) != 1 || strings.Contains(ts[0], "canaryctl") {
		t.Fatalf("targets after abort --spec: %v, want the stable one only", ts)
	}
	resp, err := http.Get(k.AdminURL() + "/upstreams/canaryctl-owner.web")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("ownership marker after abort --spec: %d, want 404", resp.StatusCode)
	}
}
