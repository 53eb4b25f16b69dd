package rollout

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/canaryctl/canaryctl/providers"
)

// Keys of a rollout in etcd, under <prefix>/<service>/ (documented in README.md):
//
//	state             the State (JSON), written only in a transaction conditioned on holding the lock
//	spec              the spec the rollout runs with
//	events/<id>       one Event each (JSON), ids ordered by time
//	control/<id>      control requests from any machine; deleted (acknowledged) by the runner
//	lock/<lease>      the concurrency.Mutex of the runner's session
//	owner             who holds the lock (host, pid, user), attached to the session's lease
const (
	etcdState   = "state"
	etcdSpec    = "spec"
	etcdEvents  = "events/"
	etcdControl = "control/"
	etcdLock    = "lock"
	etcdOwner   = "owner"
	// DefaultEtcdPrefix is the key prefix of the etcd store.
	DefaultEtcdPrefix = "/canaryctl"
)

// EtcdStoreConfig configures an EtcdStore.
type EtcdStoreConfig struct {
	Endpoints []string // e.g. https://etcd-0:2379; unix:///path/sock also works
	Prefix    string   // default DefaultEtcdPrefix
	TLS       *tls.Config
	Username  string
	Password  string
	// LeaseTTL of the runner's session: a runner that dies or is cut off loses the rollout after
	// this long, and another takes it over (default DefaultLeaseTTL; at least 2s, etcd's minimum).
	LeaseTTL time.Duration
	Service  string
	// LocalDir is the local directory for the deployments' logs and state (Dir).
	LocalDir    string
	DialTimeout time.Duration // default 5s
	Logger      *slog.Logger
}

// EtcdStore keeps a rollout in etcd, so that any machine that reaches the cluster can watch,
// control, resume or take it over. The lock is a concurrency.Mutex on a session whose lease the
// runner keeps alive; every write is a transaction conditioned on still owning the mutex (fencing),
// and Err reports, on the monotonic clock, when the lease may have run out.
type EtcdStore struct {
	cfg  EtcdStoreConfig
	cli  *clientv3.Client
	base string
	log  *slog.Logger

	mu         sync.Mutex
	sess       *concurrency.Session
	mx         *concurrency.Mutex
	validUntil time.Time
	lost       error
	lostCh     chan struct{} // closed when lost is set
	stop       chan struct{}
	done       chan struct{}

	ctrlMu  sync.Mutex
	ctrl    map[string]ControlRequest // pending requests, kept by a watch while locked
	ctrlOK  bool                      // the cache is current (else PendingControls reads etcd)
	unwatch context.CancelFunc
}

var (
	_ StateStore = (*EtcdStore)(nil)
	_ Fence      = (*EtcdStore)(nil)
)

