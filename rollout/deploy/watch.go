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
	port := u.port
	go func() {
		defer close(done)
		fails := map[string]int{}
		statusFails := 0
		nextStatus := time.Now().Add(every)
		tick := time.NewTicker(min(pr.Interval, every))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, p := range procs {
				if p.done == nil && !p.stopping.Load() && !p.same() {
					u.setDead(fmt.Errorf("%w: %w: process %d (started by an earlier run) is gone", ErrNotAlive, ErrExited, p.pid))
					return
				}
			}
			if probe {
				for _, a := range addrs {
					err := u.probeOnce(ctx, a, pr)
					if ctx.Err() != nil {
						return
					}
					if err == nil {
						fails[a] = 0
						continue
					}
					if fails[a]++; fails[a] >= threshold {
						u.setDead(fmt.Errorf("%w: readiness probe failed %d times in a row: %v", ErrNotAlive, fails[a], err))
						return
					}
				}
			}
			if status && !time.Now().Before(nextStatus) {
				nextStatus = time.Now().Add(every)
				sctx, scancel := context.WithTimeout(ctx, u.timeout())
				err := u.runShell(sctx, "status", u.target.Status, u.vars(port, 0))
				scancel()
				if ctx.Err() != nil {
					return
				}
				if err == nil {
					statusFails = 0
				} else if statusFails++; statusFails >= threshold {
					u.setDead(fmt.Errorf("%w: status command failed %d times in a row: %v", ErrNotAlive, statusFails, err))
					return
				}
			}
		}
	}()
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
