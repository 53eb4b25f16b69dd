package conformance

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/canaryctl/canaryctl/providers/proxy"
)

// A corpus case: raw bytes a client sends, optionally a raw answer of the upstream, and the
// class of outcome nginx gives (recorded by running nginx 1.22.1 configured as in
// nginx_test.go; the test re-checks it whenever nginx is installed). canaryctl must give the
// same class, the same requests at the upstream and the same relayed answer, unless the case
// lists a deliberate difference with its reason.
type corpusCase struct {
	Name string `yaml:"name"`
	// From: where the case comes from (issue 15 item, RFC 9112 section, desync literature).
	From string `yaml:"from"`
	// Request is written in one write. Then "abort" closes the connection right after it.
	Request string `yaml:"request"`
	Then    string `yaml:"then"`
	// Answer is the upstream's raw answer to the first request ("-": close without answering);
	// empty: "for <target>" with a correct Content-Length. AnswerThenClose closes after it.
	Answer          string `yaml:"answer"`
	AnswerThenClose bool   `yaml:"answerThenClose"`
	// Timeouts (a duration) sets the client body and send timeouts of both gateways (nginx's
	// client_body_timeout and send_timeout, canaryctl's timeouts.clientBody and .send) for a
	// case that stalls, so it ends in seconds, not at the 60 s defaults.
	Timeouts string `yaml:"timeouts"`
	// LateBytes are written by the upstream on the same connection after the client has read
	// the answer: bytes arriving on a connection the gateway holds idle.
	LateBytes string `yaml:"lateBytes"`
	// Nginx is nginx's outcome: "<first>+<next>" where first is answered (a status below 400),
	// 4xx, 5xx, closed (no answer, or an answer cut short) or aborted (the client left), and
	// next is what a follow-up request on the same connection gets: keep (its own answer),
	// close, desync (another request's answer, or garbage) or hang; "-" when there is none.
	// Alternatives separated by " | " are a race inside nginx (Why says which).
	Nginx string `yaml:"nginx"`
	// Canaryctl and Why: a deliberate difference, canaryctl's outcome and the reason.
	// NetHTTPOnly overrides it for the netHTTPOnly front alone.
	Canaryctl   string `yaml:"canaryctl"`
	NetHTTPOnly string `yaml:"netHTTPOnly"`
	Why         string `yaml:"why"`
	// WantAnswer: the answer canaryctl must relay when it deliberately differs from nginx's.
	WantAnswer string `yaml:"wantAnswer"`
	// SameUpstream false: the requests at the upstream may differ (explained in Why).
	SameUpstream *bool `yaml:"sameUpstream"`
}

type corpus struct {
	Cases []corpusCase `yaml:"cases"`
}

func loadCorpus(t *testing.T) []corpusCase {
	t.Helper()
	b, err := os.ReadFile("testdata/corpus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c corpus
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("testdata/corpus.yaml: %v", err)
	}
	seen := map[string]bool{}
	for i, cc := range c.Cases {
		switch {
		case cc.Name == "" || seen[cc.Name]:
			t.Fatalf("corpus case %d: name %q is empty or repeated", i, cc.Name)
		case cc.Request == "" || cc.Nginx == "":
			t.Fatalf("corpus case %s: request and nginx are required", cc.Name)
		case cc.Timeouts != "" && !validTimeout(cc.Timeouts):
			t.Fatalf("corpus case %s: timeouts %q: whole seconds, 1s to 5s", cc.Name, cc.Timeouts)
		case cc.Then != "" && cc.Then != "abort":
			t.Fatalf("corpus case %s: then %q: the only one is abort", cc.Name, cc.Then)
		case !validClasses(cc.Nginx, cc.Canaryctl, cc.NetHTTPOnly):
			t.Fatalf("corpus case %s: an outcome does not match %s", cc.Name, classRe)
		case (cc.Canaryctl != "" || cc.NetHTTPOnly != "" || cc.SameUpstream != nil || cc.WantAnswer != "" || strings.Contains(cc.Nginx, "|")) && len(cc.Why) < 20:
			t.Fatalf("corpus case %s: a deliberate difference needs its reason in why", cc.Name)
		}
		seen[cc.Name] = true
	}
	return c.Cases
}

