package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
	"github.com/canaryctl/canaryctl/rollout/demo"
	"github.com/canaryctl/canaryctl/rollout/deploy"
)

// demoOptions are the flags of `canaryctl demo`.
type demoOptions struct {
	scenario  string
	output    string
	rps       int
	spinnaker bool
	stateDir  string
	events    string
	tui       bool
}

func newDemoCmd(env *Env) *cobra.Command {
	o := &demoOptions{}
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run a demo rollout on embedded defaults: good is promoted, slow, errors and route are rolled back",
		Long: "demo starts a small demo service (stable v1, baseline v1, canary v2, each a child process), the\n" +
			"built-in proxy and a load generator on loopback, and runs the real pipeline on a shortened\n" +
			"schedule (2.5% -> 10% -> 100%, about 30 s at 400 requests/s) from the embedded spec " + demo.SpecPath + ".\n\n" +
			"Scenarios: good (promoted, exit 0), slow (canary 50 ms slower on every request), errors\n" +
			"(canary answers 10% of requests with 500) and route (canary answers half the requests to\n" +
			"POST /checkout/pay, 2% of the load, with 500), rolled back with the reason (exit 3).",
		Example: "  canaryctl demo\n  canaryctl demo --scenario errors\n  canaryctl demo --scenario slow -o json > report.json",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runDemo(c.Context(), env, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.scenario, "scenario", string(demo.Good), "good, slow, errors or route")
	f.StringVarP(&o.output, "output", "o", "text", "final output on stdout: text or json (the rollout report plus the demo's measurements)")
	f.IntVar(&o.rps, "rps", demo.DefaultRPS, "requests per second of the load generator (1..2000)")
	f.BoolVar(&o.spinnaker, "spinnaker", false, "print one SPINNAKER_CONFIG_JSON={...} line on stdout at the end")
	f.StringVar(&o.stateDir, "state-dir", "", "keep state, events and logs in this directory (default: a temporary one, removed at the end)")
	f.StringVar(&o.events, "events", "", "append every event as a JSON line to FILE")
	f.BoolVar(&o.tui, "tui", false, "show the live monitor (as canaryctl watch) while the demo runs")
	_ = c.RegisterFlagCompletionFunc("scenario", cobra.FixedCompletions([]string{string(demo.Good), string(demo.Slow), string(demo.Errors), string(demo.Route)}, cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

// DemoResult is what the demo measured besides the rollout report.
type DemoResult struct {
	Scenario string     `json:"scenario"`
	RPS      int        `json:"requestsPerSecond"`
	Load     demo.Stats `json:"load"`
	// FirstCanaryError: the first 5xx a client got from the canary (errors scenario).
	FirstCanaryError *time.Time `json:"firstCanaryError,omitempty"`
	// LastCanaryAnswer: the last answer a client got from the canary before the rollback: when canary
	// weight 0 took effect, as clients saw it (not set after a promotion).
	LastCanaryAnswer *time.Time `json:"lastCanaryAnswer,omitempty"`
	// SecondsToStable: from the first canary 5xx to the last canary answer.
	SecondsToStable *float64 `json:"secondsToStable,omitempty"`
	// FailedRequests: every client request that got a 5xx or no answer, from any cohort.
	FailedRequests int `json:"failedRequests"`
}

// demoReport is the -o json document.
type demoReport struct {
	Report rollout.Report `json:"report"`
	Demo   DemoResult     `json:"demo"`
}

var scenarioText = map[demo.Behaviour]string{
	demo.Good:   "canary v2 behaves like v1: expect promotion (exit 0)",
	demo.Slow:   "canary v2 is 50 ms slower on every request: expect rollback (exit 3)",
	demo.Errors: "canary v2 answers 10% of requests with 500: expect rollback (exit 3)",
	demo.Route:  "canary v2 answers half of POST /checkout/pay (2% of the load) with 500: expect rollback naming the route (exit 3)",
}

// check checks the demo's flags and returns its scenario.
func (o *demoOptions) check() (demo.Behaviour, error) {
	scenario, err := demo.ParseBehaviour(o.scenario)
	if err != nil {
		return "", usageErrorf("--scenario: %v", err)
	}
	if o.output != "text" && o.output != "json" {
		return "", usageErrorf("--output %q: use text or json", o.output)
	}
	if o.rps < 1 || o.rps > demo.MaxRPS {
		return "", usageErrorf("--rps %d: use 1..%d requests per second", o.rps, demo.MaxRPS)
	}
	return scenario, nil
}

// demoJudging says in words how the embedded spec judges the canary.
func demoJudging(spec *rollout.Spec) string {
	if a := spec.Analysis; a.Mode == rollout.ModeSequential {
		return fmt.Sprintf("judged request by request (sequential tests, alpha %v, a look every %s)", a.Sequential.Alpha, a.Sequential.LookInterval)
	}
	return fmt.Sprintf("judged by Kayenta's Mann-Whitney on series of %s points, thresholds pass %v / marginal %v",
		spec.Analysis.Resolution, spec.Analysis.Thresholds.Pass, spec.Analysis.Thresholds.Marginal)
}

// demoResult is what the load saw of the rollout: failures, and how fast the canary's errors
// stopped after a rollback.
func demoResult(scenario demo.Behaviour, rps int, stats demo.Stats, out rollout.Outcome) DemoResult {
	res := DemoResult{Scenario: string(scenario), RPS: rps, Load: stats, FailedRequests: stats.Failed}
	if t, ok := stats.FirstFailure["v2"]; ok {
		res.FirstCanaryError = &t
	}
	if t, ok := stats.LastServed["v2"]; ok && out.Phase != rollout.Promoted {
		res.LastCanaryAnswer = &t
		if res.FirstCanaryError != nil {
			s := t.Sub(*res.FirstCanaryError).Seconds()
			res.SecondsToStable = &s
		}
	}
	return res
}

// writeDemoReport writes the demo's stdout: the JSON report (-o json) or, with ended, how it ended,
// and the Spinnaker line (--spinnaker).
func writeDemoReport(env *Env, o *demoOptions, report rollout.Report, res DemoResult, ended bool) error {
	switch {
	case o.output == "json":
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(demoReport{Report: report, Demo: res}); err != nil {
			return err
		}
	case ended: // the reason is on stderr's final line; stdout says only how it ended
		fmt.Fprintln(env.Stdout, report.Phase)
	}
	if o.spinnaker {
		fmt.Fprint(env.Stdout, report.SpinnakerLine())
	}
	return nil
}

// watchHint is the exact command that watches the demo: status and watch find the rollout from any
// directory with it.
func watchHint(service, root string, ephemeral bool) string {
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	where := fmt.Sprintf("watch it from another terminal: canaryctl watch %s --state-dir %s", service, abs)
	if ephemeral {
		where += " (a temporary directory, removed at the end; keep it with --state-dir DIR)"
	}
	return where
}

// openEvents opens the --events file for appending (no file: a nil writer).
func openEvents(path string) (io.Writer, func(), error) {
	if path == "" {
		return nil, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func runDemo(ctx context.Context, env *Env, o *demoOptions) (err error) {
	scenario, err := o.check()
	if err != nil {
		return err
	}
	spec, err := rollout.ParseSpec(bytes.NewReader(demo.Spec))
	if err != nil {
		return fmt.Errorf("demo: embedded spec %s: %w", demo.SpecPath, err)
	}
	spec.Deploy.Canary.Vars["behaviour"] = string(scenario)
	if o.tui && env.StdoutIsTerminal {
		return runDemoTUI(ctx, env, o, spec)
	}
	reported := false
	defer func() {
		// As run: -o json and --spinnaker exist whatever happened; a demo that could not start its
		// processes or its proxy reports NotStarted (exit 5).
		if reported || err == nil {
			return
		}
		err = notStarted(err)
		r := rollout.NotStartedReport(spec.Service, time.Now(), err)
		_ = writeDemoReport(env, o, r, DemoResult{Scenario: string(scenario), RPS: o.rps}, false)
	}()

	root, ephemeral := o.stateDir, o.stateDir == ""
	if ephemeral {
		if root, err = os.MkdirTemp("", "canaryctl-demo-"); err != nil {
			return fmt.Errorf("demo: create state directory: %w", err)
		}
		defer os.RemoveAll(root)
	}
	// Deployers and proxy talk only when something goes wrong; the engine's progress lines tell the story.
	quiet := slog.New(minLevel{h: env.Logger.Handler(), min: slog.LevelWarn})
	infra := context.WithoutCancel(ctx) // torn down by us after the engine has put traffic back

	fmt.Fprintf(env.Stderr, "canaryctl demo: scenario %s — %s\n", scenario, scenarioText[scenario])
	fmt.Fprintf(env.Stderr, "spec: %s (embedded): service %s, steps %s, %s\n", demo.SpecPath, spec.Service, demoSteps(spec), demoJudging(spec))

	// Stable v1: a child process like baseline and canary, started by the same process deployer.
	stableTarget := spec.Deploy.Baseline
	stableTarget.Args = append([]string(nil), spec.Deploy.Baseline.Args...)
	stableTarget.Args[len(stableTarget.Args)-1] = "1" // its own seed
	dopts := deploy.Options{Service: spec.Service, Logger: quiet, LogDir: filepath.Join(root, "stable")}
	stable, err := deploy.NewTargets(map[providers.Cohort]deploy.Target{providers.Stable: stableTarget}, dopts)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		if terr := stable.Teardown(infra, providers.Stable); terr != nil && err == nil {
			err = fmt.Errorf("demo: %w", terr)
		}
	}()
	stableAddrs, err := stable.Deploy(ctx, providers.Stable)
	if err != nil {
		return fmt.Errorf("demo: start stable: %w", err)
	}
	spec.Stable.Addresses = stableAddrs

	// The built-in proxy, embedded like `canaryctl run` embeds it, on a loopback port it binds itself
	// (the spec's 127.0.0.1:0; a port picked here and closed could be taken before the proxy binds it).
	spec.Gateway.Listen = "127.0.0.1:0"
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	store, err := rollout.OpenStore(rollout.StoreConfig{Root: root, Service: spec.Service})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	events, closeEvents, err := openEvents(o.events)
	if err != nil {
		return fmt.Errorf("demo: open --events file: %w", err)
	}
	defer closeEvents()
	// The same assembly as `canaryctl run`: embedded proxy, builtin metrics, process deployer, Kayenta
	// judge, engine. Only the logger is quieter: the progress lines tell the story.
	qenv := *env
	qenv.Logger = quiet
	rt, err := buildRollout(ctx, &qenv, rolloutParts{spec: spec, raw: demo.Spec, store: store, events: events,
		onInterrupt: rollout.InterruptRollback})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer rt.close()
	// Whatever happens, no demo process outlives the demo (after a promotion the canary is the new
	// stable, which the demo stops too). The deployer is idempotent: this only stops what is left.
	defer func() {
		if derr := teardownDemo(infra, rt.deployer); derr != nil && err == nil {
			err = fmt.Errorf("demo: %w", derr)
		}
	}()
	target := "http://" + rt.proxyAddr + "/"
	fmt.Fprintf(env.Stderr, "stable v1 %s; load %d requests/s on %s\n", stableAddrs[0], o.rps, target)
	fmt.Fprintln(env.Stderr, watchHint(spec.Service, root, ephemeral))

	lctx, stopLoad := context.WithCancel(infra)
	defer stopLoad()
	load, err := demo.StartLoad(lctx, demo.LoadConfig{Target: target, RPS: o.rps, RoutePath: demo.BrokenRoute, RouteShare: demo.DemoRouteShare})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := rt.eng.Start(ctx); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer rt.eng.Close()
	out, runErr := rt.eng.Run(ctx)
	stopLoad()
	stats := load.Wait()

	res := demoResult(scenario, o.rps, stats, out)
	report := rollout.NewReport(spec, rt.eng.State())
	reported = true
	printDemoSummary(env.Stderr, out, res)
	if err := writeDemoReport(env, o, report, res, true); err != nil {
		return fmt.Errorf("demo: write report: %w", err)
	}
	if runErr != nil {
		return fmt.Errorf("demo: %w", runErr)
	}
	return silentOutcome(outcomeError(out)) // printDemoSummary printed the final line
}

func printDemoSummary(w io.Writer, out rollout.Outcome, r DemoResult) {
	switch out.Phase {
	case rollout.Promoted:
		fmt.Fprintf(w, "PROMOTED: %s\n", oneLine(out.Reason))
	case rollout.RolledBack:
		switch {
		case out.NotStarted:
			fmt.Fprintf(w, "NOT STARTED (no traffic reached the canary): %s\n", oneLine(out.Reason))
		case out.Interrupted:
			fmt.Fprintf(w, "ROLLED BACK (interrupted): all traffic back on stable\n")
		default:
			fmt.Fprintf(w, "ROLLED BACK: %s\n", oneLine(out.Reason))
		}
	default:
		fmt.Fprintf(w, "%s: %s\n", out.Phase, oneLine(out.Reason))
	}
	fmt.Fprintf(w, "clients: %d requests, %d failed (5xx or no answer)", r.Load.Sent, r.FailedRequests)
	if n := r.Load.FailedBy["v2"]; n > 0 {
		fmt.Fprintf(w, ", %d of them from canary v2", n)
	}
	fmt.Fprintln(w)
	if r.SecondsToStable != nil {
		fmt.Fprintf(w, "first canary 5xx to canary weight 0 (last canary answer): %.1f s\n", *r.SecondsToStable)
	}
}

func demoSteps(s *rollout.Spec) string {
	var b bytes.Buffer
	var total time.Duration
	for i, st := range s.Steps {
		if i > 0 {
			b.WriteString(" -> ")
		}
		b.WriteString(strconv.FormatFloat(st.Weight, 'f', -1, 64) + "% (" + st.Duration.String() + ")")
		total += st.Duration
	}
	return fmt.Sprintf("%s, about %s", b.String(), total)
}

// teardownDemo stops baseline and canary with the run's own deployer (so its liveness watch knows
// the exits are the demo's, not a crash).
func teardownDemo(ctx context.Context, d rollout.Deployer) error {
	return errors.Join(d.Teardown(ctx, providers.Canary), d.Teardown(ctx, providers.Baseline))
}

// minLevel drops records below min.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(as), min: m.min}
}
func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h: m.h.WithGroup(name), min: m.min}
}
