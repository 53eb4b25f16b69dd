package rollout

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// State directory layout (documented in README.md):
//
//	<root>/<service>/state.json    the rollout's State, rewritten atomically after every change
//	<root>/<service>/spec.yaml     the spec the rollout runs with (for resume and abort)
//	<root>/<service>/events.jsonl  one Event per line, appended
//	<root>/<service>/lock          flock(2)-locked by the process running the rollout; holds its pid
//	<root>/<service>/control/      requests from `canaryctl pause|resume|promote|abort`, one file each
const (
	stateFile   = "state.json"
	specFile    = "spec.yaml"
	eventsFile  = "events.jsonl"
	lockFile    = "lock"
	controlDir  = "control"
	maxStateLen = 64 << 20
)

// Sentinel errors of the state store.
var (
	// ErrNoState: the state directory holds no rollout for the service.
	ErrNoState = errors.New("no rollout state")
	// ErrLocked: another process runs the rollout of this service.
	ErrLocked = errors.New("rollout is locked by another process")
	// ErrCorruptState: the stored state cannot be read (truncated, edited, another schema).
	ErrCorruptState = errors.New("corrupt state")
)

// LockedError says which process holds the lock.
type LockedError struct {
	Service string
	PID     int
	Holder  string // user@host pid N, when the store knows it (etcd)
}

