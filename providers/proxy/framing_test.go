package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingUpstream answers every request with "ok" and keeps the raw bytes it received.
type recordingUpstream struct {
	url string
	mu  sync.Mutex
	raw bytes.Buffer
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{}
	u.url = rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		tee := bufio.NewReader(io.TeeReader(br, writerFunc(func(b []byte) (int, error) {
			u.mu.Lock()
			defer u.mu.Unlock()
			return u.raw.Write(b)
		})))
		for {
			req, err := http.ReadRequest(tee)
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return u
}

func (u *recordingUpstream) received() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.raw.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestContentLengthWithTransferEncoding (issue 15, item 3): a request with both Content-Length and
// Transfer-Encoding, followed by bytes a front proxy going by the length would take for the body.
// RFC 9112 6.3: the connection must be closed after answering; nginx answers 400 and closes. The h1
// front does the same; the net/http front cannot see the Content-Length (net/http drops it), goes by
// Transfer-Encoding alone (which 6.3 allows) and closes the connection after the answer. On neither
// does the smuggled request reach the upstream.
func TestContentLengthWithTransferEncoding(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			up := newRecordingUpstream(t)
			_, srv := startProxyFront(t, stableOnly(up.url), f.netHTTPOnly)
			got := sendRaw(t, srv.URL, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n"+
				"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", false)
			// sendRaw reads to the end of stream: it returns only because the proxy closed
			if !f.netHTTPOnly && !strings.HasPrefix(got, "HTTP/1.1 400 ") {
				t.Errorf("h1 front answered %q, want 400 (nginx)", got)
			}
			if strings.Count(got, "HTTP/1.1 ") != 1 {
				t.Errorf("answers %q: want exactly one, then the connection closed", got)
			}
			if r := up.received(); strings.Contains(r, "smuggled") {
				t.Fatalf("the smuggled request reached the upstream: %q", r)
			}
		})
	}
}

// TestBareLFHeads (issue 15, item 6): heads whose lines end in a bare LF, which RFC 9112 2.2 lets a
// recipient accept and nginx and net/http do. A request head was waited on until the read-header
// timeout (the h1 loop looked only for CRLFCRLF) instead of being handed to net/http; an upstream
// answer until the response-header timeout, then a 504. Now both are answered at once, the answer
// relayed with CRLF line ends. Both fronts; the timeouts are far beyond the client's deadline.
func TestBareLFHeads(t *testing.T) {
	t.Parallel()
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			a := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			if req.URL.Path == "/lf" {
				// bare LFs, and a body with a CRLFCRLF in it
				a = "HTTP/1.1 200 OK\nContent-Length: 6\nX-A: b\r\n\nok\r\n\r\n"
			}
			if _, err := io.WriteString(c, a); err != nil {
				return
			}
		}
	})
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			cfg := stableOnly(up)
			cfg.ResponseHeaderTimeout = time.Minute
			_, addr, _ := serveProxy(t, cfg, ServeConfig{ReadHeaderTimeout: time.Minute, NetHTTPOnly: f.netHTTPOnly})
			rc := dialRaw(t, "http://"+addr) // its deadline: 10 s
			if _, err := io.WriteString(rc.c, "GET / HTTP/1.1\nHost: a\n\n"); err != nil {
				t.Fatal(err)
			}
			if resp, body := rc.read("GET"); resp.StatusCode != http.StatusOK || body != "ok" {
				t.Fatalf("bare-LF request: %d %q", resp.StatusCode, body)
			}
			if _, err := io.WriteString(rc.c, "GET /lf HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			head, err := rc.br.ReadString('\n')
			for err == nil && head != "\r\n" && head != "\n" {
				if !strings.HasSuffix(head, "\r\n") {
					t.Fatalf("answer line %q relayed with a bare LF", head)
				}
				var line string
				line, err = rc.br.ReadString('\n')
				if strings.HasPrefix(line, "X-A:") && strings.TrimSpace(line) != "X-A: b" {
					t.Errorf("header %q", line)
				}
				head = line
			}
			if err != nil {
				t.Fatalf("bare-LF answer: %v", err)
			}
			body := make([]byte, 6)
			if _, err := io.ReadFull(rc.br, body); err != nil || string(body) != "ok\r\n\r\n" {
				t.Fatalf("body %q, %v", body, err)
			}
		})
	}
}

// TestUpgradeKeepsBytesSentWithTheHead (issue 15, item 7): bytes a client sends in the same write
// as its upgrade request (before the 101) belong to the upgraded stream and must reach the
// upstream after its 101; ReverseProxy dropped them (it copies from the hijacked connection and
// not from the server's buffer that already held them). Both fronts.
func TestUpgradeKeepsBytesSentWithTheHead(t *testing.T) {
	t.Parallel()
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"); err != nil {
			return
		}
		line, err := br.ReadString('\n') // echo one line back, upper-cased
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, strings.ToUpper(line))
	})
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			_, srv := startProxyFront(t, stableOnly(up), f.netHTTPOnly)
			rc := dialRaw(t, srv.URL)
			if _, err := io.WriteString(rc.c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly bytes\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(rc.br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade answered %v, %v", resp, err)
			}
			if line, err := rc.br.ReadString('\n'); err != nil || line != "EARLY BYTES\n" {
				t.Fatalf("echo %q, %v: the bytes sent with the upgrade head did not reach the upstream", line, err)
			}
		})
	}
}

