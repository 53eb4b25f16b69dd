package examples_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/canaryctl/canaryctl/cmd"
	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/proxy"
	"github.com/canaryctl/canaryctl/providers/proxy/proxytest"
)

// syncBuffer is a goroutine-safe buffer: a container log gets stdout and stderr interleaved.
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

// canaryctl runs the real command in process, as the binary would, and returns its exit code.
func canaryctl(ctx context.Context, args []string, vars map[string]string, stdout, stderr io.Writer) int {
	env := &cmd.Env{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr, Now: time.Now,
		Getenv: func(k string) string { return vars[k] },
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	return cmd.Run(ctx, env, args)
}

// fastSteps replaces an example's schedule: two short steps, each long enough for about six 1 s
// points, which Mann-Whitney needs to call a difference significant at Kayenta's 98%.
var fastSteps = []any{
	map[string]any{"weight": 10, "duration": "6s", "interval": "3s", "warmup": "0s"},
	map[string]any{"weight": 50, "duration": "6s", "interval": "3s", "warmup": "0s"},
}

// latencyTolerance is the allowed P99 increase in the tests: identical servers on a loaded shared
// machine differ by 2x in P99 over a few 1 s points. The tests check the pipeline and the examples'
// wiring; a 5xx canary still fails the critical error metric.
const latencyTolerance = 10

// shorten rewrites a spec (as a YAML map) for a test: the fast schedule, 1 s points and the latency
// tolerance above (on the spec's latency metrics, or on Kayenta's defaults when it names none).
func shorten(spec map[string]any) {
	spec["steps"] = fastSteps
	an, _ := spec["analysis"].(map[string]any)
	if an == nil {
		an = map[string]any{}
		spec["analysis"] = an
	}
	an["resolution"] = "1s"
	metrics, _ := an["metrics"].([]any)
	if len(metrics) == 0 { // rollout.DefaultMetrics, spelled out
		metrics = []any{
			map[string]any{"name": "p99-latency", "kind": "latency", "quantile": 0.99, "direction": "increase", "mustHaveData": true, "group": "latency"},
			map[string]any{"name": "5xx-rate", "kind": "error_rate", "direction": "increase", "critical": true, "nanStrategy": "replace", "group": "errors"},
		}
		an["metrics"] = metrics
	}
	for _, m := range metrics {
		if m := m.(map[string]any); m["kind"] == "latency" {
			es, _ := m["effectSize"].(map[string]any)
			if es == nil {
				es = map[string]any{}
				m["effectSize"] = es
			}
			es["allowedIncrease"] = latencyTolerance
		}
	}
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// waitAddrFile waits for the address a `demo-service --addr-file` writes once it listens (or fails
// the test when the service exits first, or after 10 s).
func waitAddrFile(t *testing.T, path string, exited <-chan struct{}) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return strings.TrimSpace(string(b))
		} else if !os.IsNotExist(err) {
			t.Fatalf("read %s: %v", path, err)
		}
		select {
		case <-exited:
			t.Fatalf("the service exited before writing %s", path)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address in %s after 10 s", path)
		}
		time.Sleep(20 * time.Millisecond) // polling a file another goroutine writes once
	}
}

var embeddedProxyRE = regexp.MustCompile(`: embedded proxy on (http://\S+)`)

// waitProxyURL waits for `canaryctl run` to name its embedded proxy's address on stderr and returns
// it, or the run's exit code when it ends first.
func waitProxyURL(stderr *syncBuffer, exited <-chan int) (code int, url string) {
	for {
		if m := embeddedProxyRE.FindStringSubmatch(stderr.String()); m != nil {
			return 0, m[1]
		}
		select {
		case code := <-exited:
			return code, ""
		case <-time.After(20 * time.Millisecond): // polling the run's stderr for its first line
		}
	}
}

// load sends about rps requests/s to url until ctx ends (bounded by max requests), like the
// examples' curl --rate line.
func load(ctx context.Context, url string, rps, max int) {
	cl := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(rps))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for range max {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if resp, err := cl.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
}