// OpenEtcdStore connects to etcd (lazily: the first call fails if the cluster is unreachable).
func OpenEtcdStore(cfg EtcdStoreConfig) (*EtcdStore, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("open etcd store: no endpoints; set state.endpoints or CANARYCTL_ETCD_ENDPOINTS")
	}
	if !ValidServiceName(cfg.Service) {
		return nil, fmt.Errorf("open etcd store: %q is not a valid service name", cfg.Service)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultEtcdPrefix
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.LeaseTTL < 2*time.Second {
		return nil, fmt.Errorf("open etcd store: leaseTTL %s is below etcd's minimum of 2s", cfg.LeaseTTL)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LocalDir != "" {
		if err := os.MkdirAll(cfg.LocalDir, 0o755); err != nil {
			return nil, fmt.Errorf("open etcd store: local directory: %w", err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: cfg.Endpoints, TLS: cfg.TLS, Username: cfg.Username, Password: cfg.Password,
		DialTimeout: cfg.DialTimeout, Logger: zap.NewNop(),
		// Reconnect within a second of a restarted member (gRPC's default backs off up to 2 min,
		// longer than any lease).
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("open etcd store: %w", err)
	}
	return &EtcdStore{cfg: cfg, cli: cli, base: strings.TrimRight(cfg.Prefix, "/") + "/" + cfg.Service + "/",
		log: cfg.Logger.With("service", cfg.Service)}, nil
}

// Close releases the lock (if held) and the connection.
func (s *EtcdStore) Close() error {
	_ = s.Unlock()
	return s.cli.Close()
}

func (s *EtcdStore) key(k string) string { return s.base + k }

func (s *EtcdStore) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.cfg.DialTimeout)
}

// Lock takes the rollout's mutex without waiting.
func (s *EtcdStore) Lock() error { return s.lock(context.Background(), false) }

// LockWait waits until the mutex is free (a standby runner), or ctx ends.
func (s *EtcdStore) LockWait(ctx context.Context) error { return s.lock(ctx, true) }

func (s *EtcdStore) lock(ctx context.Context, wait bool) error {
	s.mu.Lock()
	held := s.mx != nil
	s.mu.Unlock()
	if held {
		return nil
	}
	ttl := int((s.cfg.LeaseTTL + time.Second - 1) / time.Second)
	sent := time.Now()
	gctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	grant, err := s.cli.Grant(gctx, int64(ttl))
	cancel()
	if err != nil {
		return fmt.Errorf("etcd: grant lease: %w", err)
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithLease(grant.ID))
	if err != nil {
		return fmt.Errorf("etcd: start session: %w", err)
	}
	mx := concurrency.NewMutex(sess, s.key(etcdLock))
	if wait {
		err = mx.Lock(ctx)
		sent = time.Now() // the lease was kept alive while waiting; count from now
	} else {
		lctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		err = mx.TryLock(lctx)
		cancel()
	}
	if err != nil {
		_ = sess.Close()
		if errors.Is(err, concurrency.ErrLocked) {
			_, pid, herr := s.Holder()
			le := &LockedError{Service: s.cfg.Service, PID: pid}
			if herr == nil {
				le.Holder = s.HolderText()
			}
			return le
		}
		return fmt.Errorf("etcd: lock %s: %w", s.key(etcdLock), err)
	}
	h, _ := json.Marshal(ThisHolder())
	octx, cancel := s.opCtx()
	resp, err := s.cli.Txn(octx).If(mx.IsOwner()).Then(clientv3.OpPut(s.key(etcdOwner), string(h), clientv3.WithLease(sess.Lease()))).Commit()
	cancel()
	if err != nil || !resp.Succeeded {
		_ = sess.Close()
		if err == nil {
			err = providers.ErrLeaseLost
		}
		return fmt.Errorf("etcd: record the lock holder: %w", err)
	}
	s.mu.Lock()
	s.sess, s.mx, s.validUntil, s.lost, s.lostCh = sess, mx, sent.Add(time.Duration(ttl)*time.Second), nil, make(chan struct{})
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	s.mu.Unlock()
	go s.keepTrack(sess, grant.ID, time.Duration(ttl)*time.Second, s.stop, s.done)
	s.watchControls()
	return nil
}

// keepTrack confirms the lease every third of its TTL (the session keeps it alive as well) and moves
// validUntil: the time the confirmation was asked for plus the TTL, on the monotonic clock.
func (s *EtcdStore) keepTrack(sess *concurrency.Session, id clientv3.LeaseID, ttl time.Duration, stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-sess.Done():
			s.setLost(fmt.Errorf("%w: the etcd session ended (lease expired or revoked)", providers.ErrLeaseLost))
			return
		case <-t.C:
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
		resp, err := s.cli.KeepAliveOnce(ctx, id)
		cancel()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.setLost(fmt.Errorf("%w: the etcd lease expired", providers.ErrLeaseLost))
			return
		case err != nil:
			s.log.Warn("etcd: confirm the lease; retrying", "err", err)
			continue
		}
		s.mu.Lock()
		if s.lost == nil {
			s.validUntil = sent.Add(time.Duration(resp.TTL) * time.Second)
		}
		s.mu.Unlock()
	}
}

func (s *EtcdStore) setLost(err error) {
	s.mu.Lock()
	first := s.lost == nil
	if first {
		s.lost = err
		close(s.lostCh)
	}
	s.mu.Unlock()
	if first {
		s.log.Error("lost the rollout's etcd lock: this runner stops", "err", err)
	}
}

// Err is nil while this process holds the lock with a lease that cannot have run out; an error
// wrapping providers.ErrLeaseLost after that.
func (s *EtcdStore) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mx == nil {
		return nil
	}
	if s.lost != nil {
		return s.lost
	}
	if !time.Now().Before(s.validUntil) {
		s.lost = fmt.Errorf("%w: the etcd lease ran out at %s before it was confirmed (was this process paused, or etcd unreachable?)",
			providers.ErrLeaseLost, s.validUntil.Format(time.RFC3339))
		close(s.lostCh)
		return s.lost
	}
	return nil
}

// Lost is closed when the lock's lease is lost (nil while not locked).
func (s *EtcdStore) Lost() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostCh
}

// Deadline is when the lease may run out unless confirmed (zero: not locked).
func (s *EtcdStore) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mx == nil {
		return time.Time{}
	}
	return s.validUntil
}

// Unlock releases the mutex and revokes the session's lease.
func (s *EtcdStore) Unlock() error {
	s.mu.Lock()
	sess, mx, stop, done := s.sess, s.mx, s.stop, s.done
	s.sess, s.mx, s.stop = nil, nil, nil
	s.mu.Unlock()
	if mx == nil {
		return nil
	}
	if s.unwatch != nil {
		s.unwatch()
	}
	close(stop)
	<-done
	ctx, cancel := s.opCtx()
	defer cancel()
	err := mx.Unlock(ctx)
	if cerr := sess.Close(); err == nil {
		err = cerr
	}
	return err
}