// TestRefusedOrNormalisedLikeNginx (issue 15, item 8): requests nginx 1.22 refuses (400: a path that
// climbs above the root, also percent-encoded; CONNECT; the HTTP/2 preface on an HTTP/1.1 port)
// never reach the upstream; header names with an underscore (Transfer_Encoding, Content_Length:
// CGI-style servers read them as the real thing) are dropped, as nginx does by default
// (underscores_in_headers off); a 204 goes out without a Content-Length (RFC 9110 8.6; nginx relays
// it, which is worse). Both fronts, each request on a new connection.
func TestRefusedOrNormalisedLikeNginx(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, raw string
		want      string // answered status
		forwarded string // what the upstream must see ("" for nothing)
		notSeen   string // must not be forwarded
	}{
		{"dot segments above the root", "GET /../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", "400", "", ""},
		{"encoded dot segments", "GET /a/%2e%2e/%2E%2e/etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", "400", "", ""},
		{"encoded slashes", "GET /a/..%2f..%2fetc HTTP/1.1\r\nHost: a\r\n\r\n", "400", "", ""},
		{"dot segments within the root", "GET /a/b/../c HTTP/1.1\r\nHost: a\r\n\r\n", "200", "GET /a/b/../c HTTP/1.1", ""},
		{"dot file", "GET /.well-known/x HTTP/1.1\r\nHost: a\r\n\r\n", "200", "GET /.well-known/x HTTP/1.1", ""},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "400", "", ""},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "400", "", ""},
		{"PRI over HTTP/1.1", "PRI * HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400", "", ""},
		{"underscore headers", "GET /u HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent_Length: 5\r\nX_Foo: 1\r\n\r\n", "200", "GET /u HTTP/1.1", "_"},
		{"underscore headers with a body", "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nTransfer_Encoding: chunked\r\n\r\nhi", "200", "POST /u HTTP/1.1", "_"},
	}
	for _, f := range fronts {
		for _, tc := range cases {
			t.Run(f.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				up := newRecordingUpstream(t)
				_, srv := startProxyFront(t, stableOnly(up.url), f.netHTTPOnly)
				raw := tc.raw
				got := sendRaw(t, srv.URL, strings.Replace(raw, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1), false)
				if statusOf(got) != tc.want {
					t.Fatalf("answer %q, want %s", got, tc.want)
				}
				seen := up.received()
				if tc.forwarded == "" && seen != "" {
					t.Fatalf("forwarded %q, want nothing (nginx answers 400)", seen)
				}
				if !strings.HasPrefix(seen, tc.forwarded) {
					t.Fatalf("forwarded %q, want it to start with %q", seen, tc.forwarded)
				}
				if tc.notSeen != "" {
					if head, _, _ := strings.Cut(seen, "\r\n\r\n"); strings.Contains(head, tc.notSeen) {
						t.Fatalf("forwarded head %q has %q", head, tc.notSeen)
					}
				}
			})
		}
	}
}

// TestNoContentLengthOn204: an upstream's 204 that declares a Content-Length goes out without it
// (RFC 9110 8.6: a server must not send one; a client could wait for the body). Both fronts.
func TestNoContentLengthOn204(t *testing.T) {
	t.Parallel()
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-A: b\r\n\r\n"); err != nil {
				return
			}
		}
	})
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			_, srv := startProxyFront(t, stableOnly(up), f.netHTTPOnly)
			got := sendRaw(t, srv.URL, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false)
			if statusOf(got) != "204" || strings.Contains(strings.ToLower(got), "content-length") || !strings.Contains(got, "X-A: b") {
				t.Fatalf("answer %q, want the 204 without Content-Length", got)
			}
		})
	}
}

func TestClimbsAboveRoot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/", false}, {"/a/b", false}, {"/..", true}, {"/../x", true}, {"/a/..", false}, {"/a/../..", true},
		{"/a/./../b", false}, {"/a/.../../..", false}, {"/a/.../../../..", true}, {"/.../..", false}, {"/a//../..", true},
		{"/%2e%2e/x", true}, {"/%2E./x", true}, {"/a/..%2f..%2fetc", true}, {"/a%2f..", false},
		{"/x?/../../..", false}, {"/.well-known/x", false}, {"/..a/..", false}, {"/a/..?q", false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if got := climbsAboveRoot(tc.path); got != tc.want {
				t.Fatalf("climbsAboveRoot(%q) = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}
