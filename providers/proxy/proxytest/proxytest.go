// Package proxytest runs a real built-in proxy on loopback for tests, the way net/http/httptest runs a
// server: a proxy listener and an admin listener on free 127.0.0.1 ports, stopped when the test ends.
package proxytest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers/proxy"
)

// Server is a running proxy: drive it in process through Proxy, or over HTTP at URL and AdminURL.
type Server struct {
	*proxy.Proxy
	URL      string // the proxy listener, e.g. "http://127.0.0.1:41234"
	AdminURL string // the admin API, protected by the token given to Start
}

// Start builds a proxy from cfg and serves it until the test ends; the admin API needs token.
func Start(t testing.TB, cfg proxy.Config, token string) *Server {
	t.Helper()
	px, err := proxy.New(cfg)
	if err != nil {
		t.Fatalf("proxytest: new proxy: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxytest: listen: %v", err)
	}
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = l.Close()
		t.Fatalf("proxytest: listen admin: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = px.Serve(ctx, proxy.ServeConfig{Listener: l, AdminListener: al,
			Admin: proxy.AdminConfig{Token: token}, ShutdownTimeout: time.Second})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return &Server{Proxy: px, URL: "http://" + l.Addr().String(), AdminURL: "http://" + al.Addr().String()}
}