var classRe = regexp.MustCompile(`^(answered|4xx|5xx|closed|aborted|garbage|hang)\+(keep|close|desync|hang|-)$`)

func validClasses(nginx, canaryctl, netHTTPOnly string) bool {
	for _, c := range append(strings.Split(nginx, " | "), canaryctl, netHTTPOnly) {
		if c != "" && !classRe.MatchString(c) {
			return false
		}
	}
	return nginx != ""
}

// validTimeout: nginx and canaryctl both read whole seconds ("2s"); the harness waits the
// timeout plus answerWait for the first answer.
func validTimeout(s string) bool {
	d, err := time.ParseDuration(s)
	return err == nil && d >= time.Second && d <= 5*time.Second && d%time.Second == 0 && s == d.String()
}

// expand replaces BIG<n>K and BIG<n>M in a request by that many 'x' (a corpus line stays
// readable).
func expand(s string) string {
	return bigRe.ReplaceAllStringFunc(s, func(m string) string {
		sub := bigRe.FindStringSubmatch(m)
		n, _ := strconv.Atoi(sub[1])
		if sub[2] == "M" {
			return strings.Repeat("x", n<<20)
		}
		return strings.Repeat("x", n<<10)
	})
}

var bigRe = regexp.MustCompile(`BIG(\d+)([KM])`)

// outcome is what one gateway did with one case.
type outcome struct {
	Class    string   // "<first>+<next>", see corpusCase.Nginx
	Answer   string   // the relayed answer when first is "answered"
	Upstream []string // what reached the upstream, follow-ups left out
	Raw      string   // the raw bytes the client read, for the failure message
}

func (o outcome) String() string {
	return fmt.Sprintf("%s\n      answer:   %s\n      upstream: %q\n      raw:      %q", o.Class, o.Answer, o.Upstream, o.Raw)
}

const (
	answerWait = 3 * time.Second // a gateway answers a loopback case in milliseconds; longer is a hang
)

// exchange plays the case on a fresh connection from dial and classifies what happens.
func exchange(t *testing.T, tg target, cc corpusCase) outcome {
	t.Helper()
	c, err := tg.dial()
	if err != nil {
		t.Errorf("%s: dial: %v", tg.name, err)
		return outcome{Class: "dial error"}
	}
	defer c.Close()
	if _, err := io.WriteString(c, expand(cc.Request)); err != nil {
		return outcome{Class: "closed+-", Raw: "write: " + err.Error()}
	}
	if cc.Then == "abort" {
		_ = c.Close()
		return outcome{Class: "aborted+-"}
	}
	var raw bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &raw))
	method, _, _ := strings.Cut(cc.Request, " ")
	stall, _ := time.ParseDuration(cc.Timeouts) // validated by loadCorpus; 0 when unset
	_ = c.SetReadDeadline(time.Now().Add(stall + answerWait))
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(br, &http.Request{Method: method}) // 100 Continue: the answer follows
	}
	if err != nil {
		return outcome{Class: failClass(err) + "+-", Raw: raw.String()}
	}
	first := "answered"
	switch {
	case resp.StatusCode >= 500:
		first = "5xx"
	case resp.StatusCode >= 400:
		first = "4xx"
	}
	answer := fmt.Sprintf("%d", resp.StatusCode)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// the upstream echoes what reached it after the 101
		buf := make([]byte, 512)
		n, _ := io.ReadAtLeast(br, buf, 1)
		return outcome{Class: first + "+-", Answer: answer + " then " + string(buf[:n]), Raw: raw.String()}
	}
	body, berr := io.ReadAll(resp.Body)
	if berr != nil {
		// an answer cut short is, to the client, no answer
		return outcome{Class: "closed+-", Answer: fmt.Sprintf("%s body %q cut: %v", answer, body, berr), Raw: raw.String()}
	}
	answer += fmt.Sprintf(" body %q", body)
	if resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified || resp.StatusCode < 200 {
		// a body-less status must not announce a body (RFC 9110 §8.6)
		answer += fmt.Sprintf(" content-length %q transfer-encoding %q", resp.Header.Values("Content-Length"), resp.TransferEncoding)
	}
	if first != "answered" {
		answer = fmt.Sprintf("%d", resp.StatusCode) // proxies word their own errors differently
	}
	if cc.LateBytes != "" {
		close(tg.up.sendLate)
		select {
		case <-tg.up.lateSent:
		case <-time.After(answerWait):
			t.Errorf("%s: the upstream was not asked for a second time", tg.name)
		}
	}
	wait := answerWait
	if tg.nginx != nil && strings.Contains(cc.Nginx, "+hang") {
		// nginx may hang here (a race the case documents), and a hang is accepted: no need
		// to wait the full time for it
		wait = 300 * time.Millisecond
	}
	return outcome{Class: first + "+" + follow(c, br, wait), Answer: answer, Raw: raw.String()}
}