func (e *LockedError) Error() string {
	if e.Holder != "" {
		return fmt.Sprintf("rollout of %s is run by %s; use canaryctl status/pause/resume/promote/abort to act on it, or wait with run --resume --standby to take it over when that runner stops", e.Service, e.Holder)
	}
	if e.PID > 0 {
		return fmt.Sprintf("rollout of %s is run by process %d; use canaryctl status/pause/resume/promote/abort to act on it", e.Service, e.PID)
	}
	return fmt.Sprintf("rollout of %s is run by another process; use canaryctl status/pause/resume/promote/abort to act on it", e.Service)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// StoreConfig configures a Store.
type StoreConfig struct {
	Root    string // the state directory, e.g. .canaryctl
	Service string // the service name (a directory under Root)
}

// Store keeps one service's rollout state on disk.
type Store struct {
	dir     string
	service string
	lock    *os.File
}

// OpenStore opens (and creates) the state directory of a service.
func OpenStore(cfg StoreConfig) (*Store, error) {
	if cfg.Root == "" {
		return nil, errors.New("open state store: root directory is empty")
	}
	if !ValidServiceName(cfg.Service) {
		return nil, fmt.Errorf("open state store: %q is not a valid service name", cfg.Service)
	}
	dir := filepath.Join(cfg.Root, cfg.Service)
	if err := os.MkdirAll(filepath.Join(dir, controlDir), 0o755); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	return &Store{dir: dir, service: cfg.Service}, nil
}

// Dir is the service's state directory.
func (s *Store) Dir() string { return s.dir }

// Lock takes the exclusive lock of the service's rollout without waiting. It fails with a
// *LockedError (errors.Is ErrLocked) when another process holds it. The lock goes with the process,
// so a crashed run never leaves it behind.
func (s *Store) Lock() error {
	if s.lock != nil {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid := readPID(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return &LockedError{Service: s.service, PID: pid}
		}
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	s.lock = f
	return nil
}

// Unlock releases the lock (closing the file releases the flock).
func (s *Store) Unlock() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

// Holder reports whether a process holds the lock, and its pid when known.
func (s *Store) Holder() (held bool, pid int, err error) {
	if s.lock != nil {
		return true, os.Getpid(), nil
	}
	f, err := os.Open(filepath.Join(s.dir, lockFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("open lock file: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return true, readPID(f), nil
		}
		return false, 0, fmt.Errorf("probe lock: %w", err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, 0, nil
}

func readPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	return pid
}

// SaveState writes state.json atomically: temp file, fsync, rename, fsync of the directory.
func (s *Store) SaveState(st *State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := writeFileAtomic(s.dir, stateFile, append(data, '\n')); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// LoadState reads state.json; ErrNoState when there is none.
func (s *Store) LoadState() (*State, error) { return LoadStateFile(filepath.Join(s.dir, stateFile)) }

// LoadStateFile reads a state.json file.
func LoadStateFile(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoState
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	return DecodeState(data)
}

// DecodeState parses state JSON and checks its schema version.
func DecodeState(data []byte) (*State, error) {
	if len(data) > maxStateLen {
		return nil, fmt.Errorf("decode state: %w: larger than %d bytes", ErrCorruptState, maxStateLen)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("decode state: %w: %w", ErrCorruptState, err)
	}
	if st.SchemaVersion == previousSchemaVersion {
		st.SchemaVersion = StateSchemaVersion // read with the old names (legacy.go); written back as the current version
	}
	if st.SchemaVersion != StateSchemaVersion {
		return nil, fmt.Errorf("decode state: schema version %d is not supported (this build reads %d and %d)", st.SchemaVersion, previousSchemaVersion, StateSchemaVersion)
	}
	if !st.Phase.Valid() {
		return nil, fmt.Errorf("decode state: %w: unknown phase %q", ErrCorruptState, st.Phase)
	}
	return &st, nil
}

// SaveSpec keeps a copy of the spec beside the state, for resume and for abort without a running process.
func (s *Store) SaveSpec(raw []byte) error {
	if err := writeFileAtomic(s.dir, specFile, raw); err != nil {
		return fmt.Errorf("save spec: %w", err)
	}
	return nil
}

// SpecPath is where SaveSpec writes.
func (s *Store) SpecPath() string { return filepath.Join(s.dir, specFile) }

// EventsPath is the events.jsonl file.
func (s *Store) EventsPath() string { return filepath.Join(s.dir, eventsFile) }

// AppendEvent appends one event as a JSON line to events.jsonl.
func (s *Store) AppendEvent(ev *Event) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	f, err := os.OpenFile(s.EventsPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open events: %w", err)
	}
	_, err = f.Write(append(line, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	return nil
}

// ReadEvents reads every event of events.jsonl (a torn last line is skipped).
func (s *Store) ReadEvents() ([]Event, error) {
	f, err := os.Open(s.EventsPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open events: %w", err)
	}
	defer f.Close()
	var out []Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue
		}
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read events: %w", err)
	}
	return out, nil
}

// PostControl writes a control request atomically into control/; the running engine applies it within
// one tick. Requests are applied in the order they were posted.
func (s *Store) PostControl(req ControlRequest) (ControlRequest, error) {
	if !req.Action.Valid() {
		return req, fmt.Errorf("post control request: unknown action %q", req.Action)
	}
	if req.At.IsZero() {
		req.At = time.Now().UTC()
	}
	if req.ID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		req.ID = fmt.Sprintf("%020d-%s", req.At.UnixNano(), hex.EncodeToString(b[:]))
	}
	data, err := json.Marshal(req)
	if err != nil {
		return req, fmt.Errorf("encode control request: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(s.dir, controlDir), req.ID+".json", data); err != nil {
		return req, fmt.Errorf("post control request: %w", err)
	}
	return req, nil
}

// PendingControls lists the control requests not yet applied, oldest first. Unreadable files are
// removed (a request is always written atomically, so they are debris).
func (s *Store) PendingControls() ([]ControlRequest, error) {
	dir := filepath.Join(s.dir, controlDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list control requests: %w", err)
	}
	var out []ControlRequest
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		var req ControlRequest
		if json.Unmarshal(data, &req) != nil || !req.Action.Valid() {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		req.ID = strings.TrimSuffix(name, ".json")
		out = append(out, req)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// AckControl removes an applied control request.
func (s *Store) AckControl(id string) error {
	err := os.Remove(filepath.Join(s.dir, controlDir, id+".json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove control request: %w", err)
	}
	return nil
}

// writeFileAtomic writes dir/name so that readers see the old or the new content, never a mix, and
// the new content survives a crash once it returns.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = io.Copy(tmp, bytes.NewReader(data)); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
