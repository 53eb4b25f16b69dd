package rollout

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout/etcdtest"
)

// openEtcd opens a store with the production lease TTL: nothing in TestEtcdStore waits for a lease to
// run out (a takeover revokes it), and an etcd restart must fit in it — with etcd's 2 s minimum, a
// restart and leader election on a loaded machine took longer, and the surviving runner's write
// failed with "lease lost".
func openEtcd(t *testing.T, endpoint, service string) *EtcdStore {
	t.Helper()
	s, err := OpenEtcdStore(EtcdStoreConfig{Endpoints: []string{endpoint}, Prefix: "/test", LeaseTTL: DefaultLeaseTTL,
		Service: service, LocalDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestEtcdStore: two stores of one service (two machines): one runner at a time, the other sees
// its holder, posts control requests the runner learns through its watch, and waits for their
// acknowledgement; a runner whose lease was revoked can write nothing more and the other takes over.
func TestEtcdStore(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	a, b := openEtcd(t, srv.Endpoint(), "shop"), openEtcd(t, srv.Endpoint(), "shop")
	if _, err := a.LoadState(); !errors.Is(err, ErrNoState) {
		t.Fatalf("empty store: %v, want ErrNoState", err)
	}
	if err := a.SaveState(&State{}); err == nil {
		t.Fatal("SaveState without the lock succeeded")
	}
	if err := a.Lock(); err != nil {
		t.Fatal(err)
	}
	var le *LockedError
	if err := b.Lock(); !errors.As(err, &le) || le.Holder == "" {
		t.Fatalf("second Lock: %v, want a LockedError naming the holder", err)
	}
	if held, pid, err := b.Holder(); err != nil || !held || pid == 0 {
		t.Fatalf("Holder from the other machine: %v %d %v", held, pid, err)
	}
	st := &State{SchemaVersion: StateSchemaVersion, Service: "shop", RunID: "r1", Phase: Analyzing, Intervals: []Interval{}}
	if err := a.SaveState(st); err != nil {
		t.Fatal(err)
	}
	if err := a.SaveSpec([]byte("service: shop\n")); err != nil {
		t.Fatal(err)
	}
	if err := a.AppendEvent(&Event{Type: EvStarted, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if got, err := b.LoadState(); err != nil || got.Phase != Analyzing {
		t.Fatalf("state read from the other machine: %+v %v", got, err)
	}
	if raw, err := b.LoadSpec(); err != nil || string(raw) != "service: shop\n" {
		t.Fatalf("spec read from the other machine: %q %v", raw, err)
	}
	if evs, err := b.ReadEvents(); err != nil || len(evs) != 1 || evs[0].Type != EvStarted {
		t.Fatalf("events read from the other machine: %+v %v", evs, err)
	}
	// Control: b posts, a's watch delivers, a acknowledges, b's watch returns.
	req, err := b.PostControl(ControlRequest{Action: ActionPause, By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		reqs, err := a.PendingControls()
		if err != nil {
			t.Fatal(err)
		}
		if len(reqs) == 1 && reqs[0].ID == req.ID && reqs[0].Action == ActionPause {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the runner never saw the request: %+v", reqs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	waited := make(chan error, 1)
	go func() { waited <- b.WaitControl(ctx, req.ID) }()
	if err := a.AckControl(req.ID); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("WaitControl: %v", err)
	}
	// The runner's lease is revoked (as when it expires): it cannot write, its fence says so, and the
	// other machine takes the lock.
	a.mu.Lock()
	lease := a.sess.Lease()
	a.mu.Unlock()
	if _, err := b.cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if err := a.SaveState(st); !errors.Is(err, providers.ErrLeaseLost) {
		t.Fatalf("write after the lease was revoked: %v, want ErrLeaseLost", err)
	}
	if err := a.Err(); !errors.Is(err, providers.ErrLeaseLost) {
		t.Fatalf("fence after the lease was revoked: %v", err)
	}
	t.Log("revoked")
	if err := b.LockWait(ctx); err != nil {
		t.Fatalf("takeover: %v", err)
	}
	st.RunID = "r1-b"
	if err := b.SaveState(st); err != nil {
		t.Fatal(err)
	}
	if err := a.AppendEvent(&Event{Type: EvError}); !errors.Is(err, providers.ErrLeaseLost) {
		t.Fatalf("old runner's event after takeover: %v", err)
	}
	t.Log("taken over")
	// etcd restarts: the lock and the lease survive, writes go on.
	srv.Restart()
	st.Phase = Progressing
	if err := b.SaveState(st); err != nil {
		t.Fatalf("write after an etcd restart: %v\n%s", err, srv.Log())
	}
	if got, err := a.LoadState(); err != nil || got.RunID != "r1-b" || got.Phase != Progressing {
		t.Fatalf("state after the restart: %+v %v", got, err)
	}
	if err := b.Err(); err != nil {
		t.Fatalf("fence after the restart: %v", err)
	}
	if err := b.Unlock(); err != nil {
		t.Fatal(err)
	}
	if held, _, _ := a.Holder(); held {
		t.Fatal("still held after Unlock")
	}
}