// follow sends a follow-up request on the connection and says what it got: keep (its own
// answer), close, desync (someone else's answer, or garbage) or hang.
func follow(c net.Conn, br *bufio.Reader, wait time.Duration) string {
	_, _ = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: conformance\r\n\r\n", nextPath)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if fc := failClass(err); fc != "closed" {
			return fc
		}
		return "close"
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && string(body) == "for "+nextPath {
		return "keep"
	}
	return "desync"
}

// failClass names a failed read: hang (the deadline passed), closed (the connection ended,
// possibly in the middle of an answer) or garbage (bytes that are not an HTTP answer).
func failClass(err error) string {
	var ne net.Error
	var op *net.OpError
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "hang"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &op):
		return "closed"
	default:
		return "garbage"
	}
}

// target is one gateway under test for one case.
type target struct {
	name        string
	dial        func() (net.Conn, error)
	up          *upstream
	px          *proxy.Proxy // canaryctl only
	netHTTPOnly bool         // canaryctl's net/http front
	nginx       *nginxServer // nginx only
	index       int          // the case's server block in nginx
}

// TestConformance runs every corpus case against canaryctl's two fronts and nginx.
func TestConformance(t *testing.T) {
	cases := loadCorpus(t)
	dialer, clientIP := ownSource(t)
	bin := findNginx(t)
	var ngx *nginxServer
	nginxUps := make([]*upstream, len(cases))
	if bin != "" {
		addrs := make([]string, len(cases))
		for i, cc := range cases {
			nginxUps[i] = startUpstream(t, cc)
			addrs[i] = nginxUps[i].addr()
		}
		ngx = startNginx(t, bin, addrs, cases)
	}
	gateways := "canaryctl's h1 loop and netHTTPOnly front against the classes recorded from nginx"
	if ngx != nil {
		gateways = "nginx (live), canaryctl's h1 loop and netHTTPOnly front"
	}
	t.Logf("conformance: %d corpus cases on %s", len(cases), gateways)
	t.Run("case", func(t *testing.T) {
		for i, cc := range cases {
			t.Run(cc.Name, func(t *testing.T) {
				t.Parallel()
				var targets []target
				if ngx != nil {
					targets = append(targets, target{name: "nginx", up: nginxUps[i], nginx: ngx, index: i,
						dial: func() (net.Conn, error) { return net.Dial("unix", ngx.sock(i)) }})
				}
				for _, front := range []struct {
					name        string
					netHTTPOnly bool
				}{{"canaryctl h1 loop", false}, {"canaryctl netHTTPOnly", true}} {
					up := startUpstream(t, cc)
					p, addr := startProxy(t, up, front.netHTTPOnly, clientIP, cc.Timeouts)
					targets = append(targets, target{name: front.name, up: up, px: p, netHTTPOnly: front.netHTTPOnly,
						dial: func() (net.Conn, error) { return dialer.Dial("tcp", addr) }})
				}
				runCase(t, cc, targets)
			})
		}
	})
}

