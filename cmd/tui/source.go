package tui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/canaryctl/canaryctl/rollout"
)

// MaxEvents is how many of the latest events a Snapshot keeps.
const MaxEvents = 200

// Snapshot is what the monitor knows about a rollout at one moment, read from its state directory.
type Snapshot struct {
	State *rollout.State
	// Events are the latest events (at most MaxEvents), oldest first; NewEvents is how many of them
	// arrived since the previous snapshot.
	Events    []rollout.Event
	NewEvents int
	// Held: a process holds the rollout's lock (PID when known).
	Held bool
	PID  int
	// Err is the last read error (the state file may be mid-write on some filesystems); the previous
	// State is kept.
	Err error
}

// Store is the part of the state store the poller reads; *rollout.Store satisfies it.
type Store interface {
	LoadState() (*rollout.State, error)
	EventsPath() string
	Holder() (held bool, pid int, err error)
}

// PollConfig configures Poll.
type PollConfig struct {
	Store Store
	// Interval between two looks at state.json and events.jsonl (default 200ms).
	Interval time.Duration
	// HolderEvery: how often to probe the rollout's lock for the process running it (default 1s).
	// The probe takes a shared flock for an instant, during which a starting run cannot take the lock,
	// so it is done seldom.
	HolderEvery time.Duration
	// Self: this process runs the rollout (run --tui); the lock is not probed.
	Self bool
}

// Poll watches a rollout's state directory from any process: every Interval it looks at state.json
// and events.jsonl (by size and modification time) and at the lock, and sends a Snapshot when
// something changed. The channel holds the latest snapshot only (an unread one is replaced) and is
// closed when ctx ends. Polling the files works the same for a rollout run by this process
// (run --tui) and by another one (watch), which is why the monitor has no in-process hook.
func Poll(ctx context.Context, cfg PollConfig) <-chan Snapshot {
	if cfg.Interval <= 0 {
		cfg.Interval = 200 * time.Millisecond
	}
	out := make(chan Snapshot, 1)
	go func() {
		defer close(out)
		if cfg.HolderEvery <= 0 {
			cfg.HolderEvery = time.Second
		}
		p := &poller{store: cfg.Store, holderEvery: cfg.HolderEvery, self: cfg.Self, now: time.Now}
		t := time.NewTicker(cfg.Interval)
		defer t.Stop()
		for {
			if snap, changed := p.look(); changed {
				select { // latest wins: drop an unread older snapshot
				case <-out:
				default:
				}
				out <- snap
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return out
}

type fileStamp struct {
	size int64
	mod  time.Time
}

type poller struct {
	store   Store
	stateAt fileStamp
	eventAt fileStamp
	offset  int64  // bytes of events.jsonl consumed
	partial []byte // a torn last line, completed by the next read
	last    Snapshot
	started bool

	holderEvery time.Duration
	self        bool
	now         func() time.Time
	probedAt    time.Time
}

func stamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{size: fi.Size(), mod: fi.ModTime()}
}

// look reads what changed since the previous look.
func (p *poller) look() (Snapshot, bool) {
	snap := p.last
	snap.NewEvents = 0
	changed := !p.started
	p.started = true

	statePath := filepath.Join(filepath.Dir(p.store.EventsPath()), "state.json")
	if s := stamp(statePath); s != p.stateAt {
		st, err := p.store.LoadState()
		if err != nil {
			snap.Err = fmt.Errorf("read state: %w", err)
		} else {
			snap.State, snap.Err = st, nil
			p.stateAt = s
		}
		changed = true
	}
	if s := stamp(p.store.EventsPath()); s != p.eventAt {
		if s.size < p.offset { // a new rollout rewrote the file
			p.offset, p.partial, snap.Events = 0, nil, nil
		}
		evs, err := p.readEvents()
		if err != nil {
			snap.Err = err
		} else {
			p.eventAt = s
		}
		if len(evs) > 0 {
			snap.Events = append(append([]rollout.Event(nil), snap.Events...), evs...)
			if n := len(snap.Events); n > MaxEvents {
				snap.Events = snap.Events[n-MaxEvents:]
			}
			snap.NewEvents = min(len(evs), MaxEvents)
			changed = true
		}
	}
	switch {
	case p.self:
		if !snap.Held {
			snap.Held, snap.PID = true, os.Getpid()
			changed = true
		}
	case p.now == nil || p.now().Sub(p.probedAt) >= p.holderEvery:
		if p.now != nil {
			p.probedAt = p.now()
		}
		if held, pid, err := p.store.Holder(); err == nil && (held != snap.Held || pid != snap.PID) {
			snap.Held, snap.PID = held, pid
			changed = true
		}
	}
	p.last = snap
	return snap, changed
}

// readEvents reads the complete lines appended to events.jsonl since the last read.
func (p *poller) readEvents() ([]rollout.Event, error) {
	f, err := os.Open(p.store.EventsPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open events: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(p.offset, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	p.offset += int64(len(data))
	data = append(p.partial, data...)
	var evs []rollout.Event
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		var ev rollout.Event
		if json.Unmarshal(data[:i], &ev) == nil {
			evs = append(evs, ev)
		}
		data = data[i+1:]
	}
	p.partial = append([]byte(nil), data...)
	return evs, nil
}
