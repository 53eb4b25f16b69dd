package conformance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nginxServer is one nginx process serving one server block per case, each on its own unix
// socket (no port is handed out and closed) and proxying to that case's own upstream.
type nginxServer struct {
	dir string
}

func (n *nginxServer) sock(i int) string      { return filepath.Join(n.dir, fmt.Sprintf("c%d.sock", i)) }
func (n *nginxServer) accessLog(i int) string { return filepath.Join(n.dir, fmt.Sprintf("c%d.log", i)) }

// findNginx returns nginx's path, or "" when it is not installed (a failure under CI=true).
func findNginx(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx is not installed; CI installs it (.ci/run) because the conformance suite compares the proxy with it")
	}
	t.Log("nginx is not installed: the proxy is checked against the classes recorded from nginx in testdata/corpus.yaml only (apt-get install nginx-light to compare live)")
	return ""
}

// nginxHead and nginxServerBlock are nginx's standard reverse-proxy setup: HTTP/1.1 and
// keep-alive to the upstream, WebSocket upgrades passed, X-Forwarded-For set (the test upstream
// tells the gateway's connections by it), everything else at its default (request buffering on, 1 MiB body
// limit, 8 KiB header lines, underscores in header names ignored).
const nginxHead = `worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 1024; }
http {
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    log_format cfm '$status $request';
    map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
`

const nginxServerBlock = `    upstream u%[1]d { server %[2]s; keepalive 4; }
    server {
        listen unix:%[3]s;
        access_log %[4]s cfm;%[5]s
        location / {
            proxy_pass http://u%[1]d;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
    }
`

// startNginx writes the configuration for the given upstream addresses (one server block
// each, with the case's timeouts), starts nginx in the foreground and waits until every socket accepts.
func startNginx(t *testing.T, bin string, upstreams []string, cases []corpusCase) *nginxServer {
	t.Helper()
	// unix socket paths are limited to 108 bytes: a short directory, not t.TempDir()
	dir, err := os.MkdirTemp("", "cfm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	// run as root, nginx's workers are nobody: they must reach the body temp directory in it
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := &nginxServer{dir: dir}
	var conf strings.Builder
	fmt.Fprintf(&conf, nginxHead, dir)
	for i, up := range upstreams {
		extra := ""
		if d := cases[i].Timeouts; d != "" {
			extra = fmt.Sprintf("\n        client_body_timeout %s;\n        send_timeout %s;", d, d)
		}
		fmt.Fprintf(&conf, nginxServerBlock, i, up, n.sock(i), n.accessLog(i), extra)
	}
	conf.WriteString("}\n")
	cfg := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-p", dir, "-c", cfg, "-e", filepath.Join(dir, "error.log"))
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) } // SIGINT: fast shutdown
	cmd.WaitDelay = 5 * time.Second
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start nginx: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	// nginx reports readiness only by accepting: wait for the last socket (they are bound in order)
	last := n.sock(len(upstreams) - 1)
	for deadline := time.Now().Add(15 * time.Second); ; {
		c, err := net.Dial("unix", last)
		if err == nil {
			_ = c.Close()
			return n
		}
		select {
		case err := <-exited:
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %v\n%s%s", err, out.String(), errLog)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen on %s within 15 s: %v", last, errors.Join(err))
		}
	}
}

// loggedStatuses returns the statuses nginx logged for case i, follow-ups left out.
func (n *nginxServer) loggedStatuses(i int) []string {
	b, _ := os.ReadFile(n.accessLog(i))
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" || strings.Contains(line, nextPath) {
			continue
		}
		out = append(out, strings.SplitN(line, " ", 2)[0])
	}
	return out
}
