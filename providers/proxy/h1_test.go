package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// TestParseHeadServesOnlyPlainBodilessRequests: the h1 loop takes a request only when every reading
// of it is a bodiless GET/HEAD/OPTIONS with one Host; everything else is handed to net/http.
func TestParseHeadServesOnlyPlainBodilessRequests(t *testing.T) {
	t.Parallel()
	many := "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-N: 1\r\n", h1MaxHeaders+1) + "\r\n"
	for _, tc := range []struct {
		name  string
		head  string
		serve bool
		close bool
	}{
		{"plain get", "GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", true, false},
		{"head", "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", true, false},
		{"options", "OPTIONS /x HTTP/1.1\r\nHost: x\r\n\r\n", true, false},
		{"connection close", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true, true},
		{"connection keep-alive", "GET / HTTP/1.1\r\nHost: x\r\nconnection: Keep-Alive\r\n\r\n", true, false},
		{"empty header value", "GET / HTTP/1.1\r\nHost: x\r\nX-E:\r\n\r\n", true, false},
		{"post", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n", false, false},
		{"get with content-length 0", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", false, false},
		{"get with transfer-encoding", "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", false, false},
		{"http/1.0", "GET / HTTP/1.0\r\nHost: x\r\n\r\n", false, false},
		{"absolute form", "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", false, false},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", false, false},
		{"no host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", false, false},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false, false},
		{"host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", false, false},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", false, false},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n", false, false},
		{"bare LF in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\nContent-Length: 5\r\n\r\n", false, false},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rX\r\n\r\n", false, false},
		{"control byte in target", "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", false, false},
		{"non-ascii target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", false, false},
		{"extra space in request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", false, false},
		{"upgrade", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false, false},
		{"expect", "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", false, false},
		{"connection names a header", "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Hop\r\n\r\n", false, false},
		{"header without colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", false, false},
		{"lower-case method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", false, false},
		{"too many headers", many, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var h h1Head
			if got := parseHead([]byte(tc.head), &h); got != tc.serve {
				t.Fatalf("parseHead = %v, want %v", got, tc.serve)
			}
			if tc.serve && h.close != tc.close {
				t.Fatalf("close = %v, want %v", h.close, tc.close)
			}
		})
	}
}

// TestReadHeadLimits: a head larger than the read buffer is handed off, not truncated.
func TestReadHeadLimits(t *testing.T) {
	t.Parallel()
	big := "GET / HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("c", h1ReadBuf) + "\r\n\r\n"
	br := bufio.NewReaderSize(strings.NewReader(big), h1ReadBuf)
	var h h1Head
	if n, err := readHead(br, &h, func() {}); n != 0 || err != nil {
		t.Fatalf("readHead of a %d-byte head = %d, %v; want a hand-off (0, nil)", len(big), n, err)
	}
	if br.Buffered() == 0 {
		t.Fatal("readHead consumed the head it handed off")
	}
	// A head that arrives in pieces is read whole.
	pr, pw := io.Pipe()
	go func() {
		for _, part := range []string{"GET /p", "iece HTTP/1.1\r\nHo", "st: a\r\n", "\r\n"} {
			_, _ = io.WriteString(pw, part)
		}
	}()
	br = bufio.NewReaderSize(pr, h1ReadBuf)
	n, err := readHead(br, &h, func() {})
	if err != nil || n != len("GET /piece HTTP/1.1\r\nHost: a\r\n\r\n") || string(h.target) != "/piece" {
		t.Fatalf("readHead of a split head = %d, %v, target %q", n, err, h.target)
	}
}

// scriptedUpstream is a loopback upstream that answers each request with the raw bytes registered for
// its path (closing the connection after answers whose key ends in "!"). It counts connections.
type scriptedUpstream struct {
	url   string
	conns atomic.Int32
}

func newScriptedUpstream(t *testing.T, answers map[string]string) *scriptedUpstream {
	t.Helper()
	u := &scriptedUpstream{}
	u.url = rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		u.conns.Add(1)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			a, closeAfter := answers[req.URL.Path], false
			if a == "" {
				a, closeAfter = answers[req.URL.Path+"!"], true
			}
			if a == "" {
				a = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.Method)+1+len(body), req.Method+" "+string(body))
			}
			if req.Method == http.MethodHead {
				a = a[:strings.Index(a, "\r\n\r\n")+4] // the head only, as a server must
			}
			if _, err := io.WriteString(c, a); err != nil || closeAfter {
				return
			}
		}
	})
	return u
}