// waitHTTP polls url until it answers 200 (or fails the test after 10 s).
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come up: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a server that starts in another goroutine
	}
}

// cluster stands in for what the Spinnaker example runs against: stable, baseline and canary
// services and a `canaryctl proxy` with its admin API behind a token.
type cluster struct {
	stable, baseline, canary *httptest.Server
	canaryStatus             atomic.Int32
	px                       *proxy.Proxy
	listen, admin            string
}

const adminToken = "example-admin-token"

func newCluster(t *testing.T, canaryStatus int) *cluster {
	t.Helper()
	c := &cluster{}
	c.canaryStatus.Store(int32(canaryStatus))
	serve := func(status func() int) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			// A service takes a moment to answer; without it a loaded test machine's scheduling
			// noise would be all that P99 latency measures.
			time.Sleep(2 * time.Millisecond)
			w.WriteHeader(status())
		}))
		t.Cleanup(s.Close)
		return s
	}
	ok := func() int { return http.StatusOK }
	c.stable, c.baseline = serve(ok), serve(ok)
	c.canary = serve(func() int { return int(c.canaryStatus.Load()) })
	srv := proxytest.Start(t, proxy.Config{Upstreams: map[providers.Cohort][]string{providers.Stable: {c.stable.URL}}}, adminToken)
	c.px, c.listen, c.admin = srv.Proxy, srv.URL, srv.AdminURL
	return c
}

// shell is one command line of a CI script, split the way a POSIX shell would for the simple
// lines the examples use: words (with '…' and "…" quotes), > FILE, 2>&1 and a trailing &.
type shell struct {
	line       string
	args       []string
	stdout     string // > FILE
	background bool
}

func parseShell(line string) (shell, error) {
	sh := shell{line: line}
	var words []string
	var cur strings.Builder
	inWord, quote := false, byte(0)
	flush := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			} else {
				cur.WriteByte(ch)
			}
		case ch == '\'' || ch == '"':
			quote, inWord = ch, true
		case ch == '#' && !inWord:
			i = len(line)
		case ch == ' ' || ch == '\t':
			flush()
		case ch == '$' || ch == '`' || ch == '|' || ch == ';':
			return sh, fmt.Errorf("%q: %q is more shell than the example test understands", line, ch)
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if quote != 0 {
		return sh, fmt.Errorf("%q: unterminated quote", line)
	}
	flush()
	for i := 0; i < len(words); i++ {
		switch w := words[i]; {
		case w == "&" && i == len(words)-1:
			sh.background = true
		case w == ">" && i+1 < len(words):
			sh.stdout = words[i+1]
			i++
		case w == "2>&1":
		case strings.HasPrefix(w, ">") || strings.HasPrefix(w, "2>") || w == "&":
			return sh, fmt.Errorf("%q: redirection %q not understood", line, w)
		default:
			sh.args = append(sh.args, w)
		}
	}
	return sh, nil
}

// canaryctlLines returns the canaryctl command lines of a script (continuation lines joined,
// comments and other commands left out).
func canaryctlLines(t *testing.T, scripts ...string) []shell {
	t.Helper()
	var out []shell
	for _, script := range scripts {
		script = strings.ReplaceAll(script, "\\\n", " ")
		for _, line := range strings.Split(script, "\n") {
			line = strings.TrimSpace(line)
			if f := strings.Fields(line); len(f) == 0 || f[0] != "canaryctl" {
				continue
			}
			sh, err := parseShell(line)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, sh)
		}
	}
	return out
}

// flagValue returns the value of --name in args ("" if absent).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// setFlag replaces the value of --name in args.
func setFlag(args []string, name, value string) []string {
	out := append([]string(nil), args...)
	for i, a := range out {
		if a == name && i+1 < len(out) {
			out[i+1] = value
		} else if strings.HasPrefix(a, name+"=") {
			out[i] = name + "=" + value
		}
	}
	return out
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://"))
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func repoPath(rel string) string { return filepath.Join("..", filepath.FromSlash(rel)) }
