package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
)

type controlOptions struct {
	spec     string // abort --spec FILE: recover from the gateway alone (recover.go)
	stateDir string
	reason   string
	wait     time.Duration
	output   string
}

func newStatusCmd(env *Env) *cobra.Command {
	o := &controlOptions{}
	c := &cobra.Command{
		Use:   "status [SERVICE]",
		Short: "Show the state of a rollout (from its state directory)",
		Long: `status reads SERVICE's state.json in the state directory and shows the phase, step, split, last score
and verdict, why the rollout is where it is, and whether a process is running it. SERVICE may be left out when
the state directory holds one rollout. -o json prints state.json (schema in rollout/README.md).`,
		Example:           "  canaryctl status checkout\n  canaryctl status -o json --state-dir /var/lib/canaryctl",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeServices(env, o),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.output != "text" && o.output != "json" {
				return usageErrorf("--output %q: use text or json", o.output)
			}
			store, closeStore, err := openAnyControlStore(env, o, args)
			if err != nil {
				return err
			}
			defer closeStore()
			st, err := store.LoadState()
			if err != nil {
				return fmt.Errorf("status: %w", recoveryHint(err, store))
			}
			if o.output == "json" {
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			held, pid, _ := store.Holder()
			if _, err := fmt.Fprint(env.Stdout, formatStatus(st, held, pid, env.Now())); err != nil {
				return err
			}
			if h, ok := store.(interface{ HolderText() string }); ok && held && !st.Phase.Terminal() {
				fmt.Fprintf(env.Stdout, "holder:    %s (etcd lease)\n", h.HolderText())
			}
			return nil
		},
	}
	c.Flags().StringVar(&o.stateDir, "state-dir", "", "state directory (default $CANARYCTL_STATE_DIR or "+DefaultStateDir+")")
	c.Flags().StringVarP(&o.output, "output", "o", "text", "text or json")
	return c
}

func newPauseCmd(env *Env) *cobra.Command {
	return newControlCmd(env, rollout.ActionPause, "Pause a running rollout: hold the current split until resume, promote or abort",
		"The running rollout pauses within one tick and keeps its split; nothing is judged while paused. A pause\nlonger than the spec's pauseTimeout rolls back.")
}

func newResumeCmd(env *Env) *cobra.Command {
	return newControlCmd(env, rollout.ActionResume, "Resume a paused rollout (the current step restarts; an approval or marginal pause goes on)",
		"A rollout paused by canaryctl pause restarts its current step (bake time and warm-up). One waiting for\napproval, or paused after a marginal step, goes on as with promote.")
}

func newPromoteCmd(env *Env) *cobra.Command {
	return newControlCmd(env, rollout.ActionPromote, "Approve a step waiting for approval, or skip the remaining steps and promote",
		"When the rollout waits for approval (a step with approval: true, or a marginal step) promote approves it\nand the rollout goes on. Otherwise it skips the remaining steps: the canary becomes stable.")
}

func newAbortCmd(env *Env) *cobra.Command {
	return newControlCmd(env, rollout.ActionAbort, "Abort a rollout: delete the canary and baseline targets (all traffic to stable) and tear them down",
		"When a process runs the rollout, it rolls back within one tick. When none does (it crashed, or exited\npaused), abort rolls back itself with the spec saved in the state directory.")
}

func newControlCmd(env *Env, action rollout.Action, short, long string) *cobra.Command {
	o := &controlOptions{}
	name := string(action)
	c := &cobra.Command{
		Use:   name + " [SERVICE]",
		Short: short,
		Long: short + ".\n\n" + long + "\n\nThe request is written to the state directory (" + "SERVICE/control/" +
			"); the command waits up to --wait for the running rollout to apply it and prints the new phase.",
		Example:           fmt.Sprintf("  canaryctl %s checkout\n  canaryctl %s checkout --state-dir /var/lib/canaryctl --reason \"ticket OPS-42\"", name, name),
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeServices(env, o),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.spec != "" {
				return abortFromSpec(cmd.Context(), env, o, args)
			}
			return runControl(cmd.Context(), env, o, action, args)
		},
	}
	f := c.Flags()
	if action == rollout.ActionAbort {
		f.StringVar(&o.spec, "spec", "", "recover without state: restore stable at the gateway named by this spec and tear its deployments down (the state is missing, unreadable or on a lost machine)")
	}
	f.StringVar(&o.stateDir, "state-dir", "", "state directory (default $CANARYCTL_STATE_DIR or "+DefaultStateDir+")")
	f.StringVar(&o.reason, "reason", "", "why (recorded in events.jsonl and the rollout's reason)")
	f.DurationVar(&o.wait, "wait", 30*time.Second, "how long to wait for the running rollout to apply the request (0: do not wait)")
	return c
}

