package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The data plane's own HTTP/1.1 server loop (Serve). It reads each request head straight from the
// connection's buffer and proxies the common request — GET, HEAD or OPTIONS over HTTP/1.1 without a
// body, an upgrade or an Expect, to plain-http upstreams — without building an *http.Request, a
// header map, a context or a response writer, and without net/http's per-request background read.
// Everything it does not take is handed, with the bytes already read, to a net/http server running
// ServeHTTP on the same connection (which then keeps that connection): requests with bodies,
// upgrades, HTTP/1.0, TLS, https upstreams, odd or oversized heads. The hand-off happens before
// anything is answered, so a client never sees which server answered.
//
// The parser is deliberately strict: a head it does not fully understand (bare LF, obs-fold, a
// space before the colon, control bytes, any Content-Length or Transfer-Encoding, several Host
// lines, a Connection header naming other headers) is never interpreted here but handed to
// net/http, which answers or rejects it as it would without this loop. That keeps request smuggling
// out of the picture: this loop only forwards requests that have no body by every reading.
//
// Differences from ServeHTTP that a user can see: a client that goes away while the upstream is
// still working is noticed when its answer is written (there is no background read), so the
// upstream request runs to its end (bounded by the response header timeout), as with nginx's
// proxy_ignore_client_abort.

const (
	h1ReadBuf     = 8 << 10  // client read buffer: the largest request head served here (nginx: 8 KiB)
	h1WriteBuf    = 4 << 10  // client write buffer
	upReadBuf     = 16 << 10 // upstream read buffer: the largest response head (nginx's default: 4-8 KiB)
	h1MaxHeaders  = 100
	connIdle      = 0
	connActive    = 1
	connClosing   = 2
	chunkLineMax  = 4 << 10
	badGatewayMsg = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n"
)

var (
	h1Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1ReadBuf) }}
	h1Writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, h1WriteBuf) }}
)

// h1Server accepts the data plane's connections and serves them with serveConn.
type h1Server struct {
	p        *Proxy
	rht      time.Duration
	idle     time.Duration
	fallback *http.Server
	handoff  *connListener
	closing  atomic.Bool
	mu       sync.Mutex
	conns    map[*h1Conn]struct{}
	wg       sync.WaitGroup
}

type h1Conn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string // RemoteAddr as net/http spells it
	ip     string // client IP for X-Forwarded-For
	client uint32 // p.clients id of ip, 0 until the first request needs it
	state  atomic.Int32
	up     atomic.Pointer[upConn] // the upstream connection in use, for a forced shutdown
	// rdl: the read deadline armLazy set last for the idle wait, or zero when another one may be
	// set (only the connection's goroutine touches it)
	rdl time.Time
	// clock: when the last request ended, a reading of time.Now for the next idle wait's deadline
	// (zero: read the clock). It saves one clock read per request.
	clock time.Time

	// The watcher of a client whose answer takes long (watch, unwatch). Its state and callback
	// are made once per connection: made per request they were three allocations each time.
	gone      atomic.Bool // the client left while the upstream was waited for
	goneFn    func()      // sets gone and ends the wait on the upstream connection in use (up)
	stopWatch func()      // stops the running watcher; nil when none runs
	bodyWait  func()      // relay.onWait of the connection's answers
	bodyRead  func()      // relay.beforeRead of the connection's answers
}

// newH1Conn makes the state of a client connection; read is the upstream read timeout, between two
// reads of an answer's body.
func newH1Conn(nc net.Conn, read time.Duration) *h1Conn {
	c := &h1Conn{nc: nc, remote: nc.RemoteAddr().String()}
	if ip, _, err := net.SplitHostPort(c.remote); err == nil {
		c.ip = ip
	}
	c.goneFn = func() {
		c.gone.Store(true)
		if uc := c.up.Load(); uc != nil {
			_ = uc.nc.SetReadDeadline(time.Unix(1, 0))
		}
	}
	c.bodyWait = func() {
		// the wait for the head may have left a deadline (roundTripH1): bodyRead sets the body's
		if uc := c.up.Load(); uc != nil {
			uc.rdl = time.Time{}
			if read <= 0 {
				_ = uc.nc.SetReadDeadline(time.Time{})
			}
		}
		c.watch()
	}
	c.bodyRead = func() {
		// at most read until the next bytes (nginx's proxy_read_timeout), set lazily: a wait
		// ends between read and read+lazySlack(read) after it starts. (A watcher that ends the
		// wait as this sets the deadline can be overridden: the relay then ends at the timeout.)
		if uc := c.up.Load(); uc != nil && read > 0 && !c.gone.Load() {
			armLazy(uc.nc, &uc.rdl, time.Now(), read)
		}
	}
	return c
}

// watch starts watching the client while its answer is waited for: when it leaves, c.gone is set
// and the wait on the upstream connection in use (c.up) ends. unwatch stops it.
func (c *h1Conn) watch() {
	c.gone.Store(false)
	c.rdl = time.Time{} // the watcher's end sets the client's read deadline
	c.stopWatch = watchClient(c.nc, c.goneFn)
}

// unwatch stops the watcher watch started, if any, and waits until it has stopped.
func (c *h1Conn) unwatch() {
	if c.stopWatch != nil {
		c.stopWatch()
		c.stopWatch = nil
	}
}

func newH1Server(p *Proxy, fallback *http.Server, addr net.Addr, rht, idle time.Duration) *h1Server {
	return &h1Server{p: p, rht: rht, idle: idle, fallback: fallback, handoff: newConnListener(addr),
		conns: map[*h1Conn]struct{}{}}
}

