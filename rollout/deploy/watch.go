package deploy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// ErrNotAlive: a deployment that was ready is not any more (its process exited, its readiness probe
// or its status command failed several times in a row).
var ErrNotAlive = errors.New("deployment not alive")

// Alive reports whether cohort c is still alive after Deploy returned: nil while it is (or when it
// is not deployed), an error wrapping ErrNotAlive (and ErrExited for a process that exited)
// otherwise. It only reads what the cohort's watcher found, so it is cheap to ask often.
func (d *Deployer) Alive(_ context.Context, c providers.Cohort) error {
	u, ok := d.units[c]
	if !ok {
		return fmt.Errorf("alive %s: %w", c, ErrNoTarget)
	}
	u.live.mu.Lock()
	defer u.live.mu.Unlock()
	return u.live.dead
}

// liveness is what a unit's watcher found, guarded by its own mutex (unit.mu is held for the whole
// of a deploy or teardown).
type liveness struct {
	mu   sync.Mutex
	dead error
	stop func() // ends the watcher and waits for it; nil when none runs
}

func (u *unit) setDead(err error) {
	u.live.mu.Lock()
	defer u.live.mu.Unlock()
	if u.live.dead == nil {
		u.live.dead = err
		u.log().Warn("deployment is not alive", "err", err)
	}
}

func (u *unit) resetLiveness() {
	u.live.mu.Lock()
	defer u.live.mu.Unlock()
	u.live.dead = nil
}

// startWatch watches a ready deployment until endWatch: adopted processes (an exit of our own
// children is reported by their wait goroutine), the readiness probe (process targets always, others
// when they have one) and an exec target's status command. FailureThreshold failures in a row
// mark it not alive.
func (u *unit) startWatch(addrs []string, procs []*proc) {
	probe := u.target.Type == Process || u.target.Readiness != nil
	status := u.target.Type == Exec && u.target.Status != ""
	adopted := false
	for _, p := range procs {
		adopted = adopted || p.done == nil
	}
	if !probe && !status && !adopted {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	u.live.mu.Lock()
	u.live.stop = func() { cancel(); <-done }
	u.live.mu.Unlock()
	pr := u.probe()
	threshold := pr.FailureThreshold
	if threshold <= 0 {
		threshold = DefaultFailureThreshold
	}
	every := u.target.StatusInterval
	if every <= 0 {
		every = DefaultStatusInterval
	}
	w := &watcher{u: u, addrs: addrs, procs: procs, pr: pr, threshold: threshold, every: every, port: u.port,
		probe: probe, status: status, fails: map[string]int{}, nextStatus: time.Now().Add(every)}
	go func() {
		defer close(done)
		tick := time.NewTicker(min(pr.Interval, every))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if w.procsGone() || w.probeFailed(ctx) || w.statusFailed(ctx) {
				return
			}
		}
	}()
}

// watcher is the state of a unit's watch between ticks.
type watcher struct {
	u             *unit
	addrs         []string
	procs         []*proc
	pr            Probe
	threshold     int
	every         time.Duration
	port          int
	probe, status bool
	fails         map[string]int
	statusFails   int
	nextStatus    time.Time
}

// procsGone marks the unit dead when a process an earlier run started is gone (or ctx ended).
func (w *watcher) procsGone() bool {
	for _, p := range w.procs {
		if p.done == nil && !p.stopping.Load() && !p.same() {
			w.u.setDead(fmt.Errorf("%w: %w: process %d (started by an earlier run) is gone", ErrNotAlive, ErrExited, p.pid))
			return true
		}
	}
	return false
}

// probeFailed probes every address; threshold failures in a row mark the unit dead. It reports
// whether the watch ends.
func (w *watcher) probeFailed(ctx context.Context) bool {
	if !w.probe {
		return false
	}
	for _, a := range w.addrs {
		err := w.u.probeOnce(ctx, a, w.pr)
		if ctx.Err() != nil {
			return true
		}
		if err == nil {
			w.fails[a] = 0
			continue
		}
		if w.fails[a]++; w.fails[a] >= w.threshold {
			w.u.setDead(fmt.Errorf("%w: readiness probe failed %d times in a row: %v", ErrNotAlive, w.fails[a], err))
			return true
		}
	}
	return false
}

// statusFailed runs the status command when due; threshold failures in a row mark the unit dead.
// It reports whether the watch ends.
func (w *watcher) statusFailed(ctx context.Context) bool {
	if !w.status || time.Now().Before(w.nextStatus) {
		return false
	}
	w.nextStatus = time.Now().Add(w.every)
	sctx, scancel := context.WithTimeout(ctx, w.u.timeout())
	err := w.u.runShell(sctx, "status", w.u.target.Status, w.u.vars(w.port, 0))
	scancel()
	if ctx.Err() != nil {
		return true
	}
	if err == nil {
		w.statusFails = 0
		return false
	}
	if w.statusFails++; w.statusFails >= w.threshold {
		w.u.setDead(fmt.Errorf("%w: status command failed %d times in a row: %v", ErrNotAlive, w.statusFails, err))
		return true
	}
	return false
}

// endWatch stops the watcher, if one runs, and waits for it.
func (u *unit) endWatch() {
	u.live.mu.Lock()
	stop := u.live.stop
	u.live.stop = nil
	u.live.mu.Unlock()
	if stop != nil {
		stop()
	}
}