// startProxy runs the proxy as `canaryctl proxy --stable <up>` does (through its file
// configuration, so the defaults are the command's), on the h1 loop or net/http only, with the
// case's timeouts, accepting connections from clientIP only (when set).
func startProxy(t *testing.T, up *upstream, netHTTPOnly bool, clientIP net.IP, timeouts string) (*proxy.Proxy, string) {
	t.Helper()
	// the default sample ring (262,144 samples) per proxy would dominate the suite's time and memory
	yml := fmt.Sprintf("upstreams: {stable: [\"http://%s\"]}\nnetHTTPOnly: %v\nsampleCapacity: 1024\n", up.addr(), netHTTPOnly)
	if timeouts != "" {
		yml += fmt.Sprintf("timeouts: {clientBody: %s, send: %s}\n", timeouts, timeouts)
	}
	fc, err := proxy.ParseFileConfig([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := fc.ProxyConfig()
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if clientIP != nil {
		ln = ownListener{ln, clientIP}
	}
	done := make(chan error, 1)
	go func() {
		done <- p.Serve(t.Context(), proxy.ServeConfig{Listener: ln, NetHTTPOnly: fc.NetHTTPOnly,
			ReadHeaderTimeout: fc.Timeouts.ReadHeader, ShutdownTimeout: time.Second})
	}()
	t.Cleanup(func() { <-done }) // t.Context() is cancelled first
	return p, ln.Addr().String()
}

func runCase(t *testing.T, cc corpusCase, targets []target) {
	// the gateways are independent (each has its own upstream): play the case on all at once
	outcomes := make([]outcome, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Go(func() {
			o := exchange(t, tg, cc)
			settle(t, tg, o)
			o.Upstream = completeRequests(tg.up.requests())
			outcomes[i] = o
		})
	}
	wg.Wait()
	var ref *outcome
	var nginxLogged []string
	for i, tg := range targets {
		o := outcomes[i]
		if tg.nginx != nil {
			nginxLogged = tg.nginx.loggedStatuses(tg.index)
		}
		want := strings.Split(cc.Nginx, " | ")
		differs := false // deliberately, for this gateway
		switch {
		case tg.netHTTPOnly && cc.NetHTTPOnly != "":
			want, differs = []string{cc.NetHTTPOnly}, true
		case tg.px != nil && cc.Canaryctl != "":
			want, differs = []string{cc.Canaryctl}, true
		}
		if tg.px != nil {
			checkCounted(t, tg, cc, nginxLogged, differs)
		}
		if !slices.Contains(want, o.Class) {
			t.Errorf("%s: outcome %s\n    want %s (%s)", tg.name, o, strings.Join(want, " or "), cc.From)
			continue
		}
		if tg.nginx != nil {
			ref = &o
			continue
		}
		if cc.WantAnswer != "" {
			if o.Answer != cc.WantAnswer {
				t.Errorf("%s: relayed %s, want %s (%s)", tg.name, o.Answer, cc.WantAnswer, cc.Why)
			}
		} else if ref != nil && !differs && strings.HasPrefix(o.Class, "answered") && o.Answer != ref.Answer {
			t.Errorf("%s: relayed %s, nginx relayed %s", tg.name, o.Answer, ref.Answer)
		}
		if ref != nil && !differs && (cc.SameUpstream == nil || *cc.SameUpstream) && !slices.Equal(o.Upstream, ref.Upstream) {
			t.Errorf("%s: the upstream received\n      %q\n    behind nginx it received\n      %q", tg.name, o.Upstream, ref.Upstream)
		}
	}
}

// completeRequests leaves out requests whose body was cut off: a gateway that streams a body
// and aborts it when the client's framing fails or the client leaves is, for the upstream,
// equivalent to nginx's buffering it and never asking (the upstream cannot act on half a
// request; what counts is recorded by checkCounted). A complete request the client did not
// send stays in: that is smuggling.
func completeRequests(reqs []string) []string {
	return slices.DeleteFunc(reqs, func(r string) bool { return strings.HasSuffix(r, cutMark) })
}

// settle waits until the gateway is done with a case whose client left or got no answer:
// nginx logs it, canaryctl counts it in its metrics (client errors included).
func settle(t *testing.T, tg target, o outcome) {
	t.Helper()
	if !strings.HasPrefix(o.Class, "aborted") && !strings.HasPrefix(o.Class, "closed") {
		return
	}
	for deadline := time.Now().Add(answerWait); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if tg.nginx != nil && len(tg.nginx.loggedStatuses(tg.index)) > 0 ||
			tg.px != nil && len(counted(t, tg.px)) > 0 {
			return
		}
	}
}

var countedRe = regexp.MustCompile(`(?m)^canaryctl_proxy_requests_total\{[^}]*\bcode="([^"]*)"[^}]*\} (\d+)$`)

// counted returns how many requests canaryctl counted per status code, as its /metrics shows,
// the follow-ups' 200s included.
func counted(t *testing.T, p *proxy.Proxy) map[string]int {
	t.Helper()
	rec := httptest.NewRecorder()
	p.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	out := map[string]int{}
	for _, m := range countedRe.FindAllStringSubmatch(rec.Body.String(), -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] += n
	}
	return out
}

