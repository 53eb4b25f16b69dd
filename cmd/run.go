package cmd

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
	"github.com/canaryctl/canaryctl/rollout/deploy"
)

// DefaultStateDir is where rollouts keep their state unless --state-dir or CANARYCTL_STATE_DIR say
// otherwise.
const DefaultStateDir = ".canaryctl"

type runOptions struct {
	specFile      string
	service       string
	resume        bool
	output        string
	eventsFile    string
	junitFile     string
	spinnaker     bool
	stateDir      string
	onInterrupt   string
	detachOnPause bool
	tui           bool
	forceTakeover bool
	standby       bool
	runID         string
	dryRun        bool
}

func newRunCmd(env *Env) *cobra.Command {
	o := &runOptions{}
	c := &cobra.Command{
		Use:   "run --spec FILE",
		Short: "Run a canary rollout: deploy, shift traffic in steps, judge every interval, promote or roll back",
		Long: `run deploys a baseline and a canary beside stable, shifts traffic through the gateway in steps and
judges the canary against the baseline. With per-request metrics (builtin, kong-log) the default
analysis.mode sequential judges every request as it arrives (looks every 250ms) with always-valid tests: it
rolls back the moment a regression is shown, passes a step once the data exclude the minimum detectable
effects, and extends an undecided step up to analysis.sequential.maxBake, then pauses (never fails for lack
of data). analysis.mode kayenta (the default for prometheus) judges every interval with Kayenta's
Mann-Whitney judge and stops at once when a score is at or below the marginal threshold. A rollback
deletes the canary and baseline targets (all traffic back on stable) and tears the deployments down;
after the last step the canary is promoted. With analysis.control stable (the default for Kong's
canary-plugin and bluegreen modes) no baseline is deployed and the canary is compared with stable; Kong
bluegreen is judged before/after: one interval of stable before the switch against each interval after.

Progress goes to stderr, one line per interval. State is kept in --state-dir/SERVICE (state.json,
events.jsonl); canaryctl status, pause, resume, promote and abort act on the run from another terminal.
SIGINT/SIGTERM/SIGHUP roll back before exiting (or pause with --on-interrupt pause).

Exit codes: 0 promoted, 1 error, 2 invalid spec, usage or unreadable file, 3 rolled back, 4 paused
awaiting approval or marginal, 5 not started (a deployment, the gateway, the metrics source or the state
directory failed before any traffic reached the canary), 130 interrupted (after traffic went back to
stable). -o json, --junit and --spinnaker are written in every case (phase NotStarted when the rollout
never ran). run --dry-run (or canaryctl validate) checks the spec and prints the plan.`,
		Example: `  canaryctl run --spec rollout.yaml
  canaryctl run --spec rollout.yaml -o json --junit report.xml --spinnaker
  canaryctl run --spec rollout.yaml --resume      # after a crash, continue from the recorded phase
  canaryctl run --resume --service checkout       # same, with the spec saved in the state directory`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRollout(cmd.Context(), env, o) },
	}
	f := c.Flags()
	f.StringVarP(&o.specFile, "spec", "f", "", "rollout spec (YAML); - reads stdin")
	f.StringVar(&o.service, "service", "", "with --resume and no --spec: the service whose saved spec to use")
	f.BoolVar(&o.resume, "resume", false, "continue the recorded rollout of the spec's service (after a crash or a pause)")
	f.StringVarP(&o.output, "output", "o", "text", "final report on stdout: text (none; summary on stderr) or json")
	f.StringVar(&o.eventsFile, "events", "", "also append every event as a JSON line to FILE")
	f.StringVar(&o.junitFile, "junit", "", "write a JUnit XML report to FILE at the end")
	f.BoolVar(&o.spinnaker, "spinnaker", false, "print one line SPINNAKER_CONFIG_JSON={...} on stdout at the end")
	f.StringVar(&o.stateDir, "state-dir", "", "state directory (default $CANARYCTL_STATE_DIR or "+DefaultStateDir+")")
	f.StringVar(&o.onInterrupt, "on-interrupt", "rollback", "on SIGINT/SIGTERM/SIGHUP: rollback (all traffic to stable) or pause (hold the split)")
	f.BoolVar(&o.tui, "tui", false, "show the live monitor (as canaryctl watch) while the rollout runs; plain progress when stdout is not a terminal")
	f.BoolVar(&o.forceTakeover, "force-takeover", false, "start even though another run's ownership lease at the gateway expired unfinished (it may have left traffic on its canary)")
	f.StringVar(&o.runID, "run-id", "", "name the run (default $CANARYCTL_RUN_ID, else the start time): when the service's recorded rollout has this id, continue it (or report how it ended) instead of starting another; a retried CI job passes its job name")
	f.BoolVar(&o.standby, "standby", false, "with --resume and the etcd store: wait until the running process stops (its lease expires), then take the rollout over")
	f.BoolVar(&o.dryRun, "dry-run", false, "check the spec (every problem, one per line, as canaryctl validate) and print the plan; deploy nothing")
	f.BoolVar(&o.detachOnPause, "detach-on-pause", false, "exit 4 when the rollout pauses (approval or marginal) instead of holding it; continue with run --resume")
	_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("on-interrupt", cobra.FixedCompletions([]string{"rollback", "pause"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

func stateDir(env *Env, flag string) string {
	if flag != "" {
		return flag
	}
	if d := env.Getenv("CANARYCTL_STATE_DIR"); d != "" {
		return d
	}
	return DefaultStateDir
}

func runRollout(ctx context.Context, env *Env, o *runOptions) (err error) {
	if o.output != "text" && o.output != "json" {
		return usageErrorf("--output %q: use text or json", o.output)
	}
	reported, service := false, o.service
	defer func() {
		// Every output (JSON report, JUnit file, Spinnaker line) exists whatever happened, so that CI
		// keeps its artifacts: a run that never started reports NotStarted with every problem.
		if !reported && err != nil && !o.dryRun {
			now := time.Now
			if env.Now != nil {
				now = env.Now
			}
			if werr := writeReports(env, o, rollout.NotStartedReport(service, now(), err)); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}()
	if o.onInterrupt != "rollback" && o.onInterrupt != "pause" {
		return usageErrorf("--on-interrupt %q: use rollback or pause", o.onInterrupt)
	}
	dir := stateDir(env, o.stateDir)
	raw, err := readSpecSource(env, o, dir)
	if err != nil {
		return err
	}
	spec, err := rollout.ParseSpec(bytes.NewReader(raw))
	if err != nil {
		if service == "" {
			service = rollout.ServiceOf(raw) // the reports name the service when the spec does
		}
		return specProblems(specName(o), err) // every problem, one per line: exit 2, before anything is deployed
	}
	service = spec.Service
	if o.dryRun {
		printPlan(env.Stdout, specName(o), spec)
		return nil
	}
	if err := resolveWebhookURLs(env, spec); err != nil {
		return err
	}
	store, closeStore, err := openStateStore(env, dir, spec.Service, spec)
	if err != nil {
		return notStarted(err)
	}
	defer closeStore()
	if err := retryRun(env, o, store); err != nil {
		return err
	}
	if o.tui && env.StdoutIsTerminal {
		if _, ok := store.(*rollout.Store); !ok {
			return usageErrorf("--tui shows a local state directory; with the etcd store follow the run's progress lines (or canaryctl status SERVICE)")
		}
		reported = true // the inner run (without --tui) writes the outputs
		return runRolloutTUI(ctx, env, o, dir, spec)
	}
	events, closeEvents, err := openEvents(o.eventsFile)
	if err != nil {
		return usageErrorf("--events %s: %v", o.eventsFile, errors.Unwrap(err))
	}
	defer closeEvents()
	rt, err := buildRollout(ctx, env, rolloutParts{spec: spec, raw: raw, store: store, events: events,
		onInterrupt: rollout.InterruptAction(o.onInterrupt), detachOnPause: o.detachOnPause, runID: cmp.Or(o.runID, newRunID(time.Now())),
		fresh: !o.resume})
	if err != nil {
		return notStarted(err)
	}
	defer rt.close()
	if err := startOrResume(ctx, rt, spec.Service, o); err != nil {
		return notStarted(recoveryHint(err, store))
	}
	defer rt.eng.Close()
	defer finishOwnership(ctx, env, rt)
	if st := rt.eng.State(); o.resume && st.Phase.Terminal() {
		fmt.Fprintf(env.Stderr, "%s: the recorded rollout already ended %s\n", spec.Service, st.Phase)
	}
	reported = true
	return runEngine(ctx, env, o, rt, spec)
}

// runEngine runs the rollout to its end and writes its reports and summary line.
func runEngine(ctx context.Context, env *Env, o *runOptions, rt *assembly, spec *rollout.Spec) error {
	out, runErr := rt.eng.Run(ctx)
	report := rollout.NewReport(spec, rt.eng.State())
	if werr := writeReports(env, o, report); werr != nil && runErr == nil {
		runErr = werr
	}
	fmt.Fprintln(env.Stderr, summaryLine(report))
	if runErr != nil {
		return fmt.Errorf("run rollout of %s: %w", spec.Service, runErr)
	}
	return silentOutcome(outcomeError(out)) // the summary line above is the one final line
}

// silentOutcome keeps an outcome's exit code and drops its message, for commands that already printed the
// outcome's final line (the reason once, not three times).
func silentOutcome(err error) error {
	if err == nil {
		return nil
	}
	return &quietError{err}
}

// readSpecSource returns the spec's bytes: --spec FILE, stdin, or the copy saved in the state
// directory (--resume --service NAME).
func readSpecSource(env *Env, o *runOptions, dir string) ([]byte, error) {
	switch {
	case o.specFile == "" && o.resume && o.service != "":
		if !rollout.ValidServiceName(o.service) {
			return nil, usageErrorf("--service %q is not a service name", o.service)
		}
		store, closeStore, err := openStateStore(env, dir, o.service, nil)
		if err != nil {
			return nil, err
		}
		defer closeStore()
		raw, err := store.LoadSpec()
		if err != nil {
			return nil, usageErrorf("no saved spec for %s in %s (%v); pass --spec FILE", o.service, store.SpecPath(), err)
		}
		return raw, nil
	case o.specFile == "":
		return nil, usageErrorf("--spec FILE is required (or --resume --service NAME to use the saved spec)")
	case o.specFile == "-":
		raw, err := io.ReadAll(io.LimitReader(env.Stdin, rollout.MaxSpecSize+1))
		if err != nil {
			return nil, fmt.Errorf("read spec from stdin: %w", err)
		}
		return raw, nil
	}
	raw, err := os.ReadFile(o.specFile)
	if err != nil {
		return nil, usageErrorf("--spec %s: %v", o.specFile, errors.Unwrap(err))
	}
	return raw, nil
}

// outcomeError maps how the rollout ended to the exit code.
// outcomeError is the error of a rollout's outcome: nil when promoted (ExitCode maps the others).
func outcomeError(out rollout.Outcome) error {
	if out.Phase == rollout.Promoted {
		return nil
	}
	return &rolloutEnd{out}
}

func summaryLine(r rollout.Report) string {
	s := fmt.Sprintf("%s: %s", r.Service, r.Phase)
	switch {
	case r.Phase == rollout.NotStarted:
		s += " (could not run the rollout; no traffic reached the canary; all traffic on stable)"
	case r.Interrupted && strings.HasPrefix(r.Reason, "interrupted"): // the reason says it: once
	case r.Interrupted && r.Phase == rollout.RolledBack:
		s += " (interrupted; all traffic back on stable)"
	case r.Interrupted:
		s += " (interrupted)"
	}
	if r.Control != "" && r.Control != rollout.ControlBaseline {
		s += " (control: " + r.Control + ")"
	}
	if r.Score != nil {
		s += fmt.Sprintf(" (last score %s, %s)", fmtNumber(*r.Score), r.Verdict)
	}
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	return oneLine(s)
}

func fmtNumber(n rollout.Number) string { return fmt.Sprintf("%.4g", float64(n)) }

func writeReports(env *Env, o *runOptions, r rollout.Report) error {
	var errs []error
	if o.junitFile != "" {
		var buf bytes.Buffer
		if err := r.WriteJUnit(&buf); err != nil {
			errs = append(errs, err)
		} else if err := os.WriteFile(o.junitFile, buf.Bytes(), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("write --junit file: %w", err))
		}
	}
	if o.output == "json" {
		if err := r.WriteJSON(env.Stdout); err != nil {
			errs = append(errs, err)
		}
	}
	if o.spinnaker {
		if _, err := io.WriteString(env.Stdout, r.SpinnakerLine()); err != nil {
			errs = append(errs, fmt.Errorf("write spinnaker line: %w", err))
		}
	}
	return errors.Join(errs...)
}

// rolloutParts is what buildRollout needs.
type rolloutParts struct {
	spec          *rollout.Spec
	raw           []byte
	store         rollout.StateStore
	events        io.Writer
	onInterrupt   rollout.InterruptAction
	detachOnPause bool
	quiet         bool // no progress lines (control commands)
	runID         string
	fresh         bool // a new rollout (run without --resume): new per-rollout secrets
}

// assembly is an engine with the providers it drives and what must be stopped at the end.
type assembly struct {
	eng    *rollout.Engine
	keeper *rollout.Keeper // the ownership lease at the gateway (ownership.go)
	runID  string          // a new run's id
	store  rollout.StateStore
	// deployer is the engine's: stopping through it tells its liveness watch the exit is ours
	deployer rollout.Deployer
	closers  []func()
	// proxyAddr is where the embedded proxy listens (gateway.listen, its port filled in when 0)
	proxyAddr string
}

// close stops the providers in reverse order (an embedded proxy keeps serving until the engine has
// sent traffic back to stable).
func (r *assembly) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

// buildRollout builds the gateway, metrics source, deployer and judge the spec names, and the engine.
func buildRollout(ctx context.Context, env *Env, p rolloutParts) (rt *assembly, err error) {
	rt = &assembly{}
	built := rt // the error returns below return a nil assembly; close what was started
	defer func() {
		if err != nil {
			built.close()
		}
	}()
	spec := p.spec
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	openGateway, err := opener(gatewayOpeners, "gateway.type", spec.Gateway.Type, providers.GatewayNames())
	if err != nil {
		return nil, err
	}
	g, err := openGateway(ctx, env, p, rt, log)
	if err != nil {
		return nil, err
	}
	gw, reqLog, owner := g.gw, g.reqLog, g.owner
	rt.keeper = rollout.NewKeeper(owner, leaseTTL(spec), log)
	fences := rollout.Fences{rt.keeper, storeFence(p.store)}
	gw = rollout.FenceGateway(gw, fences...)
	openMetrics, err := opener(metricsOpeners, "metrics.type", spec.Metrics.Type, providers.MetricsNames())
	if err != nil {
		return nil, err
	}
	metrics, err := openMetrics(ctx, env, spec, reqLog, log)
	if err != nil {
		return nil, err
	}
	deployer, err := spec.NewDeployer(deploy.Options{Service: spec.Service, Logger: log,
		LogDir: filepath.Join(p.store.Dir(), "logs"), StateDir: filepath.Join(p.store.Dir(), "deploy")})
	if err != nil {
		return nil, err
	}
	rt.deployer = deployer
	judge, err := rollout.NewKayentaJudge(rollout.KayentaJudgeConfig{Analysis: spec.Analysis})
	if err != nil {
		return nil, err
	}
	var progress io.Writer = env.Stderr
	if p.quiet {
		progress = nil
	}
	eng, err := rollout.New(rollout.Config{Spec: spec, Gateway: gw, Metrics: metrics, Requests: reqLog, Deployer: deployer, Judge: judge,
		Store: p.store, SpecYAML: p.raw, Logger: log, Progress: progress, Events: p.events,
		OnInterrupt: p.onInterrupt, DetachOnPause: p.detachOnPause, RunID: p.runID, Fence: fences.Err,
		RollbackFence: fences.ErrRollingBack})
	if err != nil {
		return nil, err
	}
	rt.eng, rt.runID, rt.store = eng, p.runID, p.store
	return rt, nil
}

// adminToken reads the admin token of an external proxy: gateway.tokenFile, the variable named by
// gateway.tokenEnv, or CANARYCTL_PROXY_TOKEN.
func adminToken(env *Env, g rollout.GatewaySpec) (string, error) {
	if g.TokenFile != "" {
		b, err := os.ReadFile(g.TokenFile)
		if err != nil {
			return "", usageErrorf("gateway.tokenFile: %v", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	name := g.TokenEnv
	if name == "" {
		name = "CANARYCTL_PROXY_TOKEN"
		// The variable `canaryctl proxy` itself reads works too.
		if env.Getenv(name) == "" && env.Getenv("CANARYCTL_ADMIN_TOKEN") != "" {
			name = "CANARYCTL_ADMIN_TOKEN"
		}
	}
	t := env.Getenv(name)
	if t == "" {
		return "", usageErrorf("gateway.admin needs a token: set %s (or CANARYCTL_ADMIN_TOKEN), or gateway.tokenEnv / gateway.tokenFile", name)
	}
	return t, nil
}

// resolveWebhookURLs reads the URL of every webhook that names an environment variable (urlEnv).
func resolveWebhookURLs(env *Env, spec *rollout.Spec) error {
	hooks := slices.Clone(spec.Notify.Webhooks)
	for i, h := range hooks {
		if h.URLEnv == "" {
			continue
		}
		u, err := url.Parse(env.Getenv(h.URLEnv))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageErrorf("notifications.webhooks[%d].urlEnv: $%s does not hold an http(s) URL; export the webhook URL in it", i, h.URLEnv)
		}
		hooks[i].URL = u.String()
	}
	spec.Notify.Webhooks = hooks
	return nil
}