type holderRecord struct {
	providers.Holder
}

// Holder reports whether a runner holds the lock (its session is alive) and its pid.
func (s *EtcdStore) Holder() (bool, int, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.key(etcdOwner))
	if err != nil {
		return false, 0, fmt.Errorf("etcd: read the lock holder: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return false, 0, nil
	}
	var h holderRecord
	_ = json.Unmarshal(resp.Kvs[0].Value, &h)
	return true, h.PID, nil
}

// HolderText describes the holder for messages: user@host pid N ("" when unknown).
func (s *EtcdStore) HolderText() string {
	ctx, cancel := s.opCtx()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.key(etcdOwner))
	if err != nil || len(resp.Kvs) == 0 {
		return ""
	}
	var h holderRecord
	if json.Unmarshal(resp.Kvs[0].Value, &h) != nil {
		return ""
	}
	return h.Holder.String()
}

// put writes key in a transaction conditioned on owning the mutex. An unreachable cluster is retried
// while the lease may still be valid: a restarted etcd member loses no rollout.
func (s *EtcdStore) put(what string, ops ...clientv3.Op) error {
	backoff := 100 * time.Millisecond
	for {
		if err := s.Err(); err != nil {
			return fmt.Errorf("etcd: %s: %w", what, err)
		}
		s.mu.Lock()
		mx, until := s.mx, s.validUntil
		s.mu.Unlock()
		if mx == nil {
			return fmt.Errorf("etcd: %s: the rollout is not locked by this process", what)
		}
		dl := time.Now().Add(s.cfg.DialTimeout)
		if until.Before(dl) {
			dl = until
		}
		ctx, cancel := context.WithDeadline(context.Background(), dl)
		resp, err := s.cli.Txn(ctx).If(mx.IsOwner()).Then(ops...).Commit()
		cancel()
		if err == nil && !resp.Succeeded {
			s.setLost(fmt.Errorf("%w: another runner holds the rollout's etcd lock", providers.ErrLeaseLost))
			return fmt.Errorf("etcd: %s: %w", what, s.Err())
		}
		if err == nil {
			return nil
		}
		s.log.Warn("etcd: write failed; retrying while the lease lasts", "what", what, "err", err)
		t := time.NewTimer(backoff)
		<-t.C
		backoff = min(2*backoff, time.Second)
	}
}

func (s *EtcdStore) get(key string) ([]byte, bool, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, false, err
	}
	if len(resp.Kvs) == 0 {
		return nil, false, nil
	}
	return resp.Kvs[0].Value, true, nil
}

// SaveState writes the state, fenced.
func (s *EtcdStore) SaveState(st *State) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return s.put("save state", clientv3.OpPut(s.key(etcdState), string(data)))
}

// LoadState reads the state; ErrNoState when there is none.
func (s *EtcdStore) LoadState() (*State, error) {
	data, ok, err := s.get(s.key(etcdState))
	if err != nil {
		return nil, fmt.Errorf("etcd: read state: %w", err)
	}
	if !ok {
		return nil, ErrNoState
	}
	return DecodeState(data)
}

// SaveSpec stores the spec beside the state, fenced.
func (s *EtcdStore) SaveSpec(raw []byte) error {
	return s.put("save spec", clientv3.OpPut(s.key(etcdSpec), string(raw)))
}

// LoadSpec reads the saved spec.
func (s *EtcdStore) LoadSpec() ([]byte, error) {
	data, ok, err := s.get(s.key(etcdSpec))
	if err != nil {
		return nil, fmt.Errorf("etcd: read spec: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("etcd: no spec saved at %s", s.key(etcdSpec))
	}
	return data, nil
}

// Service is the store's service.
func (s *EtcdStore) Service() string { return s.cfg.Service }

// StateKey names the state's key, for messages.
func (s *EtcdStore) StateKey() string { return "etcd:" + s.key(etcdState) }

// SpecPath names the spec's key.
func (s *EtcdStore) SpecPath() string { return "etcd:" + s.key(etcdSpec) }

// Dir is the local directory for deployment logs.
func (s *EtcdStore) Dir() string { return s.cfg.LocalDir }

func newID(t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%020d-%s", t.UnixNano(), hex.EncodeToString(b[:]))
}

// AppendEvent stores one event, fenced.
func (s *EtcdStore) AppendEvent(ev *Event) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	return s.put("append event", clientv3.OpPut(s.key(etcdEvents)+newID(ev.Time), string(line)))
}

