package cmd

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/rollout"
	"github.com/canaryctl/canaryctl/rollout/etcdtest"
)

// testLeaseTTL is the lease (in etcd, at the gateway) of the runners these tests start. Not etcd's
// minimum of 2 s: a runner confirms its leases every third of the TTL and gives up after a TTL
// without an answer, and in make ci e2e on a loaded machine a runner (a -race child) went 2 s
// without one: the standby that had just taken over lost its etcd lock in Promoting ("the etcd
// session ended"). 6 s leaves 4 s of slack; a takeover or an expiry waits for it once.
const testLeaseTTL = 6 * time.Second

// etcdWorld is an external proxy world whose rollouts keep their state in a real etcd.
type etcdWorld struct {
	*rtWorld
	etcd *etcdtest.Server
	obs  *rollout.EtcdStore // reads the rollout as any machine would
}

func newEtcdWorld(t *testing.T) *etcdWorld {
	t.Helper()
	srv := etcdtest.Start(t)
	w := &etcdWorld{rtWorld: newWorld(t), etcd: srv}
	obs, err := rollout.OpenEtcdStore(rollout.EtcdStoreConfig{Endpoints: []string{srv.Endpoint()}, Prefix: "/ci", Service: "shop", LocalDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { obs.Close() })
	w.obs = obs
	return w
}

// vars: the proxy token and the etcd store, as a second machine without the spec has them.
func (w *etcdWorld) vars() map[string]string {
	return map[string]string{"CANARYCTL_PROXY_TOKEN": rtToken, "CANARYCTL_ETCD_ENDPOINTS": w.etcd.Endpoint(), "CANARYCTL_ETCD_PREFIX": "/ci"}
}

// etcdSpec writes the world's spec with the etcd store and steps.
func (w *etcdWorld) etcdSpec(t *testing.T, steps string, ttl time.Duration) string {
	t.Helper()
	spec := w.spec(t, steps)
	raw, _ := os.ReadFile(spec)
	// Errors only: the pipeline under kill -9 is tested here, not latency sensitivity.
	s := strings.Replace(string(raw), "    - {name: p99-latency, kind: latency, quantile: 0.99, mustHaveData: true, effectSize: {allowedIncrease: 10}}\n", "", 1)
	// Deployments whose teardown takes 3 s hold Promoting and RollingBack long enough to be killed in.
	s = strings.ReplaceAll(s, "{type: static, ", `{type: exec, command: "true", teardown: "sleep 3", `)
	s += fmt.Sprintf("state: {type: etcd, endpoints: [%q], prefix: /ci, leaseTTL: %s}\n", w.etcd.Endpoint(), ttl)
	if err := os.WriteFile(spec, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return spec
}

// waitState polls etcd until ok(state) holds.
func (w *etcdWorld) waitState(t *testing.T, what string, ok func(*rollout.State) bool) *rollout.State {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for {
		st, err := w.obs.LoadState()
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd state never %s (last %+v, %v)", what, st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEtcdPausedRunnerCannotWrite: a runner SIGSTOPped past its lease is taken over; after SIGCONT
// it writes no state and makes no gateway call: it stops with "lease lost", and the new runner
// finishes undisturbed.
func TestEtcdPausedRunnerCannotWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end rollouts take seconds")
	}
	etcdtest.Binary(t)
	t.Parallel()
	w := newEtcdWorld(t)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go w.load(ctx, 100, 8000)
	spec := w.etcdSpec(t, "  - {weight: 10, duration: 5s, interval: 1s, warmup: 0s}\n  - {weight: 50, duration: 5s, interval: 1s, warmup: 0s}\n", testLeaseTTL)
	a, aout := rtChild(t, map[string]string{"CANARYCTL_PROXY_TOKEN": rtToken}, "run", "--spec", spec, "--state-dir", t.TempDir())
	w.waitState(t, "analyzing", func(s *rollout.State) bool { return s.Phase == rollout.Analyzing })
	// Every state written from now on, in order, by pid.
	var mu sync.Mutex
	var writers []int
	wctx, stopWatch := context.WithCancel(t.Context())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_ = w.obs.WatchState(wctx, func(st *rollout.State) { mu.Lock(); writers = append(writers, st.PID); mu.Unlock() })
	}()
	b, bout := rtChild(t, w.vars(), "run", "--resume", "--service", "shop", "--standby", "--state-dir", t.TempDir())
	if err := a.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, "written by the standby", func(s *rollout.State) bool { return s.PID == b.Process.Pid })
	if err := a.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	aerr := a.Wait()
	if aerr == nil || !strings.Contains(aout.String(), "lease lost") {
		t.Fatalf("the resumed runner: %v, want an exit saying lease lost:\n%s", aerr, aout)
	}
	for _, bad := range []string{"rolling back", "RolledBack", "lease_lost"} {
		if strings.Contains(aout.String(), bad) {
			t.Errorf("the resumed runner's output has %q: it acted after losing the lease:\n%s", bad, aout)
		}
	}
	if err := b.Wait(); err != nil {
		t.Fatalf("the new runner: %v\n%s", err, bout)
	}
	stopWatch()
	<-watched
	mu.Lock()
	took := slices.Index(writers, b.Process.Pid)
	if took < 0 || slices.Contains(writers[took:], a.Process.Pid) {
		t.Errorf("state writers in order %v: the paused runner %d wrote after the takeover by %d", writers, a.Process.Pid, b.Process.Pid)
	}
	mu.Unlock()
	evs, err := w.obs.ReadEvents()
	if err != nil {
		t.Fatal(err)
	}
	resumed := false
	for _, ev := range evs {
		if ev.Type == rollout.EvResumed {
			resumed = true
		}
		if resumed && ev.Type == rollout.EvTransition && ev.Phase == rollout.RollingBack {
			t.Errorf("a rollback after the takeover: %+v", ev)
		}
	}
	if !strings.Contains(w.pxState(t), w.canary.URL) {
		t.Errorf("canary not promoted: %s", w.pxState(t))
	}
}

// TestEtcdRestartMidRollout: etcd restarts while a step is judged; the runner keeps its lock (the
// lease survives a restart shorter than its TTL), loses no write, and promotes.
func TestEtcdRestartMidRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end rollouts take seconds")
	}
	etcdtest.Binary(t)
	t.Parallel()
	w := newEtcdWorld(t)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go w.load(ctx, 100, 8000)
	// A single-member etcd restarts in about 1.5 s here (start, then an election timeout): a lease
	// of 6 s outlives it, so the runner keeps its lock.
	spec := w.etcdSpec(t, "  - {weight: 10, duration: 5s, interval: 1s, warmup: 0s}\n  - {weight: 50, duration: 5s, interval: 1s, warmup: 0s}\n", 6*time.Second)
	a, aout := rtChild(t, map[string]string{"CANARYCTL_PROXY_TOKEN": rtToken}, "run", "--spec", spec, "--state-dir", t.TempDir())
	st := w.waitState(t, "analyzing", func(s *rollout.State) bool { return s.Phase == rollout.Analyzing && len(s.Intervals) > 0 })
	w.etcd.Restart()
	if err := a.Wait(); err != nil {
		t.Fatalf("runner across an etcd restart: %v\n%s", err, aout)
	}
	final, err := w.obs.LoadState()
	if err != nil || final.Phase != rollout.Promoted || final.RunID != st.RunID || len(final.Intervals) < len(st.Intervals) {
		t.Fatalf("final state %+v %v", final, err)
	}
}
