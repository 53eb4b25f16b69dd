package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/proxy"
)

// proxyOptions holds the flags of `canaryctl proxy` and its admin client subcommands.
type proxyOptions struct {
	env             *Env
	config          string
	listen          string
	adminListen     string
	stable          []string
	baseline        []string
	canary          []string
	canaryPercent   float64
	baselinePercent float64
	hashOn          string
	routeSegments   int
	preserveHost    bool
	adminInsecure   bool
	shutdownTimeout time.Duration
	// shared with the client subcommands
	admin          string
	adminToken     string
	adminTokenFile string
}

func newProxyCmd(env *Env) *cobra.Command {
	o := &proxyOptions{env: env}
	c := &cobra.Command{
		Use:   "proxy",
		Short: "Run the built-in gateway: a weighted reverse proxy with stable, baseline and canary cohorts",
		Long: `Run the built-in gateway. Requests are split between the stable, baseline and canary cohorts
in basis points (exactly, by a smooth weighted wheel, or sticky per user with --hash-on); routing
rules from --config are applied first. An admin API on --admin-listen (loopback by default, bearer
token required) reads and changes the split, sets upstreams, rolls back and promotes; the
subcommands below are its client. Prometheus metrics are served at /metrics on the admin listener.

Flags override the fields of the YAML --config file. Exit codes: 0 after a graceful shutdown
(SIGINT/SIGTERM/SIGHUP), 1 on a runtime error, 2 on a bad flag or config.`,
		Example: `  CANARYCTL_ADMIN_TOKEN=s3cret canaryctl proxy --listen 127.0.0.1:8080 --admin-listen 127.0.0.1:8081 \
    --stable http://127.0.0.1:9001 --canary http://127.0.0.1:9002 --canary-percent 2.5
  canaryctl proxy --config proxy.yaml --admin-token-file /run/secrets/admin
  CANARYCTL_ADMIN_TOKEN=s3cret canaryctl proxy split --canary-percent 10`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := c.Flags()
	f.StringVar(&o.config, "config", "", "YAML file with upstreams, split, hashOn, rules, deny/allow lists, jwt, timeouts")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address of the proxy")
	f.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:8081", `address of the admin API and /metrics ("off" to disable)`)
	f.StringSliceVar(&o.stable, "stable", nil, "stable upstream base URL (repeat or comma-separate for several)")
	f.StringSliceVar(&o.baseline, "baseline", nil, "baseline upstream base URL(s)")
	f.StringSliceVar(&o.canary, "canary", nil, "canary upstream base URL(s)")
	f.Float64Var(&o.canaryPercent, "canary-percent", 0, "canary's share of traffic in percent, steps of 0.01 (e.g. 2.5)")
	f.Float64Var(&o.baselinePercent, "baseline-percent", 0, "baseline's share of traffic in percent")
	f.StringVar(&o.hashOn, "hash-on", "", "sticky cohorts: none, ip, header:NAME, cookie:NAME or consumer (verified JWT sub)")
	f.IntVar(&o.routeSegments, "route-segments", 0, "record each request's route as its method and this many path segments, ids folded (GET /users/{id}), for analysis.routes; 0 records none")
	f.BoolVar(&o.preserveHost, "preserve-host", false, "send the client's Host header upstream")
	f.BoolVar(&o.adminInsecure, "admin-insecure", false, "serve the admin API without a token (only on a loopback address)")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight requests may finish after SIGINT/SIGTERM/SIGHUP")
	pf := c.PersistentFlags()
	pf.StringVar(&o.adminToken, "admin-token", "", "admin API bearer token (or --admin-token-file, or env CANARYCTL_ADMIN_TOKEN)")
	pf.StringVar(&o.adminTokenFile, "admin-token-file", "", "file holding the admin API bearer token")

	client := func(use, short, example string, args cobra.PositionalArgs, run func(context.Context, *proxy.Client, *cobra.Command, []string) error) *cobra.Command {
		sc := &cobra.Command{Use: use, Short: short, Example: example, Args: args,
			RunE: func(cmd *cobra.Command, a []string) error {
				cl, err := o.client()
				if err != nil {
					return err
				}
				return run(cmd.Context(), cl, cmd, a)
			}}
		sc.Flags().StringVar(&o.admin, "admin", "", "admin API base URL (default $CANARYCTL_PROXY_ADMIN or http://127.0.0.1:8081)")
		return sc
	}
	c.AddCommand(
		client("state", "Print the proxy's routing table, back-offs and counters as JSON", "  canaryctl proxy state", cobra.NoArgs,
			func(ctx context.Context, cl *proxy.Client, _ *cobra.Command, _ []string) error {
				st, err := cl.State(ctx)
				if err != nil {
					return err
				}
				return o.printJSON(st)
			}),
		o.splitCmd(client),
		client("upstreams COHORT [URL...]", "Point a cohort at upstream base URLs (none: remove baseline or canary)",
			"  canaryctl proxy upstreams canary http://127.0.0.1:9002 http://127.0.0.1:9003", cobra.MinimumNArgs(1),
			func(ctx context.Context, cl *proxy.Client, _ *cobra.Command, a []string) error {
				co, err := providers.ParseCohort(a[0])
				if err != nil {
					return usageErrorf("COHORT: %v", err)
				}
				if err := cl.SetUpstreams(ctx, co, a[1:]); err != nil {
					return err
				}
				st, err := cl.State(ctx)
				if err != nil {
					return err
				}
				return o.printJSON(st)
			}),
		client("rollback", "Send all traffic to stable and remove the canary and baseline cohorts", "  canaryctl proxy rollback", cobra.NoArgs,
			func(ctx context.Context, cl *proxy.Client, _ *cobra.Command, _ []string) error {
				if err := cl.Rollback(ctx); err != nil {
					return err
				}
				_, err := fmt.Fprintln(o.env.Stdout, "rolled back: all traffic on stable")
				return err
			}),
		client("promote", "Make canary's upstreams stable's and remove the canary and baseline cohorts", "  canaryctl proxy promote", cobra.NoArgs,
			func(ctx context.Context, cl *proxy.Client, _ *cobra.Command, _ []string) error {
				if err := cl.Promote(ctx); err != nil {
					return err
				}
				_, err := fmt.Fprintln(o.env.Stdout, "promoted: canary's upstreams are stable")
				return err
			}),
	)
	return c
}

func (o *proxyOptions) splitCmd(client func(string, string, string, cobra.PositionalArgs, func(context.Context, *proxy.Client, *cobra.Command, []string) error) *cobra.Command) *cobra.Command {
	var canary, baseline float64
	sc := client("split", "Print the split, or set it with --canary-percent/--baseline-percent",
		"  canaryctl proxy split\n  canaryctl proxy split --canary-percent 10 --baseline-percent 10", cobra.NoArgs,
		func(ctx context.Context, cl *proxy.Client, cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("canary-percent") || cmd.Flags().Changed("baseline-percent") {
				c, err := providers.PercentToBP(canary)
				if err != nil {
					return usageErrorf("--canary-percent: %v", err)
				}
				b, err := providers.PercentToBP(baseline)
				if err != nil {
					return usageErrorf("--baseline-percent: %v", err)
				}
				if err := cl.SetSplit(ctx, providers.Split{Canary: c, Baseline: b}); err != nil {
					return err
				}
			}
			s, err := cl.Split(ctx)
			if err != nil {
				return err
			}
			if o.env.StdoutIsTerminal {
				_, err = fmt.Fprintln(o.env.Stdout, s.String())
				return err
			}
			return o.printJSON(s)
		})
	sc.Flags().Float64Var(&canary, "canary-percent", 0, "canary's share in percent (e.g. 2.5)")
	sc.Flags().Float64Var(&baseline, "baseline-percent", 0, "baseline's share in percent")
	return sc
}

func (o *proxyOptions) printJSON(v any) error {
	enc := json.NewEncoder(o.env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// token resolves the admin token: --admin-token, --admin-token-file, $CANARYCTL_ADMIN_TOKEN, then
// the config file's adminTokenFile.
func (o *proxyOptions) token(fileFromConfig string) (string, error) {
	if o.adminToken != "" {
		return o.adminToken, nil
	}
	file, field := o.adminTokenFile, "--admin-token-file"
	if file == "" {
		if t := o.env.Getenv("CANARYCTL_ADMIN_TOKEN"); t != "" {
			return t, nil
		}
		file, field = fileFromConfig, "adminTokenFile"
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", usageErrorf("%s: read token: %v", field, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", usageErrorf("%s: %s is empty", field, file)
	}
	return t, nil
}

func (o *proxyOptions) client() (*proxy.Client, error) {
	base := o.admin
	if base == "" {
		base = o.env.Getenv("CANARYCTL_PROXY_ADMIN")
	}
	if base == "" {
		base = "http://127.0.0.1:8081"
	}
	tok, err := o.token("")
	if err != nil {
		return nil, err
	}
	return proxy.NewClient(proxy.ClientConfig{BaseURL: base, Token: tok})
}

// fileConfig reads --config (if any) and applies the flags that were set on top of it.
func (o *proxyOptions) fileConfig(flags *pflag.FlagSet) (*proxy.FileConfig, error) {
	fc := &proxy.FileConfig{}
	if o.config != "" {
		b, err := os.ReadFile(o.config)
		if err != nil {
			return nil, usageErrorf("--config: %v", err)
		}
		if fc, err = proxy.ParseFileConfig(b); err != nil {
			return nil, fmt.Errorf("%s: %w", o.config, err)
		}
	}
	set := func(name string) bool { return flags.Changed(name) }
	if set("listen") || fc.Listen == "" {
		fc.Listen = o.listen
	}
	if set("admin-listen") || fc.AdminListen == "" {
		fc.AdminListen = o.adminListen
	}
	if fc.Upstreams == nil {
		fc.Upstreams = map[providers.Cohort][]string{}
	}
	for _, u := range []struct {
		flag string
		c    providers.Cohort
		v    []string
	}{{"stable", providers.Stable, o.stable}, {"baseline", providers.Baseline, o.baseline}, {"canary", providers.Canary, o.canary}} {
		if set(u.flag) {
			fc.Upstreams[u.c] = u.v
		}
	}
	if set("canary-percent") {
		fc.Split.CanaryPercent = o.canaryPercent
	}
	if set("baseline-percent") {
		fc.Split.BaselinePercent = o.baselinePercent
	}
	if set("hash-on") {
		fc.HashOn = proxy.HashOn(o.hashOn)
	}
	if set("preserve-host") {
		fc.PreserveHost = o.preserveHost
	}
	if set("route-segments") {
		fc.RouteSegments = o.routeSegments
	}
	if set("shutdown-timeout") || fc.Timeouts.Shutdown == 0 {
		fc.Timeouts.Shutdown = o.shutdownTimeout
	}
	for _, a := range []struct{ flag, v string }{{"--listen", fc.Listen}, {"--admin-listen", fc.AdminListen}} {
		if a.flag == "--admin-listen" && a.v == "off" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return nil, usageErrorf("%s: %q must be host:port, e.g. 127.0.0.1:8080", a.flag, a.v)
		}
	}
	if _, err := providers.PercentToBP(fc.Split.CanaryPercent); err != nil {
		return nil, usageErrorf("--canary-percent: %v", err)
	}
	if _, err := providers.PercentToBP(fc.Split.BaselinePercent); err != nil {
		return nil, usageErrorf("--baseline-percent: %v", err)
	}
	if fc.Timeouts.Shutdown <= 0 {
		return nil, usageErrorf("--shutdown-timeout: must be positive, e.g. 15s")
	}
	return fc, nil
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func (o *proxyOptions) run(cmd *cobra.Command) error {
	fc, err := o.fileConfig(cmd.Flags())
	if err != nil {
		return err
	}
	if len(fc.Upstreams[providers.Stable]) == 0 {
		return usageErrorf("--stable: at least one stable upstream is required, e.g. --stable http://127.0.0.1:9001")
	}
	cfg, err := fc.ProxyConfig()
	if err != nil {
		return err
	}
	cfg.Logger = o.env.Logger
	admin := fc.AdminListen != "off"
	var adminCfg proxy.AdminConfig
	if admin {
		tok, err := o.token(fc.AdminTokenFile)
		if err != nil {
			return err
		}
		switch {
		case tok != "":
			adminCfg.Token = tok
		case o.adminInsecure && isLoopback(fc.AdminListen):
			adminCfg.NoAuth = true
			o.env.Logger.Warn("admin API without a token (--admin-insecure): anyone on this host can change the split", "addr", fc.AdminListen)
		case o.adminInsecure:
			return usageErrorf("--admin-insecure: only allowed on a loopback --admin-listen, not %q", fc.AdminListen)
		default:
			return usageErrorf("--admin-token: the admin API needs a token: set --admin-token, --admin-token-file or CANARYCTL_ADMIN_TOKEN; or --admin-insecure to serve it without one on loopback (trying it out); or --admin-listen off")
		}
	}
	p, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	ln, err := net.Listen("tcp", fc.Listen)
	if err != nil {
		return fmt.Errorf("proxy: listen on %s: %w", fc.Listen, err)
	}
	sc := proxy.ServeConfig{Listener: ln, Admin: adminCfg, ReadHeaderTimeout: fc.Timeouts.ReadHeader,
		ShutdownTimeout: fc.Timeouts.Shutdown, Logger: o.env.Logger, NetHTTPOnly: fc.NetHTTPOnly}
	if admin {
		aln, err := net.Listen("tcp", fc.AdminListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("proxy: listen for the admin API on %s: %w", fc.AdminListen, err)
		}
		sc.AdminListener = aln
	}
	st, _ := p.State(cmd.Context())
	o.env.Logger.Info("proxy starting", "listen", ln.Addr().String(), "split", st.Split.String(), "hashOn", st.HashOn, "rules", st.Rules)
	return p.Serve(cmd.Context(), sc)
}