// rawClient is one keep-alive client connection to the proxy.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, proxyURL string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

// do sends a request and reads the answer whole (body and trailers).
func (rc *rawClient) do(method, path, extra, body string) (*http.Response, string) {
	rc.t.Helper()
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: front\r\n%s", method, path, extra)
	if body != "" {
		head += fmt.Sprintf("Content-Length: %d\r\n", len(body))
	}
	if _, err := io.WriteString(rc.c, head+"\r\n"+body); err != nil {
		rc.t.Fatalf("%s %s: write: %v", method, path, err)
	}
	return rc.read(method)
}

func (rc *rawClient) read(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("%s: read response: %v", method, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("%s: read body: %v", method, err)
	}
	return resp, string(b)
}

// TestH1RelaysEveryResponseFraming: one keep-alive client connection carries answers of every
// framing — length, chunked with extensions and trailers, delimited by close, HTTP/1.0, no body,
// informational first — and the broken ones become 502s; the connection stays usable throughout.
func TestH1RelaysEveryResponseFraming(t *testing.T) {
	t.Parallel()
	up := newScriptedUpstream(t, map[string]string{
		"/cl":           "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
		"/no-reason":    "HTTP/1.1 201\r\nContent-Length: 0\r\n\r\n",
		"/chunked":      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n",
		"/until-close!": "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
		"/http10!":      "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/204":          "HTTP/1.1 204 No Content\r\nX-B: 2\r\n\r\n",
		"/304":          "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
		"/early":        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/hop":          "HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
		"/te-and-cl!":   "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"/bad-status!":  "HTTX/1.1 200 OK\r\n\r\n",
		"/two-lengths!": "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
		"/gzip-te!":     "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"/huge-head!":   "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", upReadBuf) + "\r\nContent-Length: 0\r\n\r\n",
		"/bad-chunk!":   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
	})
	p, srv := startProxy(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {up.url}}})
	rc := dialRaw(t, srv.URL)
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
		check        func(*http.Response) string
		want         string
	}{
		{"GET", "/cl", 200, "hello", func(r *http.Response) string {
			return fmt.Sprintf("X-A=%s length=%d", r.Header.Get("X-A"), r.ContentLength)
		}, "X-A=1 length=5"},
		{"GET", "/chunked", 200, "hello world", func(r *http.Response) string {
			return "trailer X-Sum=" + r.Trailer.Get("X-Sum")
		}, "trailer X-Sum=11"},
		{"GET", "/until-close", 200, "until close", func(r *http.Response) string {
			return fmt.Sprintf("transfer-encoding=%v", r.TransferEncoding)
		}, "transfer-encoding=[chunked]"},
		{"GET", "/http10", 200, "ok", func(r *http.Response) string { return r.Proto }, "HTTP/1.1"},
		{"GET", "/204", 204, "", func(r *http.Response) string { return "X-B=" + r.Header.Get("X-B") }, "X-B=2"},
		{"GET", "/304", 304, "", func(r *http.Response) string { return "ETag=" + r.Header.Get("ETag") }, `ETag="x"`},
		{"HEAD", "/cl", 200, "", func(r *http.Response) string { return fmt.Sprintf("length=%d", r.ContentLength) }, "length=5"},
		{"GET", "/early", 200, "ok", nil, ""},
		{"GET", "/no-reason", 201, "", func(r *http.Response) string { return r.Status }, "201 "},
		{"GET", "/hop", 200, "", func(r *http.Response) string {
			return fmt.Sprintf("X-Secret=%q Keep-Alive=%q", r.Header.Get("X-Secret"), r.Header.Get("Keep-Alive"))
		}, `X-Secret="" Keep-Alive=""`},
		{"GET", "/te-and-cl", 200, "ok", nil, ""},
		{"GET", "/bad-status", 502, "", nil, ""},
		{"GET", "/two-lengths", 502, "", nil, ""},
		{"GET", "/gzip-te", 502, "", nil, ""},
		{"GET", "/huge-head", 502, "", nil, ""},
		{"GET", "/cl", 200, "hello", nil, ""},
	} {
		resp, body := rc.do(tc.method, tc.path, "", "")
		if resp.StatusCode != tc.status || body != tc.body {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
		if resp.Close {
			t.Fatalf("%s %s: the proxy closes the client connection", tc.method, tc.path)
		}
		if tc.check != nil {
			if got := tc.check(resp); got != tc.want {
				t.Errorf("%s %s: %s, want %s", tc.method, tc.path, got, tc.want)
			}
		}
	}
	// A chunked body that breaks its framing mid-way aborts the client connection: the head was
	// already sent, so a 502 is no longer possible and a whole-looking answer would be a lie.
	if _, err := io.WriteString(rc.c, "GET /bad-chunk HTTP/1.1\r\nHost: front\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
	if err == nil {
		if _, err = io.ReadAll(resp.Body); err == nil {
			t.Fatal("a broken chunked body reached the client as a complete answer")
		}
	}
	reqs := samples(t, p, time.Now().Add(-time.Minute), 16+1)
	if want := 16 + 1; len(reqs) != want {
		t.Errorf("%d samples recorded, want %d", len(reqs), want)
	}
}

// TestH1ReusesUpstreamConnections: keep-alive answers go back to the pool; answers that end with
// the connection (HTTP/1.0, Connection: close, close-delimited) do not.
func TestH1ReusesUpstreamConnections(t *testing.T) {
	t.Parallel()
	up := newScriptedUpstream(t, map[string]string{
		"/cl":     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/close!": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
	})
	_, srv := startProxy(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {up.url}}})
	rc := dialRaw(t, srv.URL)
	for range 5 {
		rc.do("GET", "/cl", "", "")
	}
	if n := up.conns.Load(); n != 1 {
		t.Fatalf("5 keep-alive requests used %d upstream connections, want 1", n)
	}
	rc.do("GET", "/close", "", "")
	rc.do("GET", "/cl", "", "")
	if n := up.conns.Load(); n != 2 {
		t.Fatalf("after Connection: close the proxy used %d upstream connections, want 2", n)
	}
}

