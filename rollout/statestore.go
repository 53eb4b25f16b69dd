package rollout

import (
	"os"
	"time"
)

// StateStore keeps one service's rollout: its state, events, control requests and spec, and the lock
// that makes one process its runner. Store (a local directory, the default) and EtcdStore (shared by
// every machine that reaches the etcd cluster) implement it.
type StateStore interface {
	// Lock makes this process the rollout's runner without waiting: *LockedError (errors.Is
	// ErrLocked) when another holds it.
	Lock() error
	Unlock() error
	// Holder reports whether a process holds the lock, and its pid when known.
	Holder() (held bool, pid int, err error)
	LoadState() (*State, error)
	// SaveState writes the state; with a shared store only while this process holds the lock
	// (providers.ErrLeaseLost otherwise).
	SaveState(st *State) error
	SaveSpec(raw []byte) error
	LoadSpec() ([]byte, error)
	// SpecPath says where the saved spec is, for messages.
	SpecPath() string
	AppendEvent(ev *Event) error
	ReadEvents() ([]Event, error)
	PostControl(req ControlRequest) (ControlRequest, error)
	PendingControls() ([]ControlRequest, error)
	AckControl(id string) error
	// Dir is a local directory for the deployments' logs and state.
	Dir() string
}

// Fence is implemented by what a runner holds a lease on (Keeper at the gateway, EtcdStore): Err is
// nil while the lease is held; Deadline is when it runs out unless renewed (zero: no lease).
type Fence interface {
	Err() error
	Deadline() time.Time
}

var _ StateStore = (*Store)(nil)

// LoadSpec reads the spec saved beside the state.
func (s *Store) LoadSpec() ([]byte, error) { return os.ReadFile(s.SpecPath()) }