// ReadEvents reads every event, oldest first.
func (s *EtcdStore) ReadEvents() ([]Event, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.key(etcdEvents), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("etcd: read events: %w", err)
	}
	out := make([]Event, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var ev Event
		if json.Unmarshal(kv.Value, &ev) == nil {
			out = append(out, ev)
		}
	}
	return out, nil
}

// PostControl stores a control request; any machine may post one.
func (s *EtcdStore) PostControl(req ControlRequest) (ControlRequest, error) {
	if !req.Action.Valid() {
		return req, fmt.Errorf("post control request: unknown action %q", req.Action)
	}
	if req.At.IsZero() {
		req.At = time.Now().UTC()
	}
	if req.ID == "" {
		req.ID = newID(req.At)
	}
	data, err := json.Marshal(req)
	if err != nil {
		return req, fmt.Errorf("encode control request: %w", err)
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	if _, err := s.cli.Put(ctx, s.key(etcdControl)+req.ID, string(data)); err != nil {
		return req, fmt.Errorf("etcd: post control request: %w", err)
	}
	return req, nil
}

// PendingControls lists the requests not yet applied, oldest first: from the watch's cache while
// this process runs the rollout, else read from etcd.
func (s *EtcdStore) PendingControls() ([]ControlRequest, error) {
	s.ctrlMu.Lock()
	if s.ctrlOK {
		out := make([]ControlRequest, 0, len(s.ctrl))
		for _, r := range s.ctrl {
			out = append(out, r)
		}
		s.ctrlMu.Unlock()
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		return out, nil
	}
	s.ctrlMu.Unlock()
	reqs, _, err := s.readControls()
	return reqs, err
}

func (s *EtcdStore) readControls() ([]ControlRequest, int64, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.key(etcdControl), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("etcd: read control requests: %w", err)
	}
	var out []ControlRequest
	for _, kv := range resp.Kvs {
		if r, ok := decodeControl(string(kv.Key), kv.Value); ok {
			out = append(out, r)
		}
	}
	return out, resp.Header.Revision, nil
}

func decodeControl(key string, v []byte) (ControlRequest, bool) {
	var r ControlRequest
	if json.Unmarshal(v, &r) != nil || !r.Action.Valid() {
		return r, false
	}
	r.ID = key[strings.LastIndex(key, "/")+1:]
	return r, true
}

// watchControls keeps the pending requests in memory from a watch on control/, so the runner's tick
// reads no key; when the watch breaks, PendingControls reads etcd until it is re-established.
func (s *EtcdStore) watchControls() {
	ctx, cancel := context.WithCancel(context.Background())
	s.unwatch = cancel
	go func() {
		for ctx.Err() == nil {
			reqs, rev, err := s.readControls()
			if err != nil {
				t := time.NewTimer(250 * time.Millisecond)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				continue
			}
			m := map[string]ControlRequest{}
			for _, r := range reqs {
				m[r.ID] = r
			}
			s.ctrlMu.Lock()
			s.ctrl, s.ctrlOK = m, true
			s.ctrlMu.Unlock()
			wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), s.key(etcdControl), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
			for wr := range wch {
				if wr.Err() != nil {
					break
				}
				s.ctrlMu.Lock()
				for _, ev := range wr.Events {
					id := string(ev.Kv.Key)[strings.LastIndex(string(ev.Kv.Key), "/")+1:]
					if ev.Type == clientv3.EventTypeDelete {
						delete(s.ctrl, id)
					} else if r, ok := decodeControl(string(ev.Kv.Key), ev.Kv.Value); ok {
						s.ctrl[id] = r
					}
				}
				s.ctrlMu.Unlock()
			}
			s.ctrlMu.Lock()
			s.ctrlOK = false
			s.ctrlMu.Unlock()
		}
	}()
}

// AckControl deletes an applied request, fenced.
func (s *EtcdStore) AckControl(id string) error {
	if err := s.put("acknowledge control request", clientv3.OpDelete(s.key(etcdControl)+id)); err != nil {
		return err
	}
	s.ctrlMu.Lock()
	delete(s.ctrl, id)
	s.ctrlMu.Unlock()
	return nil
}

// WaitControl waits until the request id was acknowledged (deleted) by the runner, watching its key.
func (s *EtcdStore) WaitControl(ctx context.Context, id string) error {
	key := s.key(etcdControl) + id
	for {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("etcd: read control request: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					cancel()
					return nil
				}
			}
		}
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// WatchState calls f with every new state until ctx ends.
func (s *EtcdStore) WatchState(ctx context.Context, f func(*State)) error {
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), s.key(etcdState))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("etcd: watch state: %w", err)
		}
		for _, ev := range wr.Events {
			if ev.Type != clientv3.EventTypePut {
				continue
			}
			if st, err := DecodeState(ev.Kv.Value); err == nil {
				f(st)
			}
		}
	}
	return ctx.Err()
}