// completeServices completes SERVICE with the rollouts of the state directory.
func completeServices(env *Env, o *controlOptions) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		dir := stateDir(env, o.stateDir)
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "state.json")); err == nil {
				names = append(names, e.Name())
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// openControlStore finds the service's state directory: the argument, or the only rollout there.
func openControlStore(env *Env, o *controlOptions, args []string) (*rollout.Store, error) {
	dir := stateDir(env, o.stateDir)
	var service string
	if len(args) == 1 {
		service = args[0]
		if !rollout.ValidServiceName(service) {
			return nil, usageErrorf("%q is not a service name", service)
		}
	} else {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, usageErrorf("no rollouts in state directory %s; pass --state-dir or run canaryctl run first", dir)
		}
		var names []string
		for _, e := range entries {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "state.json")); err == nil {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		switch len(names) {
		case 0:
			return nil, usageErrorf("no rollouts in state directory %s; pass --state-dir or run canaryctl run first", dir)
		case 1:
			service = names[0]
		default:
			return nil, usageErrorf("state directory %s holds several rollouts (%s); name the SERVICE", dir, strings.Join(names, ", "))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, service, "state.json")); err != nil {
		return nil, usageErrorf("no rollout of %s in state directory %s", service, dir)
	}
	return rollout.OpenStore(rollout.StoreConfig{Root: dir, Service: service})
}

func requester(env *Env) string {
	if by := env.Getenv("CANARYCTL_ACTOR"); by != "" {
		return by
	}
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s@%s pid %d", name, host, os.Getpid())
}

func runControl(ctx context.Context, env *Env, o *controlOptions, action rollout.Action, args []string) error {
	store, closeStore, err := openAnyControlStore(env, o, args)
	if err != nil {
		return err
	}
	defer closeStore()
	st, err := store.LoadState()
	if err != nil {
		return fmt.Errorf("%s: %w", action, recoveryHint(err, store))
	}
	if st.Phase.Terminal() && !(st.Phase == rollout.Failed && action == rollout.ActionAbort) {
		return fmt.Errorf("%s: the rollout of %s already ended %s: %s", action, st.Service, st.Phase, st.Reason)
	}
	req, err := store.PostControl(rollout.ControlRequest{Action: action, By: requester(env), Reason: o.reason})
	if err != nil {
		return err
	}
	held, pid, err := store.Holder()
	if err != nil {
		return err
	}
	if !held {
		if action == rollout.ActionAbort {
			return abortDetached(ctx, env, store)
		}
		fmt.Fprintf(env.Stdout, "%s: no process runs this rollout (phase %s); the %s request is queued and applied by canaryctl run --resume --service %s\n",
			st.Service, st.Phase, action, st.Service)
		return nil
	}
	if o.wait <= 0 {
		fmt.Fprintf(env.Stdout, "%s: %s request %s sent to process %d\n", st.Service, action, req.ID, pid)
		return nil
	}
	if err := waitApplied(ctx, store, req.ID, o.wait); err != nil {
		if errors.Is(err, errNotApplied) {
			return fmt.Errorf("%s: process %d did not apply the request within %s; it stays queued (see canaryctl status %s)", action, pid, o.wait, st.Service)
		}
		return err
	}
	return reportControl(env, store, req, action)
}

func containsRequest(reqs []rollout.ControlRequest, id string) bool {
	for _, r := range reqs {
		if r.ID == id {
			return true
		}
	}
	return false
}

// reportControl prints what the engine made of the request (from events.jsonl) and the phase after it.
func reportControl(env *Env, store rollout.StateStore, req rollout.ControlRequest, action rollout.Action) error {
	note := "applied"
	if evs, err := store.ReadEvents(); err == nil {
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Type == rollout.EvControl && evs[i].Control != nil && evs[i].Control.ID == req.ID {
				note = evs[i].Reason
				break
			}
		}
	}
	st, err := store.LoadState()
	if err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	fmt.Fprintf(env.Stdout, "%s: %s %s; phase %s", st.Service, action, note, st.Phase)
	if st.Reason != "" {
		fmt.Fprintf(env.Stdout, ": %s", oneLine(st.Reason))
	}
	fmt.Fprintln(env.Stdout)
	if strings.HasPrefix(note, "rejected") {
		return withExitCode(ExitUsage, nil)
	}
	return nil
}

