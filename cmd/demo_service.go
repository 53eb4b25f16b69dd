package cmd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/canaryctl/canaryctl/rollout/demo"
)

// newDemoServiceCmd is the hidden service that `canaryctl demo` starts as stable, baseline and canary:
// a small HTTP service that can be slow or answer with errors.
func newDemoServiceCmd(env *Env) *cobra.Command {
	var (
		cfg      demo.AppConfig
		behav    string
		listen   string
		port     int
		addrFile string
	)
	c := &cobra.Command{
		Use:   "demo-service",
		Short: "Run the demo service that `canaryctl demo` deploys (stable, baseline, canary); the CI examples use it too",
		Args:  cobra.NoArgs,
		Example: "  canaryctl demo-service --version v2 --behaviour slow --port 8081\n" +
			"  PORT=8081 canaryctl demo-service --version v1\n" +
			"  canaryctl demo-service --port 0 --addr-file stable.addr   # a free port, written to stable.addr",
		RunE: func(c *cobra.Command, _ []string) error {
			b, err := demo.ParseBehaviour(behav)
			if err != nil {
				return usageErrorf("--behaviour: %v", err)
			}
			cfg.Behaviour = b
			anyPort := port == 0 && c.Flags().Changed("port") // --port 0: the system picks a free port
			if port == 0 && !anyPort && env.Getenv("PORT") != "" {
				if port, err = strconv.Atoi(env.Getenv("PORT")); err != nil {
					return usageErrorf("PORT=%q is not a port number; set PORT or --port to 1..65535", env.Getenv("PORT"))
				}
			}
			if (port < 1 && !anyPort) || port > 65535 {
				return usageErrorf("--port %d is out of range; set --port (or PORT) to 1..65535, or --port 0 for a free port", port)
			}
			app, err := demo.NewApp(cfg)
			if err != nil {
				return usageErrorf("%v", err)
			}
			return serveDemo(c.Context(), env, app, net.JoinHostPort(listen, strconv.Itoa(port)), addrFile, cfg)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Version, "version", "v1", "version to report in answers and the "+demo.VersionHeader+" header")
	f.StringVar(&behav, "behaviour", string(demo.Good), "good, slow (every request SlowBy later) or errors (a share of 500s)")
	f.StringVar(&listen, "listen", "127.0.0.1", "address to listen on")
	f.IntVar(&port, "port", 0, "port to listen on (default $PORT; 0 given explicitly: a free port the system picks, see --addr-file)")
	f.StringVar(&addrFile, "addr-file", "", "once listening, write the bound address (host:port and a newline) to this file, replaced whole; a caller waits for it instead of probing a port")
	f.DurationVar(&cfg.Latency, "latency", demo.DefaultLatency, "fastest answer")
	f.DurationVar(&cfg.Jitter, "jitter", demo.DefaultJitter, "median extra latency on top of --latency (log-normal, at most 20 times this)")
	f.Float64Var(&cfg.Spread, "spread", demo.DefaultSpread, "sigma of the log-normal extra latency (0.75: P99 about 5.7 times --jitter)")
	f.DurationVar(&cfg.SlowBy, "slow-by", demo.DefaultSlowBy, "extra latency of --behaviour slow")
	f.Float64Var(&cfg.ErrorShare, "error-share", demo.DefaultErrorShare, "share of 500s of --behaviour errors (0..1)")
	f.Uint64Var(&cfg.Seed, "seed", 1, "seed of the latency and error draws")
	return c
}

// serveDemo serves app on addr until ctx ends (SIGTERM, SIGINT), then drains for up to 5s. With
// addrFile set it writes the bound address there once listening.
func serveDemo(ctx context.Context, env *Env, app http.Handler, addr, addrFile string, cfg demo.AppConfig) error {
	l, err := demoListener(env, addr)
	if err != nil {
		return fmt.Errorf("demo service: listen: %w", err)
	}
	if addrFile != "" {
		if err := writeAddrFile(addrFile, l.Addr().String()); err != nil {
			_ = l.Close()
			return fmt.Errorf("demo service: --addr-file: %w", err)
		}
	}
	srv := &http.Server{Handler: app, ReadHeaderTimeout: 5 * time.Second}
	env.Logger.Info("demo service listening", "addr", l.Addr().String(), "version", cfg.Version, "behaviour", cfg.Behaviour)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("demo service: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("demo service: shut down: %w", err)
	}
	env.Logger.Info("demo service stopped", "version", cfg.Version)
	return nil
}

// demoListener serves on the socket canaryctl's process deployer passes as fd 3 (deploy listenFD:
// CANARYCTL_LISTEN_FD=3 with LISTEN_PID naming this process), else binds addr.
func demoListener(env *Env, addr string) (net.Listener, error) {
	if env.Getenv("CANARYCTL_LISTEN_FD") == "3" && env.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
		return net.FileListener(os.NewFile(3, "canaryctl-listener"))
	}
	return net.Listen("tcp", addr)
}

// writeAddrFile writes addr to path through a temporary file renamed over it, so that a reader sees
// either no file or the whole address.
func writeAddrFile(path, addr string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write the bound address: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.WriteString(addr + "\n"); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write the bound address to %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write the bound address to %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write the bound address: %w", err)
	}
	return nil
}
