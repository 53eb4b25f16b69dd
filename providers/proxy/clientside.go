package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

// The client's side of a request: its body is read with a timeout between reads and, when short,
// whole before any upstream is contacted; errors that are the client's (bad framing, an upload
// broken off or stalled, an answer not taken) are answered and recorded as the client's — 400,
// 408 or 499, left out of the analysis (recordClientError) — never as a 502 of the cohort the
// request was routed to.

const (
	// DefaultClientTimeout is the default of Config.ClientBodyTimeout and Config.SendTimeout
	// (nginx's client_body_timeout and send_timeout).
	DefaultClientTimeout = 60 * time.Second
	// DefaultRequestBodyBuffer is the default of Config.RequestBodyBuffer.
	DefaultRequestBodyBuffer = 64 << 10
	// statusClientClosed is nginx's code for a client that closed the connection first.
	statusClientClosed = 499
)

// clientBody reads a request body from the client: each read waits at most timeout (then the
// body fails with a timeout: 408), and the first error is kept, so that a failed upstream call can
// be told apart from a failed upload.
type clientBody struct {
	body    io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	err     error
	armed   bool
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.timeout > 0 {
		if err := b.rc.SetReadDeadline(time.Now().Add(b.timeout)); err == nil {
			b.armed = true
		}
	}
	n, err := b.body.Read(p)
	if err != nil {
		b.disarm()
		if err != io.EOF {
			b.err = err
		}
	}
	return n, err
}

// disarm clears the read deadline once the body is over: net/http's background read, which
// watches for the client leaving while the handler runs, must not time out.
func (b *clientBody) disarm() {
	if b.armed {
		_ = b.rc.SetReadDeadline(time.Time{})
		b.armed = false
	}
}

func (b *clientBody) Close() error { return b.body.Close() }

// clientStatus is the status of a request whose body failed with err: 408 for a stalled upload,
// 499 for one the client broke off, 400 for bad framing.
func clientStatus(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return http.StatusRequestTimeout
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return statusClientClosed
	}
	return http.StatusBadRequest
}

// readBody reads r's body up to p.bodyBuffer bytes before any upstream is contacted. A body that
// fits replaces r.Body whole, with its length (dechunked, as nginx sends a buffered body); a
// longer one is streamed on from where the buffer ends. It returns the body reader (whose err
// says whether the client failed later, while the rest streamed) and the error of the buffering,
// which is the client's.
func (p *Proxy) readBody(w http.ResponseWriter, r *http.Request) (*clientBody, error) {
	cb := &clientBody{body: r.Body, rc: http.NewResponseController(w), timeout: p.bodyTimeout}
	size := p.bodyBuffer
	switch {
	case r.ContentLength >= 0 && r.ContentLength < int64(size):
		size = int(r.ContentLength)
	case r.ContentLength < 0:
		size = min(size, 4<<10) // unknown length (chunked): grown as it comes, not reserved
	}
	buf := make([]byte, 0, size+1)
	for len(buf) <= p.bodyBuffer {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // grow (a chunked body, or one longer than it said)
		}
		n, err := cb.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			r.Body = io.NopCloser(bytes.NewReader(buf))
			r.ContentLength, r.TransferEncoding = int64(len(buf)), nil
			r.Header.Del("Expect") // the client has sent it all: nothing to wait for upstream
			if len(buf) == 0 {
				r.Body = http.NoBody
			}
			return cb, nil
		}
		if err != nil {
			return cb, err
		}
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), cb), cb}
	return cb, nil
}

// answerClientError answers a request whose client failed (status from clientStatus) and closes
// the connection: what follows a broken body cannot be read as a request.
func answerClientError(w http.ResponseWriter, status int) {
	w.Header().Set("Connection", "close")
	if status == statusClientClosed {
		w.WriteHeader(http.StatusBadRequest) // nobody reads it; net/http has no 499
		return
	}
	http.Error(w, http.StatusText(status), status)
}