// TestH1PipelinedAndHandedOffRequests: pipelined requests are answered in order; a request the
// loop does not take (a POST with a body) hands the connection to net/http mid-way, and the
// requests after it are still answered on the same connection.
func TestH1PipelinedAndHandedOffRequests(t *testing.T) {
	t.Parallel()
	up := newScriptedUpstream(t, map[string]string{"/a": "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
		"/b": "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"})
	_, srv := startProxy(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {up.url}}})
	rc := dialRaw(t, srv.URL)
	if _, err := io.WriteString(rc.c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"+"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct{ method, body string }{{"GET", "a"}, {"GET", "b"}, {"POST", "POST body"}, {"GET", "a"}} {
		resp, body := rc.read(want.method)
		if resp.StatusCode != 200 || body != want.body {
			t.Fatalf("answer %d: %d %q, want 200 %q", i, resp.StatusCode, body, want.body)
		}
	}
	// Connection: close is honoured: the answer says so and the connection ends.
	resp, body := rc.do("GET", "/a", "Connection: close\r\n", "")
	if !resp.Close || body != "a" {
		t.Fatalf("Connection: close answer: close=%v body %q", resp.Close, body)
	}
	if _, err := rc.br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after Connection: close (%v)", err)
	}
}

// TestH1MatchesNetHTTPForRoutingRules: with rules and sticky hashing (which need a full request),
// the h1 loop routes exactly as ServeHTTP does.
func TestH1MatchesNetHTTPForRoutingRules(t *testing.T) {
	t.Parallel()
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	cfg := func() Config {
		return Config{Upstreams: map[providers.Cohort][]string{"stable": {stable.url()}, "canary": {canary.url()}},
			Split: providers.Split{Canary: 2500}, HashOn: "header:X-User",
			Rules: []Rule{{Match: Match{Query: "use_canary", Equals: []string{"true"}}, Cohort: providers.Canary},
				{Match: Match{Header: "X-Canary", Equals: []string{"never"}}, Cohort: providers.Stable}}}
	}
	results := map[bool][]string{}
	for _, f := range fronts {
		_, srv := startProxyFront(t, cfg(), f.netHTTPOnly)
		rc := dialRaw(t, srv.URL)
		for i := range 40 {
			extra := fmt.Sprintf("X-User: user-%d\r\n", i)
			path := "/"
			switch i % 4 {
			case 1:
				path = "/?use_canary=true"
			case 2:
				extra += "X-Canary: never\r\n"
			}
			resp, _ := rc.do("GET", path, extra, "")
			results[f.netHTTPOnly] = append(results[f.netHTTPOnly], resp.Header.Get("X-Upstream"))
		}
	}
	if a, b := strings.Join(results[false], ","), strings.Join(results[true], ","); a != b {
		t.Fatalf("h1 routed\n%s\nnet/http routed\n%s", a, b)
	}
	if !strings.Contains(strings.Join(results[false], ","), "canary") {
		t.Fatal("no request reached the canary: the rules did not run")
	}
}

