package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ServeConfig configures Serve.
type ServeConfig struct {
	// Listener for the data plane (required) and for the admin API (optional).
	Listener      net.Listener
	AdminListener net.Listener
	Admin         AdminConfig
	// ReadHeaderTimeout (default 10 s) and IdleTimeout (default 120 s) of client connections.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout bounds the graceful drain after ctx is cancelled (default 15 s).
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	// NetHTTPOnly serves every request through net/http (ServeHTTP) instead of the proxy's own
	// HTTP/1.1 loop (h1.go) — an escape hatch should a client depend on something the loop does
	// differently, and the baseline of the benchmarks.
	NetHTTPOnly bool
}

// Serve runs the proxy (and the admin API) until ctx is cancelled, then stops accepting, lets
// in-flight requests finish within ShutdownTimeout and returns nil.
func (p *Proxy) Serve(ctx context.Context, cfg ServeConfig) error {
	if cfg.Listener == nil {
		return errors.New("proxy: serve: no listener")
	}
	log := cfg.Logger
	if log == nil {
		log = p.log
	}
	rht, idle, grace := cfg.ReadHeaderTimeout, cfg.IdleTimeout, cfg.ShutdownTimeout
	if rht <= 0 {
		rht = 10 * time.Second
	}
	if idle <= 0 {
		idle = 120 * time.Second
	}
	if grace <= 0 {
		grace = 15 * time.Second
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	data := &http.Server{Handler: p, ReadHeaderTimeout: rht, IdleTimeout: idle, ErrorLog: errLog}
	type server struct {
		serve    func() error
		shutdown func(context.Context) error
	}
	var servers []server
	if p.fastOn && !cfg.NetHTTPOnly {
		// the h1 loop (h1.go) takes the connections and hands what it does not serve to data
		h1 := newH1Server(p, data, cfg.Listener.Addr(), rht, idle)
		servers = append(servers,
			server{func() error { return h1.serve(cfg.Listener) }, func(ctx context.Context) error {
				h1.closing.Store(true)
				_ = cfg.Listener.Close()
				return h1.shutdown(ctx)
			}},
			server{func() error { return data.Serve(h1.handoff) }, shutdownOrClose(data)})
	} else {
		ln := sendListener{Listener: cfg.Listener, timeout: p.sendTimeout}
		servers = append(servers, server{func() error { return data.Serve(ln) }, shutdownOrClose(data)})
	}
	if cfg.AdminListener != nil {
		h, err := p.AdminHandler(cfg.Admin)
		if err != nil {
			return fmt.Errorf("proxy: serve admin API: %w", err)
		}
		admin := &http.Server{Handler: h, ReadHeaderTimeout: rht, ReadTimeout: 30 * time.Second,
			WriteTimeout: 60 * time.Second, IdleTimeout: idle, ErrorLog: errLog}
		servers = append(servers, server{func() error { return admin.Serve(cfg.AdminListener) }, admin.Shutdown})
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.serve() }()
	}
	log.Info("proxy listening", "addr", cfg.Listener.Addr().String())
	if cfg.AdminListener != nil {
		log.Info("admin API listening", "addr", cfg.AdminListener.Addr().String())
	}
	var first error
	select {
	case <-ctx.Done():
	case err := <-errc:
		first = fmt.Errorf("proxy: serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	for _, s := range servers {
		if err := s.shutdown(sctx); err != nil && first == nil {
			first = fmt.Errorf("proxy: graceful shutdown: %w", err)
		}
	}
	_ = p.Close()
	return first
}

// shutdownOrClose shuts s down gracefully and, when the grace period ends first, closes its
// connections, which cancels the requests still running (and their upstream calls).
func shutdownOrClose(s *http.Server) func(context.Context) error {
	return func(ctx context.Context) error {
		err := s.Shutdown(ctx)
		if err != nil {
			_ = s.Close()
		}
		return err
	}
}