// sendConn is a client connection of the net/http server whose every write waits at most
// timeout (nginx's send_timeout): a client that stops reading its answer is disconnected.
type sendConn struct {
	net.Conn
	timeout time.Duration
}

func (c *sendConn) Write(b []byte) (int, error) {
	_ = c.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(b)
}

// CloseWrite half-closes the connection (net/http uses it to let a client read an error answer).
func (c *sendConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// sendListener wraps the plain TCP connections it accepts in sendConn (TLS ones stay as they
// are: net/http must see a *tls.Conn, and its writes go through the TCP connection underneath).
type sendListener struct {
	net.Listener
	timeout time.Duration
}

func (l sendListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || l.timeout <= 0 {
		return c, err
	}
	if _, ok := c.(*net.TCPConn); ok {
		return &sendConn{Conn: c, timeout: l.timeout}, nil
	}
	return c, nil
}

// rpWriter is the ResponseWriter the ReverseProxy writes through: it keeps the first write error
// (the client not taking its answer).
type rpWriter struct {
	http.ResponseWriter
	werr error
}

func (w *rpWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	if err != nil && w.werr == nil {
		w.werr = err
	}
	return n, err
}

func (w *rpWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hands the ReverseProxy the client connection of an upgrade; the bytes the server had
// already read after the request head (sent by the client in the same write as its upgrade
// request, before the 101) are read first, so they reach the upstream too. (ReverseProxy copies
// from the connection alone and would drop them.)
func (w *rpWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil || brw.Reader.Buffered() == 0 {
		return c, brw, err
	}
	early, _ := brw.Reader.Peek(brw.Reader.Buffered())
	early = bytes.Clone(early)
	_, _ = brw.Reader.Discard(len(early))
	return &earlyConn{Conn: c, early: early}, brw, nil
}

// earlyConn is a hijacked connection whose reads return early first.
type earlyConn struct {
	net.Conn
	early []byte
}

func (c *earlyConn) Read(b []byte) (int, error) {
	if len(c.early) > 0 {
		n := copy(b, c.early)
		c.early = c.early[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *earlyConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// refuseRequest reports whether r is one nginx refuses with a 400 before any upstream sees it:
// CONNECT (this is not a forward proxy), the HTTP/2 preface's PRI on an HTTP/1 connection, and a
// path whose dot segments climb above the root (also when percent-encoded).
func refuseRequest(r *http.Request) bool {
	switch r.Method {
	case http.MethodConnect, "PRI":
		return true
	}
	path := r.RequestURI
	if len(path) == 0 || path[0] != '/' {
		path = r.URL.EscapedPath() // absolute-form
	}
	return climbsAboveRoot(path)
}

// climbsAboveRoot reports whether a request path, as sent, has more ".." segments than segments
// before them once "%2e" and "%2f" are decoded (nginx decodes them before resolving dot segments,
// and answers 400 to such a path). The query is not looked at.
func climbsAboveRoot(path string) bool {
	depth, dots := 0, 0 // dots: the current segment is all dots so far (how many), or -1
	for i := 0; i <= len(path); i++ {
		c := byte('/')
		if i < len(path) {
			c = path[i]
			if c == '?' {
				c, i = '/', len(path)
			} else if c == '%' && i+2 < len(path) && path[i+1] == '2' {
				switch path[i+2] {
				case 'e', 'E':
					c, i = '.', i+2
				case 'f', 'F':
					c, i = '/', i+2
				}
			}
		}
		switch {
		case c == '/':
			switch {
			case dots == 2:
				if depth--; depth < 0 {
					return true
				}
			case dots < 0 || dots > 2:
				depth++
			}
			dots = 0
		case c == '.' && dots >= 0:
			dots++
		default:
			dots = -1
		}
	}
	return false
}

// dropUnderscoreHeaders removes the headers whose names have an underscore, as nginx does by
// default (underscores_in_headers off): CGI-style servers read Transfer_Encoding or
// Content_Length as the real thing, which opens the door to smuggling.
func dropUnderscoreHeaders(h http.Header) {
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 {
			delete(h, k)
		}
	}
}
