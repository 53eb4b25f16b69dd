package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/canaryctl/canaryctl/rollout"
)

// The etcd store without a spec (run --resume --service, status, pause, promote, abort from another
// machine): CANARYCTL_ETCD_ENDPOINTS (comma-separated client URLs), CANARYCTL_ETCD_PREFIX, and
// CANARYCTL_ETCD_CACERT / _CERT / _KEY for TLS, CANARYCTL_ETCD_USERNAME / _PASSWORD.

// stateSpecFromEnv returns the etcd store the environment names (Type "" when none).
func stateSpecFromEnv(env *Env) (rollout.StateSpec, error) {
	eps := env.Getenv("CANARYCTL_ETCD_ENDPOINTS")
	if eps == "" {
		return rollout.StateSpec{}, nil
	}
	st := rollout.StateSpec{Type: "etcd", Prefix: env.Getenv("CANARYCTL_ETCD_PREFIX")}
	for _, e := range strings.Split(eps, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if err := rollout.CheckEtcdEndpoint(e); err != nil {
			return st, usageErrorf("CANARYCTL_ETCD_ENDPOINTS: %v", err)
		}
		st.Endpoints = append(st.Endpoints, e)
	}
	if ca, cert, key := env.Getenv("CANARYCTL_ETCD_CACERT"), env.Getenv("CANARYCTL_ETCD_CERT"), env.Getenv("CANARYCTL_ETCD_KEY"); ca != "" || cert != "" || key != "" {
		st.TLS = &rollout.StateTLSSpec{CAFile: ca, CertFile: cert, KeyFile: key}
	}
	return st, nil
}

// openStateStore opens the service's store: the spec's state section (if given and not local),
// else the etcd store of the environment, else the local directory. The returned close releases it.
func openStateStore(env *Env, dir, service string, spec *rollout.Spec) (rollout.StateStore, func(), error) {
	st := rollout.StateSpec{}
	if spec != nil {
		st = spec.State
	}
	if st.Type == "" || st.Type == "local" {
		fromEnv, err := stateSpecFromEnv(env)
		if err != nil {
			return nil, nil, err
		}
		if fromEnv.Type != "" && (spec == nil || spec.State.Type == "") {
			if spec != nil && fromEnv.LeaseTTL == 0 {
				fromEnv.LeaseTTL = spec.State.LeaseTTL
			}
			st = fromEnv
		}
	}
	if st.Type != "etcd" {
		s, err := rollout.OpenStore(rollout.StoreConfig{Root: dir, Service: service})
		if err != nil {
			return nil, nil, err
		}
		return s, func() { _ = s.Unlock() }, nil
	}
	tlsc, err := st.TLSConfig()
	if err != nil {
		return nil, nil, usageErrorf("%v", err)
	}
	var user, pass string
	if st.UsernameEnv != "" {
		user, pass = env.Getenv(st.UsernameEnv), env.Getenv(st.PasswordEnv)
	} else {
		user, pass = env.Getenv("CANARYCTL_ETCD_USERNAME"), env.Getenv("CANARYCTL_ETCD_PASSWORD")
	}
	s, err := rollout.OpenEtcdStore(rollout.EtcdStoreConfig{Endpoints: st.Endpoints, Prefix: st.Prefix, TLS: tlsc,
		Username: user, Password: pass, LeaseTTL: st.Lease(), Service: service, LocalDir: filepath.Join(dir, service), Logger: env.Logger})
	if err != nil {
		return nil, nil, err
	}
	return s, func() { _ = s.Close() }, nil
}

// storeFence is the store's lease fence (nil for the local store: its flock goes with the process).
func storeFence(s rollout.StateStore) rollout.Fence {
	if f, ok := s.(rollout.Fence); ok {
		return f
	}
	return nil
}

// openAnyControlStore opens the store a control command acts on: the etcd store of the environment
// (SERVICE required), else the local state directory.
func openAnyControlStore(env *Env, o *controlOptions, args []string) (rollout.StateStore, func(), error) {
	st, err := stateSpecFromEnv(env)
	if err != nil {
		return nil, nil, err
	}
	if st.Type != "etcd" {
		s, err := openControlStore(env, o, args)
		if err != nil {
			return nil, nil, err
		}
		return s, func() {}, nil
	}
	if len(args) != 1 || !rollout.ValidServiceName(args[0]) {
		return nil, nil, usageErrorf("name the SERVICE: with CANARYCTL_ETCD_ENDPOINTS the rollouts live in etcd")
	}
	return openStateStore(env, stateDir(env, o.stateDir), args[0], nil)
}

// errNotApplied: the runner did not apply a control request in time.
var errNotApplied = errors.New("control request not applied in time")

// waitApplied waits until the runner acknowledged request id: watching its key in etcd, or polling
// the local control directory.
func waitApplied(ctx context.Context, store rollout.StateStore, id string, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if w, ok := store.(interface {
		WaitControl(ctx context.Context, id string) error
	}); ok {
		err := w.WaitControl(ctx, id)
		if errors.Is(err, context.DeadlineExceeded) {
			return errNotApplied
		}
		return err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		pending, err := store.PendingControls()
		if err != nil {
			return err
		}
		if !containsRequest(pending, id) {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errNotApplied
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// recoveryHint turns an unreadable state into a one-line message with the exact recovery command.
func recoveryHint(err error, store rollout.StateStore) error {
	if !errors.Is(err, rollout.ErrCorruptState) {
		return err
	}
	return fmt.Errorf("%w; the state at %s is unreadable: restore stable at the gateway with: canaryctl abort %s --spec %s (it needs no state and replaces the unreadable one)",
		err, stateLocation(store), serviceOf(store), specHint(store))
}

// stateLocation names where the state is kept, for messages.
func stateLocation(s rollout.StateStore) string {
	if e, ok := s.(*rollout.EtcdStore); ok {
		return e.StateKey()
	}
	return filepath.Join(s.Dir(), "state.json")
}

// specHint is the spec file to name in a recovery command: the saved copy when there is one.
func specHint(s rollout.StateStore) string {
	if _, ok := s.(*rollout.Store); ok {
		if _, err := os.Stat(s.SpecPath()); err == nil {
			return s.SpecPath()
		}
	}
	return "FILE"
}

// serviceOf is the service a store keeps.
func serviceOf(s rollout.StateStore) string {
	if e, ok := s.(*rollout.EtcdStore); ok {
		return e.Service()
	}
	return filepath.Base(s.Dir())
}
