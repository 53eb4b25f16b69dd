package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/canaryctl/canaryctl/judge"
	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/prometheus"
)

// analyzeOptions are the flags of `canaryctl analyze`.
type analyzeOptions struct {
	env *Env

	url, token, tokenFile          string
	user, password, passwordFile   string
	headers                        []string
	caFile, certFile, keyFile      string
	serverName                     string
	insecure                       bool
	timeout                        time.Duration
	retries                        int
	querySet, cohortLabel, select_ string
	service                        string
	minWindow                      time.Duration
	thresholdsSet                  bool
	changed                        func(flag string) bool
	// specProm is the spec's metrics.prometheus section, if any.
	specProm *prometheus.Config

	spec, canaryConfig            string
	controlScope, experimentScope string
	location, scopeLabel          string
	scopeParams                   []string
	start, end                    string
	step                          time.Duration
	pass, marginal                float64
	output                        string
	// routeLabel and routes: judge each route too (analyze_routes.go)
	routeLabel string
	routes     []string
}

func newAnalyzeCmd(env *Env) *cobra.Command {
	o := &analyzeOptions{env: env}
	c := &cobra.Command{
		Use:   "analyze [--prometheus URL] (--spec rollout.yaml | --canary-config kayenta.json) --start T [--end T]",
		Short: "Judge a past window from Prometheus, without touching any gateway",
		Long: `analyze fetches baseline and canary series for a past window from a Prometheus-compatible API
(Prometheus, Thanos, Mimir, VictoriaMetrics) and judges them with the Kayenta judge, printing the
same Kayenta CanaryJudgeResult as "canaryctl judge".

The metrics come either from a rollout spec (--spec: its analysis.metrics, with the latency and
error_rate kinds rendered from a query set, see --query-set; the server, credentials and query
settings of its metrics.prometheus section are used unless --prometheus is given), or from a Kayenta canary config
(--canary-config) whose metrics use Kayenta's Prometheus query fields (metricName with
labelBindings/groupByFields, customInlineTemplate or customFilterTemplate) with the scopes given by
--control-scope and --experiment-scope; the PromQL is built as Kayenta builds it.

Times are RFC 3339 (2026-11-22T03:00:00Z), Unix seconds, "now", or a duration before now ("-30m").

Exit codes: 0 Pass, 4 Marginal, 3 Fail, 2 invalid input, 1 any other error.
Secrets may come from the environment: CANARYCTL_PROMETHEUS_URL, CANARYCTL_PROMETHEUS_TOKEN,
CANARYCTL_PROMETHEUS_PASSWORD.`,
		Example: `  canaryctl analyze --prometheus http://127.0.0.1:9090 --spec rollout.yaml --start -30m --end now --step 30s
  canaryctl analyze --prometheus https://prom.example --prometheus-token-file /run/secrets/prom \
    --canary-config kayenta.json --control-scope checkout-baseline --experiment-scope checkout-canary \
    --scope-param namespace=shop --start 2026-11-22T03:00:00Z --end 2026-11-22T04:00:00Z -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.changed = cmd.Flags().Changed
			o.thresholdsSet = o.changed("pass") || o.changed("marginal")
			return o.run(cmd.Context())
		},
	}
	f := c.Flags()
	f.StringVar(&o.url, "prometheus", "", "URL of the Prometheus HTTP API, e.g. http://127.0.0.1:9090 (env CANARYCTL_PROMETHEUS_URL)")
	f.StringVar(&o.token, "prometheus-token", "", "bearer token (env CANARYCTL_PROMETHEUS_TOKEN)")
	f.StringVar(&o.tokenFile, "prometheus-token-file", "", "file holding the bearer token, read on every request")
	f.StringVar(&o.user, "prometheus-user", "", "basic auth user")
	f.StringVar(&o.password, "prometheus-password", "", "basic auth password (env CANARYCTL_PROMETHEUS_PASSWORD)")
	f.StringVar(&o.passwordFile, "prometheus-password-file", "", "file holding the basic auth password")
	f.StringArrayVar(&o.headers, "prometheus-header", nil, "extra request header NAME=VALUE, repeatable (e.g. X-Scope-OrgID=tenant)")
	f.StringVar(&o.caFile, "prometheus-ca-file", "", "PEM CA bundle that signs the server certificate")
	f.StringVar(&o.certFile, "prometheus-cert-file", "", "client certificate (PEM) for mutual TLS")
	f.StringVar(&o.keyFile, "prometheus-key-file", "", "client key (PEM) for mutual TLS")
	f.StringVar(&o.serverName, "prometheus-server-name", "", "name to verify in the server certificate")
	f.BoolVar(&o.insecure, "prometheus-insecure-skip-verify", false, "do not verify the server certificate (testing only)")
	f.DurationVar(&o.timeout, "prometheus-timeout", prometheus.DefaultTimeout, "timeout of one query attempt")
	f.IntVar(&o.retries, "prometheus-retries", prometheus.DefaultRetries, "retries of a query after a 5xx, timeout or network error")
	f.StringVar(&o.querySet, "query-set", "builtin", "queries for the latency and error_rate kinds: "+strings.Join(prometheus.QuerySetNames(), ", "))
	f.StringVar(&o.cohortLabel, "cohort-label", prometheus.DefaultCohortLabel, "label that tells the cohorts apart")
	f.StringVar(&o.select_, "selector", "", `extra label matchers for every query, e.g. namespace="shop"`)
	f.StringVar(&o.service, "service", "", "service name (.Service in templates; matched by the app-labels set); default: the spec's service")
	f.DurationVar(&o.minWindow, "min-rate-window", prometheus.DefaultMinWindow, "smallest rate() window (at least twice the scrape interval); points are one window apart: the window is the larger of this and --step")

	f.StringVar(&o.spec, "spec", "", "rollout spec (YAML) whose analysis section is judged")
	f.StringVar(&o.canaryConfig, "canary-config", "", "Kayenta canary config (JSON) with Prometheus queries")
	f.StringVar(&o.controlScope, "control-scope", "", "Kayenta control (baseline) scope, ${scope} in templates")
	f.StringVar(&o.experimentScope, "experiment-scope", "", "Kayenta experiment (canary) scope")
	f.StringVar(&o.location, "scope-location", "", "Kayenta scope location, ${location} in templates")
	f.StringArrayVar(&o.scopeParams, "scope-param", nil, "Kayenta extended scope parameter NAME=VALUE, repeatable")
	f.StringVar(&o.scopeLabel, "kayenta-scope-label", prometheus.DefaultKayentaScopeLabel, "Kayenta's prometheus.scopeLabel (resourceType gce_instance)")
	f.StringVar(&o.start, "start", "", "start of the window (RFC 3339, Unix seconds, now, or -DURATION)")
	f.StringVar(&o.end, "end", "now", "end of the window")
	f.DurationVar(&o.step, "step", 30*time.Second, "resolution: one point per step")
	f.Float64Var(&o.pass, "pass", judge.DefaultThresholds.Pass, "score needed to pass (with --spec: the spec's analysis.thresholds.pass unless this flag is given)")
	f.Float64Var(&o.marginal, "marginal", judge.DefaultThresholds.Marginal, "score needed to be marginal rather than fail (with --spec: the spec's analysis.thresholds.marginal unless given)")
	f.StringVar(&o.routeLabel, "route-label", "", "also judge each --route on its own: the label that tells routes apart in the metrics (e.g. uri, handler); queries get LABEL=\"route\" and templates .Route")
	f.StringArrayVar(&o.routes, "route", nil, "a route to judge (a value of --route-label), repeatable; the 98% confidence is split over the routes (Bonferroni)")
	f.StringVarP(&o.output, "output", "o", "", "output format: json or text (default text on a terminal, json otherwise)")
	_ = c.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"json", "text"}, cobra.ShellCompDirectiveNoFileComp
	})
	_ = c.RegisterFlagCompletionFunc("query-set", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return prometheus.QuerySetNames(), cobra.ShellCompDirectiveNoFileComp
	})
	_ = c.MarkFlagFilename("spec", "yaml", "yml")
	_ = c.MarkFlagFilename("canary-config", "json")
	return c
}

// analyzeMetric is one metric to fetch: a rendered query pair, or a providers.Metric to render.
type analyzeMetric struct {
	name             string
	metric           *providers.Metric
	baseline, canary string
}

func (o *analyzeOptions) run(ctx context.Context) error {
	if err := o.fromEnv(); err != nil {
		return err
	}
	w, err := o.window()
	if err != nil {
		return err
	}
	th := judge.Thresholds{Pass: o.pass, Marginal: o.marginal}
	format := o.output
	if format == "" {
		format = "json"
		if o.env.StdoutIsTerminal {
			format = "text"
		}
	}
	if format != "json" && format != "text" {
		return usageErrorf("--output %q: use json or text", o.output)
	}
	if (o.spec == "") == (o.canaryConfig == "") {
		return usageErrorf("give exactly one of --spec rollout.yaml or --canary-config kayenta.json")
	}
	var (
		cc      *judge.CanaryConfig
		metrics []analyzeMetric
	)
	if o.canaryConfig != "" {
		cc, metrics, err = o.loadKayenta()
	} else {
		cc, metrics, err = o.loadSpec(&th)
	}
	if err != nil {
		return err
	}
	if err := th.Validate(); err != nil {
		return usageErrorf("--pass/--marginal: %v", err)
	}
	pcfg, err := o.promConfig()
	if err != nil {
		return err
	}
	if err := o.checkRoutes(metrics, pcfg); err != nil {
		return err
	}
	prov, err := prometheus.New(pcfg)
	if err != nil {
		return err
	}
	res, err := o.judgeWindow(ctx, prov, metrics, cc, th, w, "the service")
	if err != nil {
		return err
	}
	if o.routeLabel != "" {
		routes, err := o.judgeRoutes(ctx, pcfg, metrics, cc, th, w)
		if err != nil {
			return err
		}
		if format == "text" {
			if err := writeAnalyzeResult(o.env.Stdout, format, res, th, w); err != nil {
				return fmt.Errorf("analyze: write result: %w", err)
			}
		}
		if err := writeAnalyzeRoutes(o.env.Stdout, format, res, o.routeLabel, routes, th); err != nil {
			return fmt.Errorf("analyze: write result: %w", err)
		}
		return verdictResult(worstVerdict(res, routes))
	}
	if err := writeAnalyzeResult(o.env.Stdout, format, res, th, w); err != nil {
		return fmt.Errorf("analyze: write result: %w", err)
	}
	return verdictResult(res.Score.Classification)
}

func (o *analyzeOptions) fromEnv() error {
	get := o.env.Getenv
	if get == nil {
		get = func(string) string { return "" }
	}
	if o.url == "" {
		o.url = get("CANARYCTL_PROMETHEUS_URL")
	}
	if o.token == "" && o.tokenFile == "" && o.user == "" {
		o.token = get("CANARYCTL_PROMETHEUS_TOKEN")
	}
	if o.password == "" && o.passwordFile == "" && o.user != "" {
		o.password = get("CANARYCTL_PROMETHEUS_PASSWORD")
	}
	return nil
}

func (o *analyzeOptions) promConfig() (prometheus.Config, error) {
	headers := map[string]string{}
	for _, h := range o.headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return prometheus.Config{}, usageErrorf("--prometheus-header %q: use NAME=VALUE", h)
		}
		headers[strings.TrimSpace(k)] = v
	}
	retries := o.retries
	if retries == 0 {
		retries = -1 // the flag's 0 means none; the Config's 0 means the default
	}
	cfg := prometheus.Config{
		URL: o.url, BearerToken: o.token, BearerTokenFile: o.tokenFile,
		BasicAuth: prometheus.BasicAuth{User: o.user, Password: o.password, PasswordFile: o.passwordFile},
		Headers:   headers,
		TLS: prometheus.TLS{CAFile: o.caFile, CertFile: o.certFile, KeyFile: o.keyFile, ServerName: o.serverName,
			InsecureSkipVerify: o.insecure},
		Timeout: o.timeout, Retries: retries,
		QuerySet: o.querySet, CohortLabel: o.cohortLabel, Selector: o.select_, Service: o.service, MinWindow: o.minWindow,
	}
	if sp := o.specProm; sp != nil {
		if o.url == "" {
			// The spec's server with its credentials and TLS; connection flags given win.
			cfg = *sp
			if o.changed("prometheus-timeout") {
				cfg.Timeout = o.timeout
			}
			if o.changed("prometheus-retries") {
				cfg.Retries = retries
			}
			if len(headers) > 0 {
				cfg.Headers = headers
			}
		} else {
			// Another server (--prometheus) with the spec's query settings.
			cfg.QuerySet, cfg.CohortLabel, cfg.CohortValues, cfg.Selector = sp.QuerySet, sp.CohortLabel, sp.CohortValues, sp.Selector
			cfg.ServiceLabel, cfg.AppMetric, cfg.MinWindow = sp.ServiceLabel, sp.AppMetric, sp.MinWindow
			cfg.Control = sp.Control // the spec's analysis.control
		}
		// Query flags given on the command line win over the spec.
		if o.changed("query-set") {
			cfg.QuerySet = o.querySet
		}
		if o.changed("cohort-label") {
			cfg.CohortLabel = o.cohortLabel
		}
		if o.changed("selector") {
			cfg.Selector = o.select_
		}
		if o.changed("min-rate-window") {
			cfg.MinWindow = o.minWindow
		}
	}
	if o.service != "" {
		cfg.Service = o.service
	}
	cfg.Logger = o.env.Logger
	if cfg.URL == "" {
		return cfg, usageErrorf("--prometheus: required; give the Prometheus URL, e.g. --prometheus http://127.0.0.1:9090 (or CANARYCTL_PROMETHEUS_URL, or metrics.prometheus.url in the --spec)")
	}
	return cfg, nil
}

func (o *analyzeOptions) window() (providers.Window, error) {
	if o.start == "" {
		return providers.Window{}, usageErrorf("--start: required; e.g. --start 2026-11-22T03:00:00Z or --start -30m")
	}
	now := time.Now
	if o.env.Now != nil {
		now = o.env.Now
	}
	start, err := parseAnalyzeTime(o.start, now())
	if err != nil {
		return providers.Window{}, usageErrorf("--start %q: %v", o.start, err)
	}
	end, err := parseAnalyzeTime(o.end, now())
	if err != nil {
		return providers.Window{}, usageErrorf("--end %q: %v", o.end, err)
	}
	if o.step <= 0 {
		return providers.Window{}, usageErrorf("--step %s: must be positive, e.g. 30s", o.step)
	}
	if !end.After(start) {
		return providers.Window{}, usageErrorf("--end %s is not after --start %s", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	if end.Sub(start)/o.step >= 11000 {
		return providers.Window{}, usageErrorf("--step %s gives more than 11000 points over %s; use a larger step", o.step, end.Sub(start))
	}
	return providers.Window{Start: start, End: end, Step: o.step}, nil
}

// parseAnalyzeTime reads RFC 3339, Unix seconds, "now" or "-DURATION" (before now).
func parseAnalyzeTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "-"):
		d, err := time.ParseDuration(s[1:])
		if err != nil {
			return time.Time{}, fmt.Errorf("not a duration before now (use e.g. -30m)")
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 && f < 1e11 {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("use RFC 3339 (2026-11-22T03:00:00Z), Unix seconds, now, or -DURATION")
}

// loadKayenta reads a Kayenta canary config and builds each metric's control and experiment
// PromQL as Kayenta's Prometheus provider would.
func (o *analyzeOptions) loadKayenta() (*judge.CanaryConfig, []analyzeMetric, error) {
	if o.controlScope == "" || o.experimentScope == "" {
		return nil, nil, usageErrorf("--control-scope and --experiment-scope: both are required with --canary-config (Kayenta scope names, ${scope} in templates)")
	}
	params := map[string]string{}
	for _, p := range o.scopeParams {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, nil, usageErrorf("--scope-param %q: use NAME=VALUE", p)
		}
		params[k] = v
	}
	data, err := os.ReadFile(o.canaryConfig)
	if err != nil {
		return nil, nil, usageErrorf("--canary-config: %v", err)
	}
	cc, err := judge.ParseCanaryConfig(data)
	if err != nil {
		return nil, nil, fmt.Errorf("--canary-config %s: %w", o.canaryConfig, err)
	}
	control := prometheus.KayentaScope{Scope: o.controlScope, Location: o.location, ExtendedScopeParams: params}
	experiment := prometheus.KayentaScope{Scope: o.experimentScope, Location: o.location, ExtendedScopeParams: params}
	var out []analyzeMetric
	for i, m := range cc.Metrics {
		field := fmt.Sprintf("--canary-config %s: metrics[%d] (%s).query", o.canaryConfig, i, m.Name)
		if len(m.Query) == 0 {
			return nil, nil, usageErrorf("%s: missing; analyze needs a Prometheus query per metric", field)
		}
		var q prometheus.KayentaQuery
		if err := json.Unmarshal(m.Query, &q); err != nil {
			return nil, nil, usageErrorf("%s: %v", field, err)
		}
		if q.Type != "prometheus" {
			return nil, nil, usageErrorf("%s: type %q; analyze reads Prometheus queries only (\"type\": \"prometheus\")", field, q.Type)
		}
		bq, err := prometheus.BuildKayentaQuery(q, cc.Templates, control, o.scopeLabel)
		if err != nil {
			return nil, nil, usageErrorf("%s (control scope): %v", field, err)
		}
		cq, err := prometheus.BuildKayentaQuery(q, cc.Templates, experiment, o.scopeLabel)
		if err != nil {
			return nil, nil, usageErrorf("%s (experiment scope): %v", field, err)
		}
		if bq == cq {
			return nil, nil, usageErrorf("%s: control and experiment scopes give the same PromQL %q; use ${scope} in the filter template", field, bq)
		}
		o.env.Logger.Debug("kayenta query", "metric", m.Name, "control", bq, "experiment", cq)
		out = append(out, analyzeMetric{name: m.Name, baseline: bq, canary: cq})
	}
	return cc, out, nil
}

// writeAnalyzeResult prints the result as "canaryctl judge" does (Kayenta's CanaryJudgeResult as
// JSON, or its text table) — text output starts with one line naming the judged window.
func writeAnalyzeResult(w io.Writer, format string, res *judge.Result, th judge.Thresholds, win providers.Window) error {
	if format == "json" {
		return writeJudgeJSON(w, res)
	}
	if _, err := fmt.Fprintf(w, "window %s .. %s, step %s\n", win.Start.UTC().Format(time.RFC3339),
		win.End.UTC().Format(time.RFC3339), win.Step); err != nil {
		return err
	}
	return writeJudgeText(w, res, th)
}
