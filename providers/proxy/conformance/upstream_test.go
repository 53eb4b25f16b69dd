package conformance

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// nextPath is the follow-up request the harness sends after the first answer, on the same
// client connection, to see whether the connection is still in step.
const nextPath = "/__next"

// upstream is a raw HTTP/1.1 server that records exactly what reached it. Each request is read
// with net/http's parser (a gateway must forward well-formed HTTP); what it cannot parse is
// recorded as such. The first request other than nextPath gets the case's raw answer when it
// has one; every other request gets "for <request-target>".
type upstream struct {
	ln      net.Listener
	answer  string
	closeAt bool // close the connection after the raw answer
	// late is written on the connection of the raw answer once the client has read that answer
	// (sendLate is closed), while the gateway holds the connection idle; lateSent then closes.
	late     string
	sendLate chan struct{}
	lateSent chan struct{}

	mu       sync.Mutex
	got      []string // normalised requests, nextPath excluded
	answered bool
	wg       sync.WaitGroup
}

func startUpstream(t *testing.T, cc corpusCase) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{ln: ln, answer: cc.Answer, closeAt: cc.AnswerThenClose, late: cc.LateBytes,
		sendLate: make(chan struct{}), lateSent: make(chan struct{})}
	u.wg.Add(1)
	go u.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		u.wg.Wait()
	})
	return u
}

func (u *upstream) addr() string { return u.ln.Addr().String() }

func (u *upstream) accept() {
	defer u.wg.Done()
	var conns []net.Conn
	var mu sync.Mutex
	defer func() {
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer c.Close()
			u.serve(c)
		}()
	}
}

func (u *upstream) record(s string) {
	u.mu.Lock()
	u.got = append(u.got, s)
	u.mu.Unlock()
}

// requests returns what reached the upstream so far.
func (u *upstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.got)
}

// ignoredHeaders are set or rewritten by any gateway (framing, hop-by-hop, forwarding); the
// comparison looks at the body and at the end-to-end headers the client sent.
var ignoredHeaders = map[string]bool{
	"Host": true, "Connection": true, "Keep-Alive": true, "Content-Length": true, "Transfer-Encoding": true,
	"X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true, "X-Real-Ip": true,
	"Accept-Encoding": true, "Te": true, "Upgrade": true,
}

func (u *upstream) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for first := true; ; first = false {
		req, err := http.ReadRequest(br)
		if err != nil {
			// a connection closed or reset between requests is not a request (nginx resets an
			// idle upstream connection that received stray bytes)
			var op *net.OpError
			if !errors.Is(err, io.EOF) && !errors.As(err, &op) {
				rest, _ := io.ReadAll(io.LimitReader(br, 256))
				u.record(fmt.Sprintf("unparseable (%v) then %q", err, rest))
			}
			return
		}
		if first && req.Header.Get("X-Forwarded-For") == "" {
			// Not from the gateway under test, which always sets X-Forwarded-For: a test
			// elsewhere dialling a port it closed and the kernel gave to this listener. A
			// request smuggled through the gateway comes after the gateway's own on the same
			// connection, so it is still recorded.
			return
		}
		if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
			u.write(c, "HTTP/1.1 100 Continue\r\n\r\n") // as net/http and nginx do
		}
		body, berr := io.ReadAll(req.Body)
		if req.RequestURI == nextPath {
			u.write(c, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nfor %s", len("for "+nextPath), nextPath))
			continue
		}
		u.record(normalise(req, body, berr))
		u.mu.Lock()
		raw := u.answer != "" && !u.answered
		u.answered = true
		u.mu.Unlock()
		switch {
		case raw:
			if u.answer == "-" { // no answer: close
				return
			}
			u.write(c, u.answer)
			if u.late != "" {
				select {
				case <-u.sendLate:
				case <-time.After(answerWait):
				}
				u.write(c, u.late)
				close(u.lateSent)
			}
			if req.Header.Get("Upgrade") != "" && strings.HasPrefix(u.answer, "HTTP/1.1 101") {
				u.echo(c, br)
				return
			}
			if u.closeAt {
				return
			}
		case berr != nil:
			return
		default:
			msg := "for " + req.RequestURI
			u.write(c, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s", len(msg), msg))
		}
	}
}

func (u *upstream) write(c net.Conn, s string) { _, _ = io.WriteString(c, s) }

// echo serves a switched (101) connection: it answers the first bytes it reads with
// "echo:<bytes>" and records them.
func (u *upstream) echo(c net.Conn, br *bufio.Reader) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, _ := br.Read(buf)
	u.record(fmt.Sprintf("after 101: %q", buf[:n]))
	u.write(c, "echo:"+string(buf[:n]))
}

// cutMark ends a request whose body the gateway (or its client) broke off.
const cutMark = " (body cut)"

// normalise renders a request as the upstream saw it: request line, the end-to-end headers
// (sorted, framing and forwarding headers left out) and the decoded body.
func normalise(req *http.Request, body []byte, berr error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", req.Method, req.RequestURI, req.Proto)
	var hs []string
	for k, vs := range req.Header {
		if ignoredHeaders[k] {
			continue
		}
		for _, v := range vs {
			hs = append(hs, k+": "+v)
		}
	}
	slices.Sort(hs)
	for _, h := range hs {
		fmt.Fprintf(&b, " | %s", h)
	}
	if len(body) > 0 || berr != nil {
		fmt.Fprintf(&b, " | body %q", bytes.Clone(body))
	}
	if berr != nil {
		b.WriteString(cutMark)
	}
	return b.String()
}
