package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The fast path proxies the common request — GET, HEAD or OPTIONS without a body, not an
// upgrade, to a plain-http upstream without a base path — on the handler's own goroutine over a
// keep-alive connection pool of its own: the request head is written straight from the incoming
// request and the answer read with http.ReadResponse. Compared with httputil.ReverseProxy over
// http.Transport it saves the request clone, the client trace, the transport's read and write
// goroutines with their channel hand-offs and most per-request allocations. Everything else
// (bodies, upgrades, https upstreams, base paths, 100-continue) takes the ReverseProxy.
//
// Only idempotent methods without a body are taken, so a request that met a stale keep-alive
// connection is simply sent again on a new one, like http.Transport does.

// fastOK reports whether r may take the fast path (the upstream side is checked per upstream).
func fastOK(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 || r.ProtoMajor != 1 {
		return false
	}
	h := r.Header
	return len(h["Upgrade"]) == 0 && len(h["Expect"]) == 0 && len(h["Content-Length"]) == 0
}

// connPool keeps idle keep-alive connections to one upstream, newest first.
type connPool struct {
	mu   sync.Mutex
	idle []*upConn
}

type upConn struct {
	nc     net.Conn
	br     *bufio.Reader
	rw     io.ReadWriter // what br reads through and requests are written to (connIO)
	head   []byte        // the request head being sent (roundTripH1, fastRoundTrip)
	idleAt int64         // when it last went into the pool; 0 for a connection never pooled
	// rdl: the read deadline the h1 loop's armLazy set last, or zero when another one may be set
	// (only the goroutine that holds the connection touches it)
	rdl time.Time
	// reused: the connection comes from the pool, so the upstream may have closed it or written to
	// it meanwhile: writeThenWait refuses it when input is waiting (errIdleInput).
	reused bool
}

// errIdleInput: a pooled connection had input waiting when it was picked — an end of stream, or
// bytes nobody asked for (stray bytes after a badly framed answer). Nothing was sent on it; the
// request goes out on a new connection.
var errIdleInput = errors.New("upstream connection had input waiting while idle")

func (cp *connPool) get(now, maxIdle int64) *upConn {
	cp.mu.Lock()
	for n := len(cp.idle); n > 0; n = len(cp.idle) {
		uc := cp.idle[n-1]
		cp.idle[n-1] = nil
		cp.idle = cp.idle[:n-1]
		if now-uc.idleAt < maxIdle {
			cp.mu.Unlock()
			uc.reused = true
			return uc
		}
		_ = uc.nc.Close()
	}
	cp.mu.Unlock()
	return nil
}

// put returns uc to the pool, or closes it when the pool holds limit connections.
func (cp *connPool) put(uc *upConn, now int64, limit int) {
	uc.idleAt = now
	cp.mu.Lock()
	if len(cp.idle) < limit {
		cp.idle = append(cp.idle, uc)
		cp.mu.Unlock()
		return
	}
	cp.mu.Unlock()
	_ = uc.nc.Close()
}

func (cp *connPool) closeIdle() {
	cp.mu.Lock()
	idle := cp.idle
	cp.idle = nil
	cp.mu.Unlock()
	for _, uc := range idle {
		_ = uc.nc.Close()
	}
}

// fastConfig holds the transport settings of the fast path.
type fastConfig struct {
	dialer    net.Dialer
	rht       time.Duration
	read      time.Duration // between two reads of an answer's body (UpstreamReadTimeout)
	idle      time.Duration
	perHost   int
	upstreams sync.Map // *upstream -> struct{}, for closing idle connections
}

var errStale = errors.New("stale keep-alive connection")

// maxKeptHead is the largest request head buffer an upstream connection keeps for its next
// request; a larger one (net/http takes heads up to 1 MiB) is dropped after use.
const maxKeptHead = 16 << 10

// keepHead is b to build the next request head in, or nil when b has grown larger than maxKeptHead.
func keepHead(b []byte) []byte {
	if cap(b) > maxKeptHead {
		return nil
	}
	return b
}

