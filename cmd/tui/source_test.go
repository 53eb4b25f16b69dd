package tui

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/rollout"
)

func openStore(t *testing.T) *rollout.Store {
	t.Helper()
	s, err := rollout.OpenStore(rollout.StoreConfig{Root: t.TempDir(), Service: "checkout"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func next(t *testing.T, ch <-chan Snapshot) Snapshot {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot")
	}
	return Snapshot{}
}

// TestPollerReadsWhatChanged drives the poller's look directly against a real store: the first look
// reports everything, later ones only what changed; a torn last line waits for its end.
func TestPollerReadsWhatChanged(t *testing.T) {
	t.Parallel()
	store := openStore(t)
	p := &poller{store: store}
	snap, changed := p.look()
	if !changed || snap.State != nil || snap.Err != nil {
		t.Fatalf("empty directory: changed %v state %v err %v; want a first, empty snapshot (the screen waits)", changed, snap.State, snap.Err)
	}
	st := analyzingState()
	if err := store.SaveState(st); err != nil {
		t.Fatal(err)
	}
	for _, ev := range fixtureEvents(st)[:3] {
		if err := store.AppendEvent(&ev); err != nil {
			t.Fatal(err)
		}
	}
	snap, changed = p.look()
	if !changed || snap.State == nil || snap.State.Phase != rollout.Analyzing || snap.Err != nil || len(snap.Events) != 3 || snap.NewEvents != 3 {
		t.Fatalf("after writes: changed %v state %+v err %v events %d new %d", changed, snap.State, snap.Err, len(snap.Events), snap.NewEvents)
	}
	if snap, changed = p.look(); changed || snap.NewEvents != 0 {
		t.Fatalf("nothing written: changed %v new %d", changed, snap.NewEvents)
	}
	// A torn line (a writer mid-append) is not an event until its newline arrives.
	f, err := os.OpenFile(store.EventsPath(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(`{"v":1,"type":"error","runId":"run1","reason":"half`); err != nil {
		t.Fatal(err)
	}
	if snap, _ = p.look(); snap.NewEvents != 0 || len(snap.Events) != 3 {
		t.Fatalf("torn line: new %d events %d", snap.NewEvents, len(snap.Events))
	}
	if _, err := f.WriteString(` done"}` + "\n"); err != nil {
		t.Fatal(err)
	}
	snap, _ = p.look()
	if snap.NewEvents != 1 || snap.Events[3].Reason != "half done" {
		t.Fatalf("completed line: new %d events %+v", snap.NewEvents, snap.Events)
	}
	// A new rollout that starts events.jsonl over is read from its start.
	if err := os.WriteFile(store.EventsPath(), []byte(`{"v":1,"type":"started","runId":"run2"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, _ = p.look()
	if len(snap.Events) != 1 || snap.Events[0].RunID != "run2" {
		t.Fatalf("rewritten file: events %+v", snap.Events)
	}
}

func TestPollSendsSnapshotsUntilCancelled(t *testing.T) {
	t.Parallel()
	store := openStore(t)
	st := analyzingState()
	if err := store.SaveState(st); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ch := Poll(ctx, PollConfig{Store: store, Interval: 5 * time.Millisecond})
	if s := next(t, ch); s.State == nil || s.State.Service != "checkout" {
		t.Fatalf("first snapshot %+v", s)
	}
	st.Phase = rollout.Paused
	if err := store.SaveState(st); err != nil {
		t.Fatal(err)
	}
	for s := next(t, ch); s.State.Phase != rollout.Paused; s = next(t, ch) {
	}
	cancel()
	for range ch { // closed once ctx ends
	}
}

func TestFollowPrintsEventsAndReturnsTheEnd(t *testing.T) {
	t.Parallel()
	st := analyzingState()
	evs := fixtureEvents(st)
	ch := make(chan Snapshot, 3)
	ch <- Snapshot{State: st, Events: evs, NewEvents: len(evs)}
	end := *st
	end.Phase = rollout.RolledBack
	final := rollout.Event{V: 1, Time: at(30), Service: "checkout", RunID: st.RunID, Type: rollout.EvTransition, From: rollout.RollingBack, Phase: rollout.RolledBack, Reason: "all traffic on stable"}
	ch <- Snapshot{State: &end, Events: append(evs, final), NewEvents: 1}
	var out bytes.Buffer
	got, err := Follow(t.Context(), FollowConfig{Updates: ch, Out: &out})
	if err != nil || got == nil || got.Phase != rollout.RolledBack {
		t.Fatalf("Follow = %+v, %v", got, err)
	}
	text := out.String()
	for _, want := range []string{
		"10:00:21 checkout: run run1, Analyzing, step 2/3",
		"10:00:09 checkout: judged step 1 interval 2: score 80 marginal",
		"10:00:30 checkout: RollingBack → RolledBack: all traffic on stable",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "must not show") {
		t.Errorf("printed an event of another run:\n%s", text)
	}

	// Terminal state without its event yet: Follow waits out the grace period, not forever.
	ch2 := make(chan Snapshot, 1)
	ch2 <- Snapshot{State: &end}
	got, err = Follow(t.Context(), FollowConfig{Updates: ch2, Out: &out, Grace: 10 * time.Millisecond})
	if err != nil || got.Phase != rollout.RolledBack {
		t.Fatalf("grace: %+v %v", got, err)
	}
	// ctx ends first: the last state and ctx's error.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Follow(ctx, FollowConfig{Updates: make(chan Snapshot), Out: &out}); err == nil {
		t.Fatal("cancelled Follow returned no error")
	}
}

// TestPollerLockProbe: the lock is probed at most every holderEvery (the probe briefly blocks a run
// from taking the lock), and not at all when this process runs the rollout.
func TestPollerLockProbe(t *testing.T) {
	t.Parallel()
	store := openStore(t)
	if err := store.SaveState(analyzingState()); err != nil {
		t.Fatal(err)
	}
	self := &poller{store: store, self: true}
	if snap, _ := self.look(); !snap.Held || snap.PID != os.Getpid() {
		t.Fatalf("self: held %v pid %d", snap.Held, snap.PID)
	}
	clock := t0
	p := &poller{store: store, holderEvery: time.Second, now: func() time.Time { return clock }}
	if snap, _ := p.look(); snap.Held {
		t.Fatal("nobody holds the lock yet")
	}
	runner, err := rollout.OpenStore(rollout.StoreConfig{Root: filepath.Dir(filepath.Dir(store.EventsPath())), Service: "checkout"})
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Lock(); err != nil {
		t.Fatal(err)
	}
	defer runner.Unlock()
	clock = clock.Add(500 * time.Millisecond)
	if snap, _ := p.look(); snap.Held {
		t.Fatal("probed again before holderEvery")
	}
	clock = clock.Add(500 * time.Millisecond)
	if snap, changed := p.look(); !snap.Held || snap.PID != os.Getpid() || !changed {
		t.Fatalf("after holderEvery: held %v pid %d changed %v", snap.Held, snap.PID, changed)
	}
}
