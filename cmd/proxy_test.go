package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func runProxyCmd(ctx context.Context, env map[string]string, args ...string) (int, string, string) {
	var out, errb syncBuffer
	e := &Env{
		Stdout: &out, Stderr: &errb, Stdin: strings.NewReader(""),
		Getenv: func(k string) string { return env[k] },
		Now:    time.Now,
		Logger: slog.New(slog.NewTextHandler(&errb, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	code := Run(ctx, e, append([]string{"proxy"}, args...))
	return code, out.String(), errb.String()
}

func proxyTestFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProxyCmdRejectsBadInput(t *testing.T) {
	t.Parallel()
	tok := map[string]string{"CANARYCTL_ADMIN_TOKEN": "t"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no stable", tok, nil, "--stable"},
		{"bad percent", tok, []string{"--stable", "http://127.0.0.1:1", "--canary", "http://127.0.0.1:2", "--canary-percent", "2.555"}, "--canary-percent"},
		{"share without canary", tok, []string{"--stable", "http://127.0.0.1:1", "--canary-percent", "5"}, "split"},
		{"bad upstream", tok, []string{"--stable", "ftp://127.0.0.1:1"}, "upstreams.stable"},
		{"bad hash-on", tok, []string{"--stable", "http://127.0.0.1:1", "--hash-on", "body"}, "hashOn"},
		{"bad listen", tok, []string{"--stable", "http://127.0.0.1:1", "--listen", "8080"}, "--listen"},
		{"no admin token", nil, []string{"--stable", "http://127.0.0.1:1"}, "--admin-token"},
		{"insecure admin off loopback", nil, []string{"--stable", "http://127.0.0.1:1", "--admin-insecure", "--admin-listen", "0.0.0.0:0"}, "--admin-insecure"},
		{"unknown flag", tok, []string{"--stabel", "x"}, "unknown flag"},
		{"config unknown field", tok, []string{"--config", proxyTestFile(t, "a.yaml", "upstream:\n  stable: [http://127.0.0.1:1]\n")}, "field upstream not found"},
		{"config bad regex", tok, []string{"--config", proxyTestFile(t, "b.yaml", "upstreams: {stable: [http://127.0.0.1:1]}\nrules: [{match: {header: X-V, regex: '('}, cohort: canary}]\n")}, "rules[0].match.regex"},
		{"config bad cohort", tok, []string{"--config", proxyTestFile(t, "c.yaml", "upstreams: {stable: [http://127.0.0.1:1], blue: [http://127.0.0.1:2]}\n")}, "upstreams.blue"},
		{"missing config", tok, []string{"--config", "/nonexistent/proxy.yaml"}, "--config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runProxyCmd(t.Context(), tc.env, tc.args...)
			if code != ExitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 naming %q", code, stderr, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
				t.Fatalf("error is not one line: %q", stderr)
			}
		})
	}
}

// announcer is a log writer that hands each line to a channel, so that a test waits for what the
// process logs (an event) instead of polling it.
type announcer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (a *announcer) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf.Write(p)
	for {
		i := bytes.IndexByte(a.buf.Bytes(), '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(a.buf.Next(i + 1))
		select {
		case a.lines <- line:
		default: // nobody waits for more lines
		}
	}
}

// serveProxyCmd starts `canaryctl proxy` with its listeners on ports it binds itself (127.0.0.1:0:
// a test never hands out a port it closed) and returns the data and admin addresses it logs once it
// serves, and a channel with its exit code.
func serveProxyCmd(ctx context.Context, t *testing.T, env map[string]string, args ...string) (listen, admin string, done <-chan int) {
	t.Helper()
	logs := &announcer{lines: make(chan string, 64)}
	var out, errb syncBuffer
	e := &Env{
		Stdout: &out, Stderr: &errb, Stdin: strings.NewReader(""),
		Getenv: func(k string) string { return env[k] },
		Now:    time.Now,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	exit := make(chan int, 1)
	go func() {
		exit <- Run(ctx, e, append([]string{"proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, args...))
	}()
	addr := regexp.MustCompile(`msg="(proxy|admin API) listening" addr=(\S+)`)
	for listen == "" || admin == "" {
		select {
		case line := <-logs.lines:
			if m := addr.FindStringSubmatch(line); m != nil && m[1] == "proxy" {
				listen = m[2]
			} else if m != nil {
				admin = m[2]
			}
		case code := <-exit:
			t.Fatalf("proxy exited %d before serving: %s", code, errb.String())
		case <-t.Context().Done():
			t.Fatal("proxy did not serve before the test's deadline")
		}
	}
	return listen, admin, exit
}

func named(t *testing.T, name string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestProxyCmdServesAndIsDrivenBySubcommands runs `canaryctl proxy` and drives it with the client
// subcommands; cancelling the context shuts it down with exit 0.
func TestProxyCmdServesAndIsDrivenBySubcommands(t *testing.T) {
	t.Parallel()
	stable, canary := named(t, "stable"), named(t, "canary")
	cfg := proxyTestFile(t, "proxy.yaml", "rules:\n- name: forced\n  match: {header: X-Canary, equals: [always]}\n  cohort: canary\n")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	listen, adminAddr, done := serveProxyCmd(ctx, t, map[string]string{"CANARYCTL_ADMIN_TOKEN": "tok"}, "--config", cfg,
		"--stable", stable.URL, "--canary", canary.URL, "--canary-percent", "50")
	env := map[string]string{"CANARYCTL_ADMIN_TOKEN": "tok", "CANARYCTL_PROXY_ADMIN": "http://" + adminAddr}
	hit := func(hdr string) string {
		req, _ := http.NewRequest("GET", "http://"+listen+"/", nil)
		if hdr != "" {
			req.Header.Set("X-Canary", hdr)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	got := map[string]int{}
	for range 10 {
		got[hit("")]++
	}
	if got["stable"] != 5 || got["canary"] != 5 {
		t.Fatalf("50%% split served %v", got)
	}
	code, out, stderr := runProxyCmd(t.Context(), env, "split", "--canary-percent", "10")
	var s providers.Split
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || s.Canary != 1000 {
		t.Fatalf("split: exit %d out %q err %q", code, out, stderr)
	}
	if code, _, stderr := runProxyCmd(t.Context(), env, "split", "--canary-percent", "60", "--baseline-percent", "50"); code != ExitUsage {
		t.Fatalf("split over 100%%: exit %d (%s), want 2", code, stderr)
	}
	if code, _, stderr := runProxyCmd(t.Context(), map[string]string{"CANARYCTL_PROXY_ADMIN": "http://" + adminAddr}, "state", "--admin-token", "wrong"); code != ExitError || !strings.Contains(stderr, "401") {
		t.Fatalf("wrong token: exit %d stderr %q", code, stderr)
	}
	if code, out, _ := runProxyCmd(t.Context(), env, "rollback"); code != 0 || !strings.Contains(out, "stable") {
		t.Fatalf("rollback: exit %d %q", code, out)
	}
	if hit("always") != "stable" {
		t.Fatal("after rollback a canary rule still reached canary")
	}
	if code, _, stderr := runProxyCmd(t.Context(), env, "upstreams", "canary", canary.URL); code != 0 {
		t.Fatalf("upstreams: %d %s", code, stderr)
	}
	if hit("always") != "canary" {
		t.Fatal("the X-Canary rule from the config file did not apply")
	}
	if code, _, stderr := runProxyCmd(t.Context(), env, "promote"); code != 0 {
		t.Fatalf("promote: %d %s", code, stderr)
	}
	if hit("") != "canary" {
		t.Fatal("after promote stable is not the old canary")
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("proxy exit %d after shutdown", code)
	}
}