// abortDetached rolls back a rollout that no process runs: it takes the lock, rebuilds the gateway and
// deployer from the saved spec and runs the engine, which applies the queued abort first.
func abortDetached(ctx context.Context, env *Env, store rollout.StateStore) error {
	raw, err := store.LoadSpec()
	if err != nil {
		return fmt.Errorf("abort: no saved spec to reach the gateway (%w); run canaryctl run --resume --spec FILE, it applies the queued abort", err)
	}
	spec, err := rollout.ParseSpec(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("abort: saved spec: %w", err)
	}
	rt, err := buildRollout(ctx, env, rolloutParts{spec: spec, raw: raw, store: store, quiet: true})
	if err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	defer rt.close()
	if err := rt.eng.Resume(ctx); err != nil {
		if errors.Is(err, rollout.ErrLocked) {
			return fmt.Errorf("abort: a process took the rollout over meanwhile; it applies the queued abort: %w", err)
		}
		return fmt.Errorf("abort: %w", err)
	}
	defer rt.eng.Close()
	if err := rt.eng.Reopen("aborted after Failed: retrying the rollback"); err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	if err := claimGateway(ctx, rt, spec.Service, rt.eng.State().RunID, true, false); err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	defer finishOwnership(ctx, env, rt)
	out, err := rt.eng.Run(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	fmt.Fprintf(env.Stdout, "%s: %s: %s\n", spec.Service, out.Phase, oneLine(out.Reason))
	if out.Phase != rollout.RolledBack {
		return withExitCode(ExitError, fmt.Errorf("abort ended %s", out.Phase))
	}
	return nil
}

// formatStatus renders the state for people.
func formatStatus(st *rollout.State, held bool, pid int, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "service:   %s (run %s)\n", st.Service, st.RunID)
	if st.NotStarted && st.Phase == rollout.RolledBack {
		fmt.Fprintf(&b, "phase:     %s (not started: it could not run; no traffic reached the canary)\n", st.Phase)
	} else {
		fmt.Fprintf(&b, "phase:     %s\n", st.Phase)
	}
	if st.Steps > 0 && st.Step < len(st.Weights) {
		fmt.Fprintf(&b, "step:      %d/%d (%s)\n", st.Step+1, st.Steps, weightPct(st.Weights[st.Step]))
	}
	fmt.Fprintf(&b, "split:     %s\n", st.Split)
	if st.Control == rollout.ControlStable {
		b.WriteString("control:   stable (no baseline: the canary is compared with stable)\n")
		if w := st.ControlWindow; w != nil {
			fmt.Fprintf(&b, "before:    stable observed %s..%s, before the switch (before/after judging)\n",
				w.Start.UTC().Format(time.RFC3339), w.End.UTC().Format(time.RFC3339))
		}
	}
	if st.Score != nil {
		fmt.Fprintf(&b, "score:     %s (%s)\n", fmtNumber(*st.Score), st.Verdict)
	} else if n := len(st.Intervals); n > 0 && st.Intervals[n-1].Reason != "" {
		// analysis.mode sequential: no score; the last look's verdict and sentence
		// After a manual decision the last look is not why the rollout ended: the reason says so.
		// The analyzer's sentence starts with its verdict ("fail: the canary is worse ..."): say it once.
		last := st.Intervals[n-1]
		why := oneLine(last.Reason)
		if !strings.HasPrefix(why, "fail:") && !strings.HasPrefix(why, "pass:") && !strings.HasPrefix(why, "need more data:") {
			why = fmt.Sprintf("%s: %s", last.Verdict, why)
		}
		fmt.Fprintf(&b, "last look: %s\n", why)
	}
	if st.Pause != nil {
		fmt.Fprintf(&b, "paused:    %s since %s (%s ago)\n", st.Pause.Kind, st.Pause.Since.UTC().Format(time.RFC3339), now.Sub(st.Pause.Since).Round(time.Second))
	}
	if st.Reason != "" {
		fmt.Fprintf(&b, "reason:    %s\n", oneLine(st.Reason))
	}
	if n := len(st.Intervals); n > 0 && st.Intervals[n-1].Ingest != nil {
		// kong-log: what the receiver dropped or rejected in the last interval's window
		fmt.Fprintf(&b, "log:       %s\n", st.Intervals[n-1].Ingest)
	}
	fmt.Fprintf(&b, "intervals: %d\n", len(st.Intervals))
	switch {
	case st.Phase.Terminal():
		fmt.Fprintf(&b, "runner:    none (ended %s)\n", st.FinishedAt.UTC().Format(time.RFC3339))
	case held:
		fmt.Fprintf(&b, "runner:    process %d\n", pid)
	default:
		fmt.Fprintf(&b, "runner:    NONE: continue with canaryctl run --resume --service %s, or canaryctl abort %s\n", st.Service, st.Service)
	}
	fmt.Fprintf(&b, "updated:   %s (%s ago)\n", st.UpdatedAt.UTC().Format(time.RFC3339), now.Sub(st.UpdatedAt).Round(time.Second))
	return b.String()
}

func weightPct(w float64) string {
	bp, err := providers.PercentToBP(w)
	if err != nil {
		return fmt.Sprintf("%v%%", w)
	}
	return providers.Percent(bp)
}
