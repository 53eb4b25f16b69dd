package rollout

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStoreSaveIsAtomic(t *testing.T) {
	t.Parallel()
	s, err := OpenStore(StoreConfig{Root: t.TempDir(), Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	// A big state: a torn write would be visible to a concurrent reader.
	big := State{SchemaVersion: StateSchemaVersion, Service: "svc", Phase: Analyzing, Intervals: make([]Interval, 500)}
	if err := s.SaveState(&big); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			st := big
			st.Step = i
			if err := s.SaveState(&st); err != nil {
				t.Error(err)
				return
			}
		}
		close(stop)
	}()
	reads := 0
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		default:
		}
		st, err := s.LoadState()
		if err != nil {
			t.Fatalf("read %d saw a torn state: %v", reads, err)
		}
		if len(st.Intervals) != 500 {
			t.Fatalf("read %d: %d intervals", reads, len(st.Intervals))
		}
		reads++
	}
	wg.Wait()
	// No temp files are left behind.
	entries, _ := os.ReadDir(s.Dir())
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
}

func TestStoreLoadErrors(t *testing.T) {
	t.Parallel()
	s, _ := OpenStore(StoreConfig{Root: t.TempDir(), Service: "svc"})
	if _, err := s.LoadState(); !errors.Is(err, ErrNoState) {
		t.Fatalf("empty dir: %v", err)
	}
	for name, content := range map[string]string{
		"garbage":        "{",
		"future version": `{"schemaVersion": 3, "phase": "Pending"}`,
		"unknown phase":  `{"schemaVersion": 1, "phase": "Dancing"}`,
	} {
		os.WriteFile(filepath.Join(s.Dir(), "state.json"), []byte(content), 0o644)
		if _, err := s.LoadState(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestStoreLock(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	a, _ := OpenStore(StoreConfig{Root: root, Service: "svc"})
	b, _ := OpenStore(StoreConfig{Root: root, Service: "svc"})
	other, _ := OpenStore(StoreConfig{Root: root, Service: "other"})
	if held, _, err := b.Holder(); held || err != nil {
		t.Fatalf("Holder before lock: %v %v", held, err)
	}
	if err := a.Lock(); err != nil {
		t.Fatal(err)
	}
	err := b.Lock()
	var le *LockedError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &le) || le.PID != os.Getpid() {
		t.Fatalf("second lock: %v", err)
	}
	if held, pid, _ := b.Holder(); !held || pid != os.Getpid() {
		t.Errorf("Holder = %v %d", held, pid)
	}
	if err := other.Lock(); err != nil {
		t.Errorf("another service is not locked: %v", err)
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := b.Lock(); err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	b.Unlock()
	other.Unlock()
}

func TestStoreControlRequestsInOrder(t *testing.T) {
	t.Parallel()
	s, _ := OpenStore(StoreConfig{Root: t.TempDir(), Service: "svc"})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, a := range []Action{ActionPause, ActionResume, ActionAbort} {
		if _, err := s.PostControl(ControlRequest{Action: a, At: at.Add(time.Duration(i) * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PostControl(ControlRequest{Action: "dance"}); err == nil {
		t.Error("unknown action accepted")
	}
	os.WriteFile(filepath.Join(s.Dir(), "control", "junk.json"), []byte("{"), 0o644)
	reqs, err := s.PendingControls()
	if err != nil {
		t.Fatal(err)
	}
	var got []Action
	for _, r := range reqs {
		got = append(got, r.Action)
	}
	if strings.Join(actions(got), ",") != "pause,resume,abort" {
		t.Fatalf("requests %v", got)
	}
	if err := s.AckControl(reqs[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.AckControl(reqs[0].ID); err != nil {
		t.Errorf("second ack: %v", err)
	}
	reqs, _ = s.PendingControls()
	if len(reqs) != 2 {
		t.Errorf("%d requests after ack", len(reqs))
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "control", "junk.json")); err == nil {
		t.Error("unreadable request not removed")
	}
}

func actions(a []Action) []string {
	s := make([]string, len(a))
	for i, x := range a {
		s[i] = string(x)
	}
	return s
}

func TestEventsAppendAndTornLine(t *testing.T) {
	t.Parallel()
	s, _ := OpenStore(StoreConfig{Root: t.TempDir(), Service: "svc"})
	for i := 0; i < 3; i++ {
		if err := s.AppendEvent(&Event{V: 1, Type: EvTransition, Step: i}); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := os.OpenFile(s.EventsPath(), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"v":1,"type":"trans`) // a crash in the middle of a line
	f.Close()
	evs, err := s.ReadEvents()
	if err != nil || len(evs) != 3 || evs[2].Step != 2 {
		t.Fatalf("events %+v err %v", evs, err)
	}
	b, _ := json.Marshal(evs[0])
	if !strings.Contains(string(b), `"v":1`) {
		t.Errorf("event JSON %s", b)
	}
}

// FuzzDecodeState: state.json from disk (possibly edited or torn) never panics; an accepted state
// has the supported schema and a known phase, and survives a round trip.
func FuzzDecodeState(f *testing.F) {
	good, _ := json.Marshal(goldenState())
	f.Add(good)
	f.Add([]byte(`{"schemaVersion":1,"phase":"Paused","pause":{"kind":"user"}}`))
	f.Add([]byte(`{"schemaVersion":1,"phase":"Analyzing","score":null,"intervals":[{"score":null}]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := DecodeState(data)
		if err != nil {
			return
		}
		if st.SchemaVersion != StateSchemaVersion || !st.Phase.Valid() {
			t.Fatalf("accepted %+v", st)
		}
		again, err := json.Marshal(st)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeState(again); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}