// serveFast proxies r (which passed fastOK) to c.up, retrying refused connections on other
// upstreams like the retrier does. It sets c.status, c.cohort and c.up.
func (p *Proxy) serveFast(w http.ResponseWriter, r *http.Request, c *call) {
	ctx := r.Context()
	// One watcher per request: when the client goes away, whatever upstream connection is in use
	// gets a past deadline, so a blocked read or write returns at once.
	stop := context.AfterFunc(ctx, func() {
		if uc := c.conn.Load(); uc != nil {
			_ = uc.nc.SetDeadline(time.Unix(1, 0))
		}
	})
	defer stop()
	for attempt := 0; ; attempt++ {
		uc, fresh, err := p.fastConn(ctx, c.up)
		if err == nil {
			var resp *http.Response
			c.conn.Store(uc)
			resp, err = p.fastRoundTrip(uc, r, c.up)
			if err == nil {
				p.fastCopy(w, r, c, uc, resp, stop)
				return
			}
			_ = uc.nc.Close()
			if !fresh && ctx.Err() == nil && isStale(err) {
				// The upstream closed an idle connection: send again on a new one (idempotent, no body).
				if uc, err = p.dial(ctx, c.up); err == nil {
					c.conn.Store(uc)
					if resp, err = p.fastRoundTrip(uc, r, c.up); err == nil {
						p.fastCopy(w, r, c, uc, resp, stop)
						return
					}
					_ = uc.nc.Close()
				}
			}
		}
		if ctx.Err() != nil {
			c.status = 499 // client went away (nginx's convention)
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		if !isDialError(err) {
			c.status = http.StatusBadGateway
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.status = http.StatusGatewayTimeout
			}
			p.log.Debug("proxy error", "cohort", cohortNames[c.cohort], "upstream", c.up.raw, "err", err)
			w.WriteHeader(c.status)
			return
		}
		ci, next := p.refused(c.t, c.cohort, c.up, err, attempt < 2)
		if next == nil {
			c.status = http.StatusBadGateway
			w.WriteHeader(c.status)
			return
		}
		c.cohort, c.up = ci, next
		if !next.fast {
			p.serveRP(w, r, c)
			return
		}
	}
}