// serve accepts connections from ln until it is closed; the fallback server must be serving
// s.handoff.
func (s *h1Server) serve(ln net.Listener) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ECONNABORTED) {
				// like net/http: back off on temporary accept errors (descriptor or memory exhaustion)
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.p.log.Warn("accept error; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if _, ok := nc.(*tls.Conn); ok {
			s.handoff.put(nc) // TLS (and ALPN) is net/http's business
			continue
		}
		c := newH1Conn(nc, s.p.fast.read)
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			_ = nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// shutdown stops the loop gracefully: idle connections are closed at once, active ones after
// their current response; when ctx ends first, the rest are closed.
func (s *h1Server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	for c := range s.conns {
		if c.state.CompareAndSwap(connIdle, connClosing) {
			_ = c.nc.SetReadDeadline(time.Unix(1, 0)) // wakes the idle read
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		// grace is over: close what is left, unblocking requests that wait for an upstream
		s.mu.Lock()
		for c := range s.conns {
			_ = c.nc.Close()
			if uc := c.up.Load(); uc != nil {
				_ = uc.nc.SetDeadline(time.Unix(1, 0))
			}
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

func (s *h1Server) forget(c *h1Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

func (s *h1Server) serveConn(c *h1Conn) {
	defer s.forget(c)
	c.br = h1Readers.Get().(*bufio.Reader)
	cio := clientIO(c.nc, s.p.sendTimeout)
	c.br.Reset(cio)
	c.bw = h1Writers.Get().(*bufio.Writer)
	c.bw.Reset(cio)
	handedOff := false
	defer func() {
		if !handedOff {
			_ = c.nc.Close()
			c.br.Reset(nil)
			h1Readers.Put(c.br)
		}
		c.bw.Reset(nil)
		h1Writers.Put(c.bw)
	}()
	var h h1Head
	for first := true; ; first = false {
		if c.br.Buffered() == 0 {
			// Let the other connections run first: by the time this one reads again, the client's
			// next request has often arrived, which saves a read that would find nothing (EAGAIN)
			// and a trip through the poller (bench/RESULTS.md: about 10% less CPU per request).
			// (The upstream's answer is waited for differently, without a read first: a yield
			// there saved as much but widened the latency tail, as a yielded goroutine waits in
			// the global run queue behind newly ready ones — see roundTripH1.)
			runtime.Gosched()
			// Wait for the next request: IdleTimeout between requests, ReadHeaderTimeout for the
			// first (as net/http: a silent new connection is not kept for the idle time).
			// (The idle deadline is set lazily: kept while it is at least IdleTimeout away.)
			switch {
			case first && s.rht > 0:
				_ = c.nc.SetReadDeadline(time.Now().Add(s.rht))
			case s.idle > 0:
				now := c.clock
				if now.IsZero() {
					now = time.Now()
				}
				armLazy(c.nc, &c.rdl, now, s.idle)
			case s.rht > 0:
				_ = c.nc.SetReadDeadline(time.Now())
			}
			if c.state.Load() == connClosing || s.closing.Load() {
				return // shutdown came between the check below and the deadline just set
			}
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		if !c.state.CompareAndSwap(connIdle, connActive) {
			return // shutting down
		}
		// Usually the whole head is already buffered; otherwise the rest gets ReadHeaderTimeout.
		// The read deadline is left as it is while the request is proxied (nothing reads the
		// client meanwhile but watchClient, for which it is only an end), and reset before the
		// next wait.
		n, err := readHead(c.br, &h, func() {
			if s.rht > 0 {
				c.rdl = time.Time{}
				_ = c.nc.SetReadDeadline(time.Now().Add(s.rht))
			}
		})
		if err != nil {
			return // timeout or closed mid-head: nothing can be answered
		}
		if h.refuse {
			// Content-Length and Transfer-Encoding together: a smuggling attempt or a broken
			// client. RFC 9112 6.3: the connection must be closed; nginx answers 400 (net/http
			// would go by Transfer-Encoding and keep the connection).
			writeStatus(c.bw, http.StatusBadRequest, false)
			return
		}
		if n == 0 || !s.p.fastTable(s.p.table.Load()) {
			// not ours to interpret: net/http gets the connection with everything read so far
			_ = c.nc.SetReadDeadline(time.Time{})
			handedOff = true
			s.handoff.put(&prefixConn{Conn: &sendConn{Conn: c.nc, timeout: s.p.sendTimeout}, r: c.br})
			return
		}
		c.clock = time.Time{}
		keep := s.p.serveH1(c, &h, s.closing.Load())
		_, _ = c.br.Discard(n)
		if !keep || !c.state.CompareAndSwap(connActive, connIdle) || s.closing.Load() {
			return
		}
	}
}

// h1Head is a parsed request head; its slices point into the connection's read buffer and are
// valid until the next read from it.
type h1Head struct {
	method, target, host []byte
	close                bool // Connection: close
	refuse               bool // a head not served here that no one may serve (answer 400, close)
	xff                  [][]byte
	lines                [h1MaxHeaders][2][]byte // name, value (trimmed)
	nlines               int
}

// readHead reads one request head into h and returns its length, or 0 when the request is not
// one this loop serves (hand it off). An error means the connection is unusable. beforeWait is
// called once, before the first read that has to wait for more of the head.
//
// Empty lines before the request line are dropped, as nginx does (RFC 9112 2.2: a server SHOULD
// ignore at least one; net/http does only after a POST): they are consumed from br, so a request
// handed off reaches net/http without them. They count against ReadHeaderTimeout like the head.
func readHead(br *bufio.Reader, h *h1Head, beforeWait func()) (int, error) {
	var buf []byte
	h.refuse = false
	for waited := false; ; waited = true {
		b, err := br.Peek(br.Buffered())
		if err != nil {
			return 0, err
		}
		if len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
			lead := 1
			for lead < len(b) && (b[lead] == '\r' || b[lead] == '\n') {
				lead++
			}
			_, _ = br.Discard(lead)
			b = b[lead:]
		}
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			buf = b[:i+4]
			break
		}
		if i := lfHeadEnd(b); i >= 0 {
			// a head ended by a bare LF (RFC 9112 2.2 lets a recipient accept LF alone): not one
			// this loop parses, but not one to wait on either — net/http reads it
			h.refuse = conflictingFraming(b[:i])
			return 0, nil
		}
		if len(b) >= h1ReadBuf {
			return 0, nil // larger than our buffer: net/http reads up to its own limit
		}
		if !waited {
			beforeWait()
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return 0, nil
			}
			return 0, err
		}
	}
	if !parseHead(buf, h) {
		h.refuse = conflictingFraming(buf)
		return 0, nil
	}
	return len(buf), nil
}

// lfHeadEnd returns the length of the head at the start of b that ends in an empty line with a
// bare LF on either side ("\n\n" or "\n\r\n"), or -1. It is only called when b holds no
// "\r\n\r\n".
func lfHeadEnd(b []byte) int {
	for i := bytes.IndexByte(b, '\n'); i >= 0 && i+1 < len(b); {
		switch {
		case b[i+1] == '\n':
			return i + 2
		case b[i+1] == '\r' && i+2 < len(b) && b[i+2] == '\n':
			return i + 3
		}
		j := bytes.IndexByte(b[i+1:], '\n')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return -1
}

// conflictingFraming reports whether a request head has both Content-Length and Transfer-Encoding
// (a head parseHead did not take: it is looked at only on the way to net/http).
func conflictingFraming(head []byte) bool {
	cl, te := false, false
	for i, line := range bytes.Split(head, []byte("\n")) {
		colon := bytes.IndexByte(line, ':')
		if i == 0 || colon <= 0 {
			continue
		}
		name := line[:colon]
		cl = cl || asciiEqualFold(name, "Content-Length")
		te = te || asciiEqualFold(name, "Transfer-Encoding")
	}
	return cl && te
}

// parseHead parses buf (a complete head ending in CRLFCRLF) and reports whether this loop may
// serve the request.
func parseHead(buf []byte, h *h1Head) bool {
	h.method, h.target, h.host, h.close, h.refuse, h.xff, h.nlines = nil, nil, nil, false, false, h.xff[:0], 0
	// request line: METHOD SP origin-form SP HTTP/1.1
	eol := bytes.Index(buf, []byte("\r\n"))
	line := buf[:eol]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return false
	}
	h.method = line[:sp1]
	switch string(h.method) {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || string(rest[sp2+1:]) != "HTTP/1.1" {
		return false
	}
	h.target = rest[:sp2]
	if h.target[0] != '/' {
		return false
	}
	for i, c := range h.target {
		if c <= ' ' || c >= 0x7f {
			return false
		}
		if c == '%' && (i+2 >= len(h.target) || !isHex(h.target[i+1]) || !isHex(h.target[i+2])) {
			return false // a bad escape: net/http answers 400
		}
		if c == '.' && h.target[i-1] == '/' || c == '%' && h.target[i+1] == '2' && lower(h.target[i+2]) == 'e' {
			return false // maybe a dot segment: ServeHTTP refuses paths that climb above the root
		}
	}
	pos := eol + 2
	for pos < len(buf)-2 {
		eol := bytes.Index(buf[pos:], []byte("\r\n"))
		line := buf[pos : pos+eol]
		pos += eol + 2
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || h.nlines == h1MaxHeaders {
			return false // obs-fold (leading space) fails the token check below; no colon: not a header
		}
		name := line[:colon]
		under := false
		for _, c := range name {
			if !isTokenByte(c) {
				return false
			}
			under = under || c == '_'
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return false // includes a bare CR or LF inside the line
			}
		}
		if under {
			continue // dropped, as nginx does (dropUnderscoreHeaders)
		}
		switch {
		case asciiEqualFold(name, "Host"):
			if h.host != nil || len(value) == 0 || !validHost(value) {
				return false
			}
			h.host = value
			continue
		case asciiEqualFold(name, "Content-Length"), asciiEqualFold(name, "Transfer-Encoding"),
			asciiEqualFold(name, "Upgrade"), asciiEqualFold(name, "Expect"), asciiEqualFold(name, "HTTP2-Settings"):
			return false
		case asciiEqualFold(name, "Connection"):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				tok = trimOWS(tok)
				switch {
				case asciiEqualFold(tok, "close"):
					h.close = true
				case len(tok) == 0, asciiEqualFold(tok, "keep-alive"):
				default:
					return false // names other hop-by-hop headers: let ReverseProxy handle it
				}
			}
			continue
		case asciiEqualFold(name, "X-Forwarded-For"):
			h.xff = append(h.xff, value)
			continue
		}
		h.lines[h.nlines] = [2][]byte{name, value}
		h.nlines++
	}
	return h.host != nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// digits reports whether b is 1*DIGIT (RFC 9110 8.6: no sign, no space).
func digits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// isTokenByte reports whether c may appear in a header name (RFC 9110 5.6.2 tchar).
func isTokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// asciiEqualFold compares b with s ignoring ASCII case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// validHost reports whether a Host value has only the bytes a host[:port] may have (reg-name,
// IP literal, port); anything else is left to net/http, which answers 400.
func validHost(b []byte) bool {
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		default:
			switch c {
			case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '[', ']', '%':
			default:
				return false
			}
		}
	}
	return true
}

// skipRequestHeader reports whether a client header is not forwarded as is: hop-by-hop headers
// (RFC 9110 7.6.1) and the forwarding headers this proxy writes itself (Forwarded included). Te is kept only as
// "Te: trailers", like ReverseProxy.
func skipRequestHeader(name, value []byte) bool {
	switch len(name) {
	case 2:
		return asciiEqualFold(name, "Te") && !asciiEqualFold(value, "trailers")
	case 7:
		return asciiEqualFold(name, "Trailer")
	case 9:
		return asciiEqualFold(name, "Forwarded") // RFC 7239: replaced by X-Forwarded-*, as ReverseProxy does
	case 10:
		return asciiEqualFold(name, "Keep-Alive")
	case 16:
		return asciiEqualFold(name, "Proxy-Connection") || asciiEqualFold(name, "X-Forwarded-Host")
	case 17:
		return asciiEqualFold(name, "X-Forwarded-Proto")
	case 18:
		return asciiEqualFold(name, "Proxy-Authenticate")
	case 19:
		return asciiEqualFold(name, "Proxy-Authorization")
	}
	return false
}

// fastTable reports whether every upstream of t can be served by the h1 loop.
func (p *Proxy) fastTable(t *table) bool {
	if !p.fastOn {
		return false
	}
	for _, ups := range t.upstreams {
		for _, u := range ups {
			if !u.fast {
				return false
			}
		}
	}
	return true
}

// request builds an *http.Request from h for the routing rules (only when rules or hashing need one).
func (h *h1Head) request(remote string) *http.Request {
	hd := make(http.Header, h.nlines+1)
	for _, l := range h.lines[:h.nlines] {
		k := textproto.CanonicalMIMEHeaderKey(string(l[0]))
		hd[k] = append(hd[k], string(l[1]))
	}
	for _, v := range h.xff {
		hd["X-Forwarded-For"] = append(hd["X-Forwarded-For"], string(v))
	}
	target := string(h.target)
	u, err := url.ParseRequestURI(target)
	if err != nil {
		u = &url.URL{Path: target}
	}
	return &http.Request{Method: string(h.method), URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: hd, Host: string(h.host), RemoteAddr: remote, RequestURI: target}
}

// serveH1 proxies one request of the h1 loop and reports whether the client connection stays open.
func (p *Proxy) serveH1(c *h1Conn, h *h1Head, closing bool) (keep bool) {
	start := p.now()
	t := p.table.Load()
	var r *http.Request // built only for rules and sticky hashing
	if p.needInfo {
		r = h.request(c.remote)
	}
	want, byRule := p.decide(t, r)
	ci, up := p.route(t, want, start.UnixNano())
	keep = !h.close && !closing
	status := http.StatusBadGateway
	var reuse *upConn
	client := false
	if up == nil {
		keep = writeStatus(c.bw, status, keep)
	} else {
		status, ci, keep, reuse, up, client = p.proxyH1(c, h, t, ci, up, keep, start)
	}
	end := p.now()
	if p.wallClock {
		c.clock = end // the next idle wait starts now
	}
	if reuse != nil {
		up.pool.put(reuse, end.UnixNano(), p.fast.perHost)
	}
	var route uint32
	if p.routes != nil {
		route = routeID(p.routes, h.method, h.target)
	}
	if client {
		p.recordClientError(end, end.Sub(start), status, ci, byRule, up, p.h1Client(c, h, r), route)
	} else {
		p.record(end, end.Sub(start), status, ci, byRule, up, p.h1Client(c, h, r), route)
	}
	return keep
}

// writeStatus answers with an empty response of the given status.
func writeStatus(bw *bufio.Writer, status int, keep bool) bool {
	if status == http.StatusBadGateway {
		bw.WriteString(badGatewayMsg)
	} else {
		bw.WriteString("HTTP/1.1 ")
		bw.WriteString(strconv.Itoa(status))
		bw.WriteByte(' ')
		bw.WriteString(http.StatusText(status))
		bw.WriteString("\r\nContent-Length: 0\r\n")
	}
	if !keep {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	return bw.Flush() == nil && keep
}

// proxyH1 sends the request to up (retrying refused connections on other upstreams, and a stale
// keep-alive connection once on a new one) and copies the answer to the client. It returns the
// status to record, the cohort that served, whether the client connection stays open, the
// upstream connection to return to its upstream's pool (nil when none), and the upstream that
// answered or failed last (recorded as the request's instance).
func (p *Proxy) proxyH1(c *h1Conn, h *h1Head, t *table, ci int, up *upstream, keep bool, start time.Time) (status, cohort int, keepClient bool, reuse *upConn, from *upstream, client bool) {
	// A reading of time.Now for the first wait's deadline, unless p.now is another clock or a
	// dial or an attempt has taken time since: the request's start saves a clock read.
	var now time.Time
	if p.wallClock {
		now = start
	}
	for attempt := 0; ; attempt++ {
		// (the request's start stands in for the clock in the pool: its idle timeout is 90 s)
		var err error
		uc := up.pool.get(start.UnixNano(), int64(p.fast.idle))
		fresh := uc == nil
		if fresh {
			uc, err = p.dial(context.Background(), up)
			now = time.Time{}
		}
		if err == nil {
			c.up.Store(uc)
			var rh respHead
			err = p.roundTripH1(uc, c, h, up, &rh, now)
			now = time.Time{}
			if err != nil && !fresh && isStale(err) {
				_ = uc.nc.Close()
				if uc, err = p.dial(context.Background(), up); err == nil {
					c.up.Store(uc)
					err = p.roundTripH1(uc, c, h, up, &rh, now)
				}
			}
			if err == nil {
				up.ok()
				status, keep, reuse, client := p.copyResponseH1(c, h, up, uc, &rh, keep)
				c.up.Store(nil)
				return status, ci, keep, reuse, up, client
			}
			c.up.Store(nil)
			if uc != nil {
				_ = uc.nc.Close()
			}
		}
		if errors.Is(err, errClientGone) {
			// nginx's convention; nobody to answer. Kept in the analysis: the upstream was slow enough
			// for the client to give up, and that wait is its latency.
			return statusClientClosed, ci, false, nil, up, false
		}
		if !isDialError(err) {
			status := http.StatusBadGateway
			if errors.Is(err, os.ErrDeadlineExceeded) {
				status = http.StatusGatewayTimeout
			}
			p.log.Debug("proxy error", "cohort", cohortNames[ci], "upstream", up.raw, "err", err)
			return status, ci, writeStatus(c.bw, status, keep), nil, up, false
		}
		nci, next := p.refused(t, ci, up, err, attempt < 2)
		if next == nil {
			return http.StatusBadGateway, ci, writeStatus(c.bw, http.StatusBadGateway, keep), nil, up, false
		}
		ci, up = nci, next
	}
}

// respHead is the parsed head of an upstream response; its slices point into the upstream
// connection's read buffer until the head is discarded.
type respHead struct {
	status  int
	head    []byte // the whole head, CRLFCRLF included
	rest    []byte // status line after "HTTP/1.x "
	http10  bool
	lf      bool // some line of the head ends in a bare LF (relayed with CRLF)
	close   bool // Connection: close, or HTTP/1.0 without keep-alive
	clen    int64
	chunked bool
	conn    [][]byte // other tokens of the Connection header (headers to drop)
	// drop: some header line may be dropped on the way to the client (skipResponseHeader); when
	// false, the header lines are relayed as they are, in one piece
	drop bool
}

var (
	errUpstreamHead = errors.New("malformed response head from upstream")
	errClientGone   = errors.New("client went away while the upstream was answering")
)

// watchClientAfter is how long an answer may take before the h1 loop watches for the client leaving.
const watchClientAfter = 200 * time.Millisecond

// roundTripH1 writes the request head to uc and reads the response head into rh (skipping
// informational responses). now is a recent reading of time.Now, or zero to read the clock.
func (p *Proxy) roundTripH1(uc *upConn, c *h1Conn, h *h1Head, up *upstream, rh *respHead, now time.Time) error {
	b := append(uc.head[:0], h.method...)
	b = append(b, ' ')
	b = append(b, h.target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	if p.preserveHost {
		b = append(b, h.host...)
	} else {
		b = append(b, up.url.Host...)
	}
	b = append(b, "\r\n"...)
	for _, l := range h.lines[:h.nlines] {
		if skipRequestHeader(l[0], l[1]) {
			continue
		}
		b = append(b, l[0]...)
		b = append(b, ": "...)
		b = append(b, l[1]...)
		b = append(b, "\r\n"...)
	}
	// X-Forwarded-For: the client IP, after the incoming list when that is trusted (as SetXForwarded).
	if (p.trustForwarded && len(h.xff) > 0) || c.ip != "" {
		b = append(b, "X-Forwarded-For: "...)
		if p.trustForwarded {
			for i, v := range h.xff {
				if i > 0 {
					b = append(b, ", "...)
				}
				b = append(b, v...)
			}
			if len(h.xff) > 0 && c.ip != "" {
				b = append(b, ", "...)
			}
		}
		b = append(b, c.ip...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Forwarded-Host: "...)
	b = append(b, h.host...)
	b = append(b, "\r\nX-Forwarded-Proto: http\r\n\r\n"...)
	uc.head = keepHead(b)
	// Wait for the answer. A quick one needs nothing more; when it takes longer than
	// watchClientAfter, a watcher notices a client that leaves meanwhile and ends the wait
	// (errClientGone), as ServeHTTP's request context does.
	//
	// The first wait's deadline is set lazily (armLazy: it ends watchClientAfter to 1.25 times
	// that after now) unless the response header timeout comes first, and is left in place after
	// the answer: the next wait on this connection sets or keeps its own, and the relay of a body
	// that has to be waited for clears it (copyResponseH1). That saves setting two deadlines per
	// request.
	var deadline time.Time
	if now.IsZero() {
		now = time.Now()
	}
	if p.fast.rht > 0 {
		deadline = now.Add(p.fast.rht)
	}
	if first := now.Add(watchClientAfter); !deadline.IsZero() && deadline.Before(first.Add(lazySlack(watchClientAfter))) {
		if deadline.Before(first) {
			first = deadline
		}
		uc.rdl = time.Time{}
		_ = uc.nc.SetReadDeadline(first)
	} else {
		armLazy(uc.nc, &uc.rdl, now, watchClientAfter)
	}
	// The answer cannot be there before the request is: send it and wait for the answer without
	// the read that would find nothing. (Measured: that read failed with EAGAIN on 0.9 of every
	// request; the client's side is different — after the yield in serveConn its next request is
	// usually there already, and waiting first there was slower: bench/RESULTS.md.)
	if err := writeThenWait(uc.rw, b, uc.reused); err != nil {
		return errors.Join(errStale, err) // (the connection is closed)
	}
	watching := false
	defer c.unwatch()
	for {
		err := readRespHead(uc.br, rh)
		if err != nil && !watching && errors.Is(err, os.ErrDeadlineExceeded) && (deadline.IsZero() || time.Now().Before(deadline)) {
			// the slow case: wait the rest of the timeout, watching the client
			watching = true
			uc.rdl = time.Time{}
			_ = uc.nc.SetReadDeadline(deadline)
			c.watch()
			continue
		}
		if err != nil {
			if c.gone.Load() {
				return errClientGone
			}
			return err
		}
		if rh.status >= 200 {
			if uc.reused && overrun(uc.br, rh, h.method) {
				return errors.Join(errStale, errOverrun)
			}
			return nil
		}
		if rh.status == http.StatusSwitchingProtocols {
			return errors.New("upstream switched protocols on a request that asked for no upgrade")
		}
		_, _ = uc.br.Discard(len(rh.head)) // informational (103 Early Hints): skip
	}
}

// errOverrun: the first read of an answer on a reused connection held more than the whole answer.
// Nothing was sent to the client yet; the request goes out again on a new connection.
var errOverrun = errors.New("upstream sent more than its answer on a reused connection")

// overrun reports whether br holds more than the answer whose head rh is — bytes after a complete
// answer, which no request asked for (one request is outstanding at a time). The connection is out
// of step: either the answer is stray bytes that came after this request was sent (the tail of an
// earlier, badly framed answer: then this request's answer is what follows) or the tail is. On a
// reused connection it cannot be told which, so the caller sends the request again on a new one (a
// new connection has no earlier answer: there the answer is relayed and the connection closed).
// Answers whose end is not yet buffered (long or chunked bodies) are not checked.
func overrun(br *bufio.Reader, rh *respHead, method []byte) bool {
	n := int64(len(rh.head))
	switch {
	case rh.status == http.StatusNoContent || rh.status == http.StatusNotModified || string(method) == http.MethodHead:
	case rh.clen >= 0 && !rh.chunked:
		n += rh.clen
	default:
		return false
	}
	return int64(br.Buffered()) > n
}

// readRespHead reads (without consuming) one response head from br into rh.
func readRespHead(br *bufio.Reader, rh *respHead) error {
	var buf []byte
	for {
		b, err := br.Peek(max(br.Buffered(), 1))
		if err != nil {
			return err
		}
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			buf = b[:i+4]
			break
		}
		if i := lfHeadEnd(b); i >= 0 {
			buf = b[:i] // ended by a bare LF: read as net/http would, relayed with CRLFs
			break
		}
		if len(b) >= br.Size() {
			return fmt.Errorf("%w: head larger than %d bytes", errUpstreamHead, br.Size())
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return err
		}
	}
	*rh = respHead{head: buf, clen: -1, conn: rh.conn[:0]}
	line, pos := headLine(buf, 0, rh)
	switch {
	case len(line) >= 12 && string(line[:9]) == "HTTP/1.1 ":
	case len(line) >= 12 && string(line[:9]) == "HTTP/1.0 ":
		rh.http10, rh.close = true, true
	default:
		return fmt.Errorf("%w: status line %q", errUpstreamHead, line)
	}
	if bytes.IndexByte(line, '\r') >= 0 {
		return fmt.Errorf("%w: bare CR in status line %q", errUpstreamHead, line)
	}
	rh.rest = line[9:]
	code := rh.rest[:3]
	if code[0] < '1' || code[0] > '5' || code[1] < '0' || code[1] > '9' || code[2] < '0' || code[2] > '9' ||
		(len(rh.rest) > 3 && rh.rest[3] != ' ') {
		return fmt.Errorf("%w: status line %q", errUpstreamHead, line)
	}
	rh.status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	keepAlive, sawLength := false, false
	for {
		line, pos = headLine(buf, pos, rh)
		if len(line) == 0 {
			// the empty line that ends the head (before the "\r\n\r\n" found, which may be in
			// the body after a head ended by bare LFs)
			rh.head = buf[:pos]
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || bytes.IndexByte(line, '\r') >= 0 {
			return fmt.Errorf("%w: header line %q", errUpstreamHead, line)
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		for _, c := range name {
			if !isTokenByte(c) {
				return fmt.Errorf("%w: header name %q", errUpstreamHead, name)
			}
		}
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return fmt.Errorf("%w: control byte in header %q", errUpstreamHead, name)
			}
		}
		if !rh.drop && hopResponseHeader(name) {
			rh.drop = true
		}
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if !digits(value) || err != nil || (rh.clen >= 0 && rh.clen != n) {
				return fmt.Errorf("%w: Content-Length %q", errUpstreamHead, value)
			}
			rh.clen, sawLength = n, true
		case asciiEqualFold(name, "Transfer-Encoding"):
			if !asciiEqualFold(value, "chunked") || rh.chunked {
				return fmt.Errorf("%w: Transfer-Encoding %q (only chunked is relayed)", errUpstreamHead, value)
			}
			rh.chunked = true
		case asciiEqualFold(name, "Connection"):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				tok = trimOWS(tok)
				switch {
				case asciiEqualFold(tok, "close"):
					rh.close = true
				case asciiEqualFold(tok, "keep-alive"):
					keepAlive = true
				case len(tok) > 0:
					rh.conn = append(rh.conn, tok)
				}
			}
		}
	}
	if rh.http10 && rh.chunked {
		// RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message means its framing is faulty
		return fmt.Errorf("%w: Transfer-Encoding in an HTTP/1.0 answer", errUpstreamHead)
	}
	if rh.http10 && keepAlive && rh.clen >= 0 {
		rh.close = false
	}
	if rh.chunked {
		rh.clen = -1 // Transfer-Encoding overrides Content-Length (RFC 9112 6.3), and the connection is suspect
		rh.close = rh.close || sawLength
	}
	if sawLength && (rh.chunked || rh.status == http.StatusNoContent) {
		rh.drop = true
	}
	return nil
}

// hopResponseHeader reports whether skipResponseHeader may drop a header by its name alone, or
// by what else the head holds (Trailer).
func hopResponseHeader(name []byte) bool {
	switch len(name) {
	case 2:
		return asciiEqualFold(name, "Te")
	case 7:
		return asciiEqualFold(name, "Upgrade") || asciiEqualFold(name, "Trailer")
	case 10:
		return asciiEqualFold(name, "Connection") || asciiEqualFold(name, "Keep-Alive")
	case 16:
		return asciiEqualFold(name, "Proxy-Connection")
	case 17:
		return asciiEqualFold(name, "Transfer-Encoding")
	case 18:
		return asciiEqualFold(name, "Proxy-Authenticate")
	}
	return false
}

// headLine returns the line of a head starting at pos, without its end (CRLF, or a bare LF, which
// sets rh.lf), and the position after it.
func headLine(buf []byte, pos int, rh *respHead) (line []byte, next int) {
	eol := bytes.IndexByte(buf[pos:], '\n')
	line, next = buf[pos:pos+eol], pos+eol+1
	if n := len(line); n > 0 && line[n-1] == '\r' {
		return line[:n-1], next
	}
	rh.lf = true
	return line, next
}

// skipResponseHeader reports whether an upstream response header is dropped: hop-by-hop headers
// and those the Connection header names. Transfer-Encoding is written by copyResponseH1.
func skipResponseHeader(name []byte, rh *respHead) bool {
	switch {
	case asciiEqualFold(name, "Connection"), asciiEqualFold(name, "Keep-Alive"),
		asciiEqualFold(name, "Proxy-Connection"), asciiEqualFold(name, "Transfer-Encoding"),
		asciiEqualFold(name, "Upgrade"), asciiEqualFold(name, "Proxy-Authenticate"),
		asciiEqualFold(name, "Te"):
		return true
	case asciiEqualFold(name, "Trailer"):
		return !rh.chunked // trailers are relayed only with a chunked body
	case asciiEqualFold(name, "Content-Length"):
		// none with a chunked body, nor on a 204 (RFC 9110 8.6: a client could wait for the body)
		return rh.chunked || rh.status == http.StatusNoContent
	}
	for _, tok := range rh.conn {
		if bytes.EqualFold(name, tok) {
			return true
		}
	}
	return false
}

// copyResponseH1 writes the response head and body to the client. It returns the status to record
// (502 when the upstream broke off the body), whether the client connection stays open, uc when
// it may go back to the pool (else it is closed), and whether the client failed (client: it did
// not take the answer).
func (p *Proxy) copyResponseH1(c *h1Conn, h *h1Head, up *upstream, uc *upConn, rh *respHead, keep bool) (status int, keepClient bool, reuse *upConn, client bool) {
	bw := c.bw
	noBody := rh.status == http.StatusNoContent || rh.status == http.StatusNotModified || string(h.method) == http.MethodHead
	untilClose := !noBody && !rh.chunked && rh.clen < 0
	bw.WriteString("HTTP/1.1 ")
	bw.Write(rh.rest)
	if len(rh.rest) == 3 {
		bw.WriteByte(' ') // "HTTP/1.1 200" without a reason: the space after the code is required
	}
	bw.WriteString("\r\n")
	if rh.lf {
		// a head with bare LFs: each line relayed with CRLF
		_, pos := headLine(rh.head, 0, rh)
		for {
			var line []byte
			if line, pos = headLine(rh.head, pos, rh); len(line) == 0 {
				break
			}
			if !skipResponseHeader(line[:bytes.IndexByte(line, ':')], rh) {
				bw.Write(line)
				bw.WriteString("\r\n")
			}
		}
	} else if !rh.drop {
		// nothing to drop (the usual answer): the header lines in one piece
		eol := bytes.Index(rh.head, []byte("\r\n"))
		bw.Write(rh.head[eol+2 : len(rh.head)-2])
	} else {
		eol := bytes.Index(rh.head, []byte("\r\n"))
		for pos := eol + 2; pos < len(rh.head)-2; {
			eol := bytes.Index(rh.head[pos:], []byte("\r\n"))
			line := rh.head[pos : pos+eol+2]
			pos += eol + 2
			if skipResponseHeader(line[:bytes.IndexByte(line, ':')], rh) {
				continue
			}
			bw.Write(line)
		}
	}
	if (rh.chunked || untilClose) && rh.status != http.StatusNoContent {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if !keep {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	_, _ = uc.br.Discard(len(rh.head))
	// A body that is not all there yet may take long (a stream): from the first wait for it, a
	// watcher ends the relay if the client leaves, as while waiting for the head.
	// (c.bodyWait: uc is c.up.)
	c.gone.Store(false)
	r := relay{br: uc.br, bw: bw, onWait: c.bodyWait, beforeRead: c.bodyRead}
	var readErr, writeErr error
	switch {
	case noBody:
	case rh.chunked:
		readErr, writeErr = r.chunked()
	case untilClose:
		readErr, writeErr = r.untilClose()
	default:
		readErr, writeErr = r.n(rh.clen)
	}
	c.unwatch()
	gone := c.gone.Load()
	if writeErr == nil {
		writeErr = bw.Flush()
	}
	// Reused only at a clean message boundary: bytes beyond the body, or a head that declared a
	// body the status does not allow (a 204 with a length, a chunked answer without a body: a
	// server that may still send it), mean the upstream does not frame its answers as it says.
	// A HEAD or 304 answer's Content-Length is the length a GET's body would have (RFC 9110 8.6),
	// not a body to come: the connection is reused, as nginx and http.Transport do; a body a broken
	// server sends anyway arrives on an idle connection, which is then closed, never read
	// (writeThenWait).
	declared := rh.chunked || rh.clen > 0 && rh.status == http.StatusNoContent
	if readErr == nil && writeErr == nil && !rh.close && !untilClose && uc.br.Buffered() == 0 && !(noBody && declared) {
		reuse = uc
	} else {
		_ = uc.nc.Close()
	}
	switch {
	case (writeErr != nil || readErr != nil && gone) && rh.status >= 500:
		// the upstream failed before the client did anything: its 5xx stands, whatever the client
		// did with it (nginx logs the status it sent)
		return rh.status, false, reuse, false
	case writeErr != nil:
		// the client stopped taking its answer (nginx's 499): its failure, not the upstream's
		return statusClientClosed, false, reuse, true
	case readErr != nil && gone:
		// the client left while the upstream kept it waiting mid-body: 499 as when it leaves before
		// the head, kept in the analysis — that wait is the upstream's latency (a canary that hangs
		// mid-answer must not look healthy)
		return statusClientClosed, false, reuse, false
	case readErr != nil:
		// The upstream broke off mid-body, or stalled longer than the read timeout: close the
		// client connection too, so the truncated response is not taken as whole, and count it as
		// the upstream's failure.
		p.log.Debug("upstream broke off the response body", "upstream", up.raw, "err", readErr)
		if errors.Is(readErr, os.ErrDeadlineExceeded) {
			return http.StatusGatewayTimeout, false, reuse, false
		}
		return http.StatusBadGateway, false, reuse, false
	}
	return rh.status, keep, reuse, false
}

// relay copies a body from the upstream's reader br to the client's writer bw.
type relay struct {
	br *bufio.Reader
	bw *bufio.Writer
	// onWait, when set, is called (once) the first time the relay has to wait for the upstream.
	onWait func()
	// beforeRead, when set, is called before every read that may wait for the upstream (after
	// onWait): it sets the read timeout.
	beforeRead func()
}

// fill makes br have buffered data, flushing bw first when a read would wait for the upstream
// (so streamed responses reach the client as they come).
func (r *relay) fill() (readErr, writeErr error) {
	br, bw := r.br, r.bw
	if br.Buffered() > 0 {
		return nil, nil
	}
	if bw.Buffered() > 0 {
		if err := bw.Flush(); err != nil {
			return nil, err
		}
	}
	if r.onWait != nil {
		r.onWait()
		r.onWait = nil
	}
	if r.beforeRead != nil {
		r.beforeRead()
	}
	_, err := br.Peek(1)
	return err, nil
}

// n copies n body bytes.
func (r *relay) n(n int64) (readErr, writeErr error) {
	br, bw := r.br, r.bw
	for n > 0 {
		if readErr, writeErr = r.fill(); readErr != nil || writeErr != nil {
			if readErr == io.EOF {
				readErr = io.ErrUnexpectedEOF
			}
			return readErr, writeErr
		}
		b, _ := br.Peek(int(min(n, int64(br.Buffered()))))
		if _, err := bw.Write(b); err != nil {
			return nil, err
		}
		_, _ = br.Discard(len(b))
		n -= int64(len(b))
	}
	return nil, nil
}

// chunked copies a chunked body as it is, framing and trailers included, checking the framing
// so the end of the body (and the reuse of the connection) is known exactly.
func (r *relay) chunked() (readErr, writeErr error) {
	br, bw := r.br, r.bw
	line := func() ([]byte, error, error) {
		if re, we := r.fill(); re != nil || we != nil {
			return nil, re, we
		}
		l, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = fmt.Errorf("%w: chunk line longer than %d bytes", errUpstreamHead, br.Size())
			}
			return nil, err, nil
		}
		if len(l) < 2 || l[len(l)-2] != '\r' || len(l) > chunkLineMax {
			return nil, fmt.Errorf("%w: chunk line %q", errUpstreamHead, l), nil
		}
		return l, nil, nil
	}
	for {
		l, re, we := line()
		if re != nil || we != nil {
			return eofUnexpected(re), we
		}
		// chunk-size = 1*HEXDIG, then chunk extensions after BWS ";" (RFC 9112 7.1.1); anything
		// else (a sign, a leading space) is refused, since readers disagree on it
		size := l[:len(l)-2]
		end := 0
		for end < len(size) && isHex(size[end]) {
			end++
		}
		if rest := trimOWS(size[end:]); len(rest) > 0 && rest[0] != ';' {
			end = 0
		}
		n, err := strconv.ParseUint(string(size[:end]), 16, 62)
		if end == 0 || err != nil {
			return fmt.Errorf("%w: chunk size %q", errUpstreamHead, size), nil
		}
		if _, err := bw.Write(l); err != nil {
			return nil, err
		}
		if n == 0 {
			for { // trailer section, up to the empty line
				l, re, we := line()
				if re != nil || we != nil {
					return eofUnexpected(re), we
				}
				if _, err := bw.Write(l); err != nil {
					return nil, err
				}
				if len(l) == 2 {
					return nil, nil
				}
			}
		}
		if re, we := r.n(int64(n)); re != nil || we != nil {
			return re, we
		}
		l, re, we = line()
		if re != nil || we != nil {
			return eofUnexpected(re), we
		}
		if len(l) != 2 {
			return fmt.Errorf("%w: chunk not followed by CRLF", errUpstreamHead), nil
		}
		if _, err := bw.Write(l); err != nil {
			return nil, err
		}
	}
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// untilClose copies a body delimited by the end of the connection, chunking it for the client.
func (r *relay) untilClose() (readErr, writeErr error) {
	br, bw := r.br, r.bw
	for {
		re, we := r.fill()
		if we != nil {
			return nil, we
		}
		if re == io.EOF {
			_, err := bw.WriteString("0\r\n\r\n")
			return nil, err
		}
		if re != nil {
			return re, nil
		}
		b, _ := br.Peek(br.Buffered())
		bw.WriteString(strconv.FormatInt(int64(len(b)), 16))
		bw.WriteString("\r\n")
		bw.Write(b)
		if _, err := bw.WriteString("\r\n"); err != nil {
			return nil, err
		}
		_, _ = br.Discard(len(b))
	}
}

// prefixConn is a handed-off connection: reads drain what the h1 loop had buffered first.
type prefixConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// CloseWrite half-closes a TCP connection, which net/http uses to let a client read an error
// answer before the connection is reset.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// connListener feeds handed-off connections to the fallback net/http server.
type connListener struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *connListener) put(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.closed:
		_ = c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