// checkCounted: what canaryctl counts never blames a cohort for a client's error. In a case
// without a scripted upstream answer the upstream answers every request correctly, so a 5xx in
// the request log the analysis reads, or in the metrics, is a client's error counted against
// the cohort. In those cases, where nginx ran and canaryctl does not differ deliberately, every
// status class canaryctl counted beyond 2xx must be one nginx logged too (499 for a client that
// left, 408 for a stalled upload, 400 for bad framing). (With a scripted upstream answer they
// may differ on purpose: an upstream that breaks off its answer after the status line is a 200
// in nginx's log and a 502 in canaryctl's count, which is what the canary analysis must see.)
func checkCounted(t *testing.T, tg target, cc corpusCase, nginxLogged []string, differs bool) {
	t.Helper()
	if cc.Answer != "" {
		return
	}
	reqs, err := tg.px.Requests(t.Context(), time.Time{}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		if r.Status >= 500 {
			t.Errorf("%s: the request log holds status %d for the %s cohort although the upstream answered correctly: a client's error counted against the cohort (%s)", tg.name, r.Status, r.Cohort, cc.From)
		}
	}
	codes := counted(t, tg.px)
	for code, n := range codes {
		if strings.HasPrefix(code, "5") {
			t.Errorf("%s: counted %d × %s although the upstream answered correctly: a client's error counted as the upstream's (%s)", tg.name, n, code, cc.From)
		}
	}
	if nginxLogged == nil || differs {
		return
	}
	classes := map[byte]bool{}
	for _, s := range nginxLogged {
		classes[s[0]] = true
	}
	for code := range codes {
		if code[0] != '2' && !classes[code[0]] {
			t.Errorf("%s: counted a %s where nginx logged %q", tg.name, code, nginxLogged)
		}
	}
}

// The suite's connections to canaryctl come from clientIP where it can be bound (Linux routes
// all of 127.0.0.0/8 to loopback), and the proxies' listeners drop any other: a test elsewhere
// that dials a port it closed, which the kernel then gave to a proxy here, comes from
// 127.0.0.1 and would otherwise send its request through to the recording upstream.
func ownSource(t *testing.T) (*net.Dialer, net.IP) {
	t.Helper()
	ip := net.IPv4(127, 0, 0, 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Logf("cannot dial from %s (%v): the proxies accept connections from anywhere", ip, err)
		return &net.Dialer{}, nil
	}
	_ = c.Close()
	return d, ip
}

// ownListener accepts only connections from one source address; the accepted connection is
// the listener's own (*net.TCPConn), so the h1 loop serves it as any other.
type ownListener struct {
	net.Listener
	from net.IP
}

func (l ownListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok && a.IP.Equal(l.from) {
			return c, nil
		}
		_ = c.Close()
	}
}