func isStale(err error) bool {
	return errors.Is(err, errStale) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// fastConn returns an idle connection to u, or a new one (fresh).
func (p *Proxy) fastConn(ctx context.Context, u *upstream) (uc *upConn, fresh bool, err error) {
	if uc := u.pool.get(p.now().UnixNano(), int64(p.fast.idle)); uc != nil {
		return uc, false, nil
	}
	uc, err = p.dial(ctx, u)
	return uc, true, err
}

func (p *Proxy) dial(ctx context.Context, u *upstream) (*upConn, error) {
	nc, err := p.fast.dialer.DialContext(ctx, "tcp", u.hostport)
	if err != nil {
		return nil, err
	}
	p.fast.upstreams.Store(u, struct{}{})
	uio := connIO(nc)
	return &upConn{nc: nc, br: bufio.NewReaderSize(uio, upReadBuf), rw: uio}, nil
}

// hopHeaders are removed in both directions (RFC 9110 7.6.1), as httputil.ReverseProxy does.
var hopHeaders = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func isHop(k string) bool {
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// connectionListed reports whether header k is named in a Connection header (hop-by-hop too).
func connectionListed(conn []string, k string) bool {
	for _, v := range conn {
		for f := range strings.SplitSeq(v, ",") {
			if textproto.TrimString(f) != "" && strings.EqualFold(textproto.TrimString(f), k) {
				return true
			}
		}
	}
	return false
}

// fastRoundTrip writes the request head to uc and reads the response head.
func (p *Proxy) fastRoundTrip(uc *upConn, r *http.Request, u *upstream) (*http.Response, error) {
	b := uc.head[:0]
	b = append(b, r.Method...)
	b = append(b, ' ')
	if strings.HasPrefix(r.RequestURI, "/") {
		b = append(b, r.RequestURI...) // origin-form target as the client sent it
	} else {
		b = append(b, r.URL.RequestURI()...) // absolute-form or "*"
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	if p.preserveHost {
		b = append(b, r.Host...)
	} else {
		b = append(b, u.url.Host...)
	}
	b = append(b, "\r\n"...)
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		switch k {
		case "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded":
			continue // replaced below, as ReverseProxy does (Forwarded is dropped)
		case "Te":
			// like ReverseProxy: keep "Te: trailers" only
			for _, v := range vv {
				if strings.EqualFold(textproto.TrimString(v), "trailers") {
					b = append(b, "Te: trailers\r\n"...)
					break
				}
			}
			continue
		}
		if isHop(k) || (len(conn) > 0 && connectionListed(conn, k)) {
			continue
		}
		for _, v := range vv {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	// X-Forwarded-For: the client IP, after the incoming list when that is trusted (as SetXForwarded).
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = ""
	}
	var prior []string
	if p.trustForwarded {
		prior = r.Header["X-Forwarded-For"]
	}
	if len(prior) > 0 || ip != "" {
		b = append(b, "X-Forwarded-For: "...)
		if len(prior) > 0 {
			for i, v := range prior {
				if i > 0 {
					b = append(b, ", "...)
				}
				b = append(b, v...)
			}
			if ip != "" {
				b = append(b, ", "...)
			}
		}
		b = append(b, ip...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Forwarded-Host: "...)
	b = append(b, r.Host...)
	if r.TLS != nil {
		b = append(b, "\r\nX-Forwarded-Proto: https\r\n\r\n"...)
	} else {
		b = append(b, "\r\nX-Forwarded-Proto: http\r\n\r\n"...)
	}
	uc.head = keepHead(b)
	// The answer cannot be there before the request is: no read first (see roundTripH1). The wait
	// ends after watchClientAfter at the latest, so a connection the upstream closes between
	// writeThenWait's check for input and the write costs that, not the whole response-header
	// timeout: the read that follows sees its EOF and the request is sent again.
	now := time.Now()
	first := now.Add(watchClientAfter)
	if p.fast.rht > 0 && p.fast.rht < watchClientAfter {
		first = now.Add(p.fast.rht)
	}
	// (After each deadline set: a client that left just before had its watcher's past deadline
	// overwritten; its context says so.)
	uc.rdl = time.Time{}
	_ = uc.nc.SetReadDeadline(first)
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	if err := writeThenWait(uc.rw, b, uc.reused); err != nil {
		return nil, errors.Join(errStale, err)
	}
	if p.fast.rht > 0 {
		_ = uc.nc.SetReadDeadline(now.Add(p.fast.rht))
	} else {
		_ = uc.nc.SetReadDeadline(time.Time{})
	}
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(uc.br, r)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue // informational (103 Early Hints): skip, as for a request without a body
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, errors.New("upstream switched protocols on a request that asked for no upgrade")
		}
		if p.fast.rht > 0 {
			_ = uc.nc.SetReadDeadline(time.Time{})
		}
		// more than the whole answer buffered on a reused connection: out of step (see overrun)
		if uc.reused {
			n := resp.ContentLength
			if r.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
				n = 0
			}
			if n >= 0 && len(resp.TransferEncoding) == 0 && int64(uc.br.Buffered()) > n {
				return nil, errors.Join(errStale, errOverrun)
			}
		}
		return resp, nil
	}
}

// fastCopy writes resp to w and returns uc to the pool when the body was read to its end and the
// client watcher (stop) never fired on it.
func (p *Proxy) fastCopy(w http.ResponseWriter, r *http.Request, c *call, uc *upConn, resp *http.Response, stop func() bool) {
	c.status = resp.StatusCode
	c.up.ok() // it answered: any back-off is over
	ctx := r.Context()
	dst := w.Header()
	conn := resp.Header["Connection"]
	for k, vv := range resp.Header {
		if isHop(k) || (len(conn) > 0 && connectionListed(conn, k)) {
			continue
		}
		dst[k] = vv
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		dst["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	stream := resp.ContentLength == -1 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	// each read of the body waits at most the upstream read timeout (nginx's proxy_read_timeout)
	uc.rdl = time.Time{}
	readErr, writeErr := copyBody(w, resp.Body, stream, func() {
		if p.fast.read > 0 && ctx.Err() == nil {
			armLazy(uc.nc, &uc.rdl, time.Now(), p.fast.read)
		}
	})
	watched := stop() // true: the watcher never ran, so uc has no past deadline
	if readErr == nil && writeErr == nil {
		for k, vv := range resp.Trailer {
			dst[http.TrailerPrefix+k] = vv
		}
		_ = resp.Body.Close() // read to EOF: cheap, keeps the connection usable
		// not reused after a HEAD whose answer declared a chunked body: the server may still send
		// it (a Content-Length there is the length a GET's body would have, RFC 9110 8.6: reused,
		// as in copyResponseH1)
		headBody := r.Method == http.MethodHead && len(resp.TransferEncoding) > 0
		// nor with bytes after the answer: they would be taken for the next request's answer
		if !resp.Close && watched && ctx.Err() == nil && !headBody && uc.br.Buffered() == 0 {
			c.up.pool.put(uc, p.now().UnixNano(), p.fast.perHost)
			return
		}
		_ = uc.nc.Close()
		return
	}
	_ = uc.nc.Close()
	if (writeErr != nil || ctx.Err() != nil) && resp.StatusCode >= 500 {
		return // the upstream failed before the client did anything: its 5xx (c.status) stands
	}
	if writeErr != nil {
		c.clientErr = true // the client did not take its answer: its failure, not the upstream's
		return
	}
	if ctx.Err() != nil {
		// the client left while the upstream kept it waiting mid-body: 499, kept in the analysis
		// as when it leaves before the head (that wait is the upstream's latency)
		c.status = statusClientClosed
		return
	}
	if readErr != nil {
		// The upstream broke off mid-body, or stalled longer than the read timeout: abort the
		// client's response too, so it is not taken as whole.
		p.log.Debug("upstream broke off the response body", "upstream", c.up.raw, "err", readErr)
		c.abort = true
		c.status = http.StatusBadGateway // a truncated answer is the upstream's failure
		if errors.Is(readErr, os.ErrDeadlineExceeded) {
			c.status = http.StatusGatewayTimeout
		}
	}
}

// copyBody copies the body with a pooled buffer, flushing after every write when stream is set;
// beforeRead is called before each read.
func copyBody(w http.ResponseWriter, body io.Reader, stream bool, beforeRead func()) (readErr, writeErr error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		beforeRead()
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil, werr
			}
			if stream {
				_ = http.NewResponseController(w).Flush()
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}
