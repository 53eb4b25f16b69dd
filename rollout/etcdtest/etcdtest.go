// Package etcdtest runs a real single-member etcd (the `etcd` binary, Debian package etcd-server)
// for tests: its data directory and its client and peer endpoints are unix sockets in a temporary
// directory the test owns, so no TCP port is handed out, parallel tests never collide, and a
// restarted member comes back on the same endpoint.
package etcdtest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a running etcd.
type Server struct {
	t       testing.TB
	dir     string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	logTail *tail
}

// Endpoint is the client endpoint, e.g. unix:///tmp/etcd123/c.sock:0.
func (s *Server) Endpoint() string { return "unix://" + filepath.Join(s.dir, "c.sock:0") }

// Binary returns the etcd binary's path; a test without it fails under CI=true and is skipped
// otherwise.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("etcd is not installed (Debian package etcd-server; .ci/run installs it): %v", err)
		}
		t.Skipf("etcd is not installed (apt-get install etcd-server): %v", err)
	}
	return p
}

// Start runs etcd until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	Binary(t)
	// A short directory: a unix socket's path must stay below 108 bytes.
	dir, err := os.MkdirTemp("", "etcd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{t: t, dir: dir}
	s.start()
	t.Cleanup(func() { s.Kill() })
	return s
}

type tail struct {
	mu    sync.Mutex
	lines []string
}

func (l *tail) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	if len(l.lines) > 40 {
		l.lines = l.lines[len(l.lines)-40:]
	}
	l.mu.Unlock()
}

func (l *tail) String() string { l.mu.Lock(); defer l.mu.Unlock(); return strings.Join(l.lines, "\n") }

// start launches etcd and waits for its "ready to serve client requests" line.
func (s *Server) start() {
	s.t.Helper()
	peer := "unix://p.sock:0"
	// A killed etcd leaves its socket files behind: bind would fail on them.
	for _, f := range []string{"c.sock:0", "p.sock:0"} {
		_ = os.Remove(filepath.Join(s.dir, f))
	}
	cmd := exec.Command(Binary(s.t), "--name", "n1", "--data-dir", filepath.Join(s.dir, "data"),
		"--listen-client-urls", "unix://c.sock:0", "--advertise-client-urls", "unix://c.sock:0",
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "n1="+peer)
	cmd.Dir = s.dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("etcdtest: start etcd: %v", err)
	}
	ready := make(chan struct{})
	exited := make(chan struct{})
	lt := &tail{}
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			lt.add(line)
			if strings.Contains(line, "ready to serve client requests") {
				once.Do(func() { close(ready) })
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case <-ready:
	case <-exited:
		s.t.Fatalf("etcdtest: etcd exited before it was ready:\n%s", lt)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		s.t.Fatalf("etcdtest: etcd not ready within 30s:\n%s", lt)
	}
	s.mu.Lock()
	s.cmd, s.exited, s.logTail = cmd, exited, lt
	s.mu.Unlock()
}

// Kill stops etcd with SIGKILL and waits for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Restart kills etcd and starts it again on the same data and endpoint.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// Log returns the last lines etcd wrote.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logTail == nil {
		return ""
	}
	return fmt.Sprint(s.logTail)
}