// FuzzParseHead: whatever the h1 loop accepts, net/http reads as the same bodiless request (method,
// target, Host), so the loop never forwards a request that another reader would frame differently.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD /x?y=1 HTTP/1.1\r\nHost: a:80\r\nConnection: close\r\nX-A: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a%2Fb?q=%41 HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		i := bytes.Index(b, []byte("\r\n\r\n"))
		if i < 0 {
			return
		}
		b = b[:i+4]
		var h h1Head
		if !parseHead(b, &h) {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("h1 accepted a head net/http rejects (%v): %q", err, b)
		}
		if req.Method != string(h.method) || req.RequestURI != string(h.target) || req.Host != string(h.host) {
			t.Fatalf("h1 read %s %s host %s, net/http %s %s host %s: %q", h.method, h.target, h.host, req.Method, req.RequestURI, req.Host, b)
		}
		if req.ContentLength != 0 || len(req.TransferEncoding) != 0 {
			t.Fatalf("h1 accepted a request net/http frames with a body: %q", b)
		}
		if req.Close != h.close {
			t.Fatalf("h1 close=%v, net/http %v: %q", h.close, req.Close, b)
		}
	})
}

// FuzzReadRespHead: an upstream head the h1 loop accepts is read by net/http with the same status
// and framing (or rejected by both in the cases the loop refuses), and a head whose header lines
// are relayed in one piece (!rh.drop) has none that skipResponseHeader drops.
func FuzzReadRespHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 404 \r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 5\n\nab\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: b\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 64\r\nX-Upstream: stable\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nte: trailers\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nUPGRADE: h2c\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nProxy-Connection: keep-alive\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTrailer: X-T\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var rh respHead
		if readRespHead(bufio.NewReaderSize(bytes.NewReader(b), upReadBuf), &rh) != nil {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(rh.head)), &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("the loop accepts a head net/http rejects (%v): %q", err, rh.head)
		}
		if resp.StatusCode != rh.status {
			t.Fatalf("status %d, net/http %d: %q", rh.status, resp.StatusCode, rh.head)
		}
		if !rh.drop {
			_, pos := headLine(rh.head, 0, &rh)
			for {
				var line []byte
				if line, pos = headLine(rh.head, pos, &rh); len(line) == 0 {
					break
				}
				if name := line[:bytes.IndexByte(line, ':')]; skipResponseHeader(name, &rh) {
					t.Fatalf("header %q is dropped but drop is false: %q", name, rh.head)
				}
			}
		}
		if rh.status < 200 || rh.status == 204 || rh.status == 304 {
			return // no body whatever the head says (informational answers are skipped)
		}
		chunked := len(resp.TransferEncoding) > 0
		if chunked != rh.chunked || (!chunked && resp.ContentLength != rh.clen) {
			t.Fatalf("framing chunked=%v length=%d, net/http chunked=%v length=%d: %q", rh.chunked, rh.clen, chunked, resp.ContentLength, rh.head)
		}
	})
}

// TestH1HeadAndIdleTimeouts: a client that starts a head and stalls is cut off after
// ReadHeaderTimeout; an idle keep-alive connection after IdleTimeout.
func TestH1HeadAndIdleTimeouts(t *testing.T) {
	t.Parallel()
	up := newScriptedUpstream(t, map[string]string{"/a": "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"})
	addr, _ := serveFor(t, stableOnly(up.url), ServeConfig{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 400 * time.Millisecond})
	for _, tc := range []struct {
		name  string
		first string // sent before waiting
		limit time.Duration
	}{
		{"stalled head", "GET /a HTTP/1.1\r\nHo", 200 * time.Millisecond},
		{"idle after a request", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 400 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, "http://"+addr)
			start := time.Now()
			if _, err := io.WriteString(rc.c, tc.first); err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(tc.first, "\r\n\r\n") {
				rc.read("GET")
			}
			if _, err := io.Copy(io.Discard, rc.br); err != nil {
				t.Fatalf("connection ended with %v, want a close by the server", err)
			}
			if waited := time.Since(start); waited < tc.limit || waited > tc.limit+3*time.Second {
				t.Fatalf("closed after %v, want about %v", waited, tc.limit)
			}
		})
	}
}

