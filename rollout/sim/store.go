package sim

import (
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/canaryctl/canaryctl/rollout"
)

// memStore is the state store of a simulated rollout: the rollout.StateStore contract kept in
// memory. A simulated rollout's state is read by nobody but the simulator, and the file store's
// writes (state.json with fsync several times a virtual minute, the control directory listed at
// every look) were a fifth of the simulator's CPU. Control requests are kept like the file store's:
// posted, listed in order, acknowledged (removed).
type memStore struct {
	mu       sync.Mutex
	service  string
	locked   bool
	state    *rollout.State
	spec     []byte
	events   []rollout.Event
	controls []rollout.ControlRequest
	nextID   int
}

var _ rollout.StateStore = (*memStore)(nil)

func newMemStore(service string) *memStore { return &memStore{service: service} }

func (s *memStore) Lock() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked {
		// One engine per simulated rollout: a second Lock is a simulator bug, reported as the file
		// store reports another runner.
		return &rollout.LockedError{Service: s.service, PID: os.Getpid()}
	}
	s.locked = true
	return nil
}

func (s *memStore) Unlock() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.locked = false
	return nil
}

func (s *memStore) Holder() (bool, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked {
		return true, os.Getpid(), nil
	}
	return false, 0, nil
}

func (s *memStore) LoadState() (*rollout.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == nil {
		return nil, rollout.ErrNoState
	}
	st := *s.state
	st.Intervals = slices.Clone(st.Intervals)
	return &st, nil
}

// SaveState keeps a copy of the state. The engine hands over a copy whose Intervals it only ever
// appends to, so the slice is shared, not cloned (cloning it at every save would cost what the
// file store's encoding did).
func (s *memStore) SaveState(st *rollout.State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *st
	c.Intervals = c.Intervals[:len(c.Intervals):len(c.Intervals)]
	s.state = &c
	return nil
}

func (s *memStore) SaveSpec(raw []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spec = slices.Clone(raw)
	return nil
}

func (s *memStore) LoadSpec() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.spec == nil {
		return nil, fmt.Errorf("load spec: %w", os.ErrNotExist)
	}
	return slices.Clone(s.spec), nil
}

func (s *memStore) SpecPath() string { return "memory:" + s.service + "/spec.yaml" }

func (s *memStore) AppendEvent(ev *rollout.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, *ev)
	return nil
}

func (s *memStore) ReadEvents() ([]rollout.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events), nil
}

func (s *memStore) PostControl(req rollout.ControlRequest) (rollout.ControlRequest, error) {
	if !req.Action.Valid() {
		return req, fmt.Errorf("post control request: unknown action %q", req.Action)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.ID == "" {
		s.nextID++
		req.ID = fmt.Sprintf("%08d", s.nextID)
	}
	s.controls = append(s.controls, req)
	return req, nil
}

func (s *memStore) PendingControls() ([]rollout.ControlRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.controls) == 0 {
		return nil, nil
	}
	return slices.Clone(s.controls), nil
}

func (s *memStore) AckControl(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.controls = slices.DeleteFunc(s.controls, func(r rollout.ControlRequest) bool { return r.ID == id })
	return nil
}

// Dir is empty: a simulated deployer writes no logs.
func (s *memStore) Dir() string { return "" }
