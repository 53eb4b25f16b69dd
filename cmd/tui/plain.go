package tui

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/canaryctl/canaryctl/rollout"
)

// FollowConfig configures Follow.
type FollowConfig struct {
	Updates <-chan Snapshot
	Out     io.Writer
	// Grace: after the state turns terminal, how long to wait for the final events (default 2s).
	Grace time.Duration
}

// Follow prints plain progress lines (stdout not a terminal): one line per new event of the
// rollout's current run, each with its time; a judgement's line ends with the cohorts' requests,
// P50, P99 and 5xx rate when the metrics source gives them. It returns the final state when the rollout has ended,
// or the last state seen and ctx's error when ctx ends first (nil state: none was ever read).
func Follow(ctx context.Context, cfg FollowConfig) (*rollout.State, error) {
	if cfg.Grace <= 0 {
		cfg.Grace = 2 * time.Second
	}
	var (
		last  *rollout.State
		grace <-chan time.Time
		runID string
	)
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-grace:
			return last, nil
		case snap, ok := <-cfg.Updates:
			if !ok {
				return last, ctx.Err()
			}
			if snap.State != nil {
				if last == nil || snap.State.RunID != runID {
					runID = snap.State.RunID
					fmt.Fprintf(cfg.Out, "%s %s: run %s, %s, step %d/%d, %s\n", hms(snap.State.UpdatedAt), snap.State.Service,
						snap.State.RunID, snap.State.Phase, snap.State.Step+1, snap.State.Steps, snap.State.Split)
				}
				last = snap.State
			}
			ended := false
			for _, ev := range snap.Events[len(snap.Events)-snap.NewEvents:] {
				if ev.RunID != runID {
					continue
				}
				line := FormatEvent(ev)
				if iv := ev.Interval; ev.Type == rollout.EvInterval && iv != nil && len(iv.Cohorts) > 0 {
					line += " | " + controlName(iv) + "|canary " + cohortPairs(iv.Cohorts)
				}
				fmt.Fprintf(cfg.Out, "%s %s: %s\n", hms(ev.Time), ev.Service, line)
				if last != nil && ev.Type == rollout.EvTransition && ev.Phase == last.Phase && ev.Phase.Terminal() {
					ended = true
				}
			}
			if last != nil && last.Phase.Terminal() {
				if ended || eventSeen(snap.Events, last) {
					return last, nil
				}
				if grace == nil {
					grace = time.After(cfg.Grace)
				}
			}
		}
	}
}

// eventSeen reports whether the transition to st's terminal phase is among evs.
func eventSeen(evs []rollout.Event, st *rollout.State) bool {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].RunID == st.RunID && evs[i].Type == rollout.EvTransition && evs[i].Phase == st.Phase {
			return true
		}
	}
	return false
}