// TestFileConfigNetHTTPOnly: the YAML switch that turns the h1 loop off is read strictly.
func TestFileConfigNetHTTPOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		yaml string
		want bool
		err  string
	}{
		{"upstreams: {stable: [http://127.0.0.1:1]}\n", false, ""},
		{"upstreams: {stable: [http://127.0.0.1:1]}\nnetHTTPOnly: true\n", true, ""},
		{"upstreams: {stable: [http://127.0.0.1:1]}\nnetHTTPOnly: maybe\n", false, "netHTTPOnly"},
	} {
		fc, err := ParseFileConfig([]byte(tc.yaml))
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one naming %s", tc.yaml, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.yaml, err)
		case tc.err == "" && fc.NetHTTPOnly != tc.want:
			t.Errorf("%q: NetHTTPOnly %v, want %v", tc.yaml, fc.NetHTTPOnly, tc.want)
		}
	}
}

// stallingUpstream sends a response head and part of a body (then reports on started), and stalls
// until the proxy closes its connection (then reports on closed).
func stallingUpstream(t *testing.T) (url string, started, closed <-chan struct{}) {
	return stallUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part")
}

// stallUpstream is an upstream that answers every request with part (maybe nothing) and then
// stalls; started and closed as for stallingUpstream.
func stallUpstream(t *testing.T, part string) (url string, started, closed <-chan struct{}) {
	t.Helper()
	ch, st := make(chan struct{}, 4), make(chan struct{}, 4)
	url = rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, part)
		st <- struct{}{}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = br.ReadByte() // returns when the proxy closes the connection
		ch <- struct{}{}
	})
	return url, st, ch
}

// TestStalledBodyClientLeaves: a client that leaves while the upstream's body stalls frees the
// upstream connection at once, on both fronts.
func TestStalledBodyClientLeaves(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			up, started, closed := stallingUpstream(t)
			_, srv := startProxyFront(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {up}}}, f.netHTTPOnly)
			rc := dialRaw(t, srv.URL)
			if _, err := io.WriteString(rc.c, "GET /stall HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			<-started
			time.Sleep(50 * time.Millisecond) // let the proxy reach the stalled body
			_ = rc.c.Close()
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream connection is still open 5 s after the client left")
			}
		})
	}
}

// TestShutdownEndsStalledRequests: when the grace period ends, requests still waiting for an
// upstream are ended and Serve returns, on both fronts: a stalled body, and a response head not
// come yet — also when the grace period ends within the first watchClientAfter of that wait (the
// past deadline the shutdown sets must not be taken for the end of that first wait, which extended
// the deadline to the response-header timeout and watched a client connection the shutdown had
// already closed: the upstream call outlived Serve by up to 60 s).
func TestShutdownEndsStalledRequests(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		part  string // what the upstream sends before it stalls
		grace time.Duration
	}{
		{"body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part", 300 * time.Millisecond},
		{"head", "", 20 * time.Millisecond},
	}
	for _, tc := range cases {
		for _, f := range fronts {
			t.Run(tc.name+"/"+f.name, func(t *testing.T) {
				t.Parallel()
				up, started, closed := stallUpstream(t, tc.part)
				addr, stop := serveFor(t, stableOnly(up), ServeConfig{ShutdownTimeout: tc.grace, NetHTTPOnly: f.netHTTPOnly})
				rc := dialRaw(t, "http://"+addr)
				if _, err := io.WriteString(rc.c, "GET /stall HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				<-started
				if tc.part != "" {
					time.Sleep(50 * time.Millisecond) // let the proxy reach the stalled body
				}
				if took, err := stop(); !errors.Is(err, context.DeadlineExceeded) || took > 5*time.Second {
					t.Fatalf("Serve returned %v after %v, want the grace period's deadline soon after %v", err, took, tc.grace)
				}
				select {
				case <-closed:
				case <-time.After(3 * time.Second):
					t.Fatal("the stalled upstream connection outlived Serve by 3 s")
				}
			})
		}
	}
}
