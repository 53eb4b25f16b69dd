package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/canaryctl/canaryctl/rollout"
)

// abortFromSpec restores stable with no usable state: it takes the service at the gateway (an
// expired lease of a lost runner is taken over; a live one refuses, naming its holder), writes a
// recovery state in RollingBack and runs the engine's rollback, which derives what to undo from the
// gateway itself and tears the spec's deployments down.
func abortFromSpec(ctx context.Context, env *Env, o *controlOptions, args []string) error {
	raw, err := os.ReadFile(o.spec)
	if err != nil {
		return usageErrorf("--spec %s: %v", o.spec, errors.Unwrap(err))
	}
	spec, err := rollout.ParseSpec(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	if len(args) == 1 && args[0] != spec.Service {
		return usageErrorf("SERVICE %q differs from the spec's service %q", args[0], spec.Service)
	}
	if err := resolveWebhookURLs(env, spec); err != nil {
		return err
	}
	dir := stateDir(env, o.stateDir)
	store, closeStore, err := openStateStore(env, dir, spec.Service, spec)
	if err != nil {
		return err
	}
	defer closeStore()
	if err := store.Lock(); err != nil {
		return fmt.Errorf("abort --spec: %w", err)
	}
	if st, err := store.LoadState(); err == nil && !st.Phase.Terminal() {
		// A readable unfinished rollout: the ordinary abort keeps its history.
		_ = store.Unlock()
		return runControl(ctx, env, o, rollout.ActionAbort, []string{spec.Service})
	}
	runID := newRunID(nowOf(env))
	rt, err := buildRollout(ctx, env, rolloutParts{spec: spec, raw: raw, store: store, quiet: true, runID: runID})
	if err != nil {
		return fmt.Errorf("abort --spec: %w", err)
	}
	defer rt.close()
	if err := claimGateway(ctx, rt, spec.Service, runID, false, true); err != nil {
		return fmt.Errorf("abort --spec: %w", err)
	}
	reason := "aborted with --spec by " + requester(env) + ": restoring stable from the gateway (no usable state)"
	if err := store.SaveSpec(raw); err != nil {
		return fmt.Errorf("abort --spec: %w", err)
	}
	if err := store.SaveState(rollout.RecoveryState(spec, runID, reason, nowOf(env))); err != nil {
		return fmt.Errorf("abort --spec: %w", err)
	}
	if err := rt.eng.Resume(ctx); err != nil {
		return fmt.Errorf("abort --spec: %w", err)
	}
	defer rt.eng.Close()
	defer finishOwnership(ctx, env, rt)
	out, err := rt.eng.Run(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("abort --spec: %w", err)
	}
	fmt.Fprintf(env.Stdout, "%s: %s: %s\n", spec.Service, out.Phase, oneLine(out.Reason))
	if out.Phase != rollout.RolledBack {
		return withExitCode(ExitError, fmt.Errorf("abort --spec ended %s", out.Phase))
	}
	return nil
}

func nowOf(env *Env) time.Time {
	if env.Now != nil {
		return env.Now()
	}
	return time.Now()
}
