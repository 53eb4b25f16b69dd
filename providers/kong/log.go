package kong

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/canaryctl/canaryctl/internal/intern"
	"github.com/canaryctl/canaryctl/providers"
)

// LogConfig configures a LogReceiver.
type LogConfig struct {
	// Addr to listen on, default 127.0.0.1:0. Kong must be able to reach it.
	Addr string
	// Secret is the bearer token Kong's http-log plugin must send (Authorization: Bearer SECRET);
	// every other post is answered 401 and counted. Empty: a random one (NewLogSecret).
	Secret string
	// CertFile and KeyFile, when set, make the receiver serve https.
	CertFile, KeyFile string
	// MaxRequests bounds the requests kept in memory, 24 bytes each (default 4,000,000, 96 MB):
	// the oldest go first, and are counted as dropped for the windows they belonged to.
	MaxRequests int
	// MaxInflight bounds the posts read and decoded at once, each with a buffer of up to MaxBody
	// (default 4 per CPU, at least 8).
	MaxInflight int
	// MaxBody is the largest post accepted (default 32 MiB; Kong's batches of 100 entries are
	// about 200 KB).
	MaxBody int
	// Wait is how long a post waits for a free slot before its entries are dropped and counted
	// (default 2s).
	Wait time.Duration
	// Lag is how late the entries of a window may arrive (Kong's queue holds them up to its
	// max_coalescing_delay): losses that arrive up to Lag after a window count for it (default 1.25s).
	Lag time.Duration
	// ClientHeader and ClientCookie, when set, name the request header (lower case, as Kong logs
	// request.headers) or cookie whose value is a request's client key (Request.Client): the
	// sticky key of Kong's hash mode (hash_on header or cookie). Otherwise, and for requests without
	// it (or with the header sent twice, which Kong logs as an array), the key is the
	// authenticated consumer's id, else client_ip.
	ClientHeader, ClientCookie string
	// ClientIP makes client_ip the client key even for requests with a consumer (hash_on ip).
	ClientIP bool
	// Resolve looks up a target's host name (default net.DefaultResolver.LookupHost), since Kong
	// logs the IP it connected to.
	Resolve func(ctx context.Context, host string) ([]string, error)
	Logger  *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time
}

// Defaults of LogConfig.
const (
	DefaultLogMaxRequests = 4_000_000
	DefaultLogMaxBody     = 32 << 20
	DefaultLogWait        = 2 * time.Second
	// staleGrace: entries that finished this long before the receiver started are stale (replayed,
	// or from a Kong node whose clock is far behind).
	staleGrace = time.Minute
	// lossSeconds is how far back losses are kept per second.
	lossSeconds = 4096
)

// LogStats are a receiver's counters since it started.
type LogStats struct {
	Received       int // entries decoded from authenticated posts
	Unattributed   int // entries whose target is no cohort's (or that had no upstream)
	Invalid        int // entries without a start time or a valid status
	DroppedEntries int // entries lost: overloaded (no free slot within Wait) or evicted from a full buffer
	RejectedPosts  int // posts answered 401
	StaleEntries   int // entries from before the receiver started, left out
}

// LogReceiver is the kong-log metrics source: an HTTP(S) server for Kong's http-log plugin that
// attributes each logged request to a cohort by the upstream target it was sent to (the last of
// `tries`), giving request-level latency and status per cohort. Only posts carrying the rollout's
// secret are read. It implements the rollout engine's RequestLog and IngestReporter interfaces.
//
// Ingestion decodes only the fields the analysis needs (started_at, latencies.request and .proxy,
// response.status, the last try's ip and port, the route and the request's method and URI) with its
// own scanner (logscan.go), straight from a reused buffer, into 24-byte records in a fixed ring: no
// allocation per entry, bounded memory at any rate.
type LogReceiver struct {
	cfg     LogConfig
	log     *slog.Logger
	srv     *http.Server
	ln      net.Listener
	scheme  string
	want    []byte // "Bearer SECRET"
	started time.Time

	cohorts atomic.Pointer[map[string]uint16] // ip:port -> target id; replaced whole by SetCohort
	// targets holds, by id-1, every (ip:port, cohort) pair SetCohort ever mapped: append-only, so a
	// record's id names the same target and cohort whatever SetCohort does later. targetIDs finds
	// a pair's id (guarded by mu).
	targets   atomic.Pointer[[]logTarget]
	targetIDs map[logTarget]uint16
	// routes names the records' routes and path templates (analysis.routes)
	routes routeNames
	slots  chan *logWorker

	mu   sync.Mutex
	ring []record
	// clients interns client keys (records keep the id)
	clients intern.Table[uint32]
	next    int  // index of the next write
	full    bool // the ring wrapped: ring[next] is the oldest
	stats   LogStats
	changed chan struct{} // closed and cleared when entries arrive, if someone waits

	lossMu sync.Mutex
	loss   [lossSeconds]lossBucket
}

type lossBucket struct {
	sec                      int64
	dropped, rejected, stale int
}

// record is one attributed request: the time it finished (µs since the epoch), its latency (µs),
// status, the id of the target that answered (which names its address and cohort) and the id of
// its client (0: unknown; else 1 + its index in the receiver's client table). While a worker
// decodes, client is 1 + the index of the key's span in the worker's arena instead.
type record struct {
	t      int64
	lat    uint32
	status uint16
	target uint16
	// route and path: ids in the receiver's route table (logroutes.go), 0 when the entry had none
	route, path uint16
	client      uint32
}

// maxClients bounds the client keys one receiver interns (a client beyond it reads as unknown):
// 1,048,576 keys of Kong's consumer ids or client IPs, tens of MB at most.
const maxClients = 1 << 20

// keySpan locates a client key in a worker's arena.
type keySpan struct{ off, n uint32 }

// logTarget is an upstream target address (ip:port, as Kong logs the last try) in a cohort.
type logTarget struct {
	addr   string
	cohort uint8
}

// maxTargets bounds the (address, cohort) pairs one receiver can tell apart: ids are 16 bits so
// that a record stays small (24 bytes with its route and client ids).
const maxTargets = math.MaxUint16

var cohortNames = [...]providers.Cohort{providers.Stable, providers.Baseline, providers.Canary}

func cohortIndex(c providers.Cohort) (uint8, bool) {
	for i, x := range cohortNames {
		if x == c {
			return uint8(i), true
		}
	}
	return 0, false
}

// logWorker is one in-flight slot: its body buffer and decoded records are reused post after post.
type logWorker struct {
	buf  []byte
	recs []record
	n    entryCounts
	// the client keys of recs (consumer id, else client_ip), interned when stored
	keys  []byte
	spans []keySpan
}

type entryCounts struct{ received, unattributed, invalid, stale int }

// NewLogSecret returns a random secret for the http-log plugin's Authorization header (32 bytes
// from crypto/rand, base64url).
func NewLogSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("kong-log: make a secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// NewLogReceiver listens on cfg.Addr and serves http-log posts until Close.
func NewLogReceiver(cfg LogConfig) (*LogReceiver, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = DefaultLogMaxRequests
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = max(8, 4*runtime.GOMAXPROCS(0))
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultLogMaxBody
	}
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultLogWait
	}
	if cfg.Lag <= 0 {
		cfg.Lag = time.Second + 250*time.Millisecond
	}
	if cfg.Resolve == nil {
		cfg.Resolve = net.DefaultResolver.LookupHost
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Secret == "" {
		s, err := NewLogSecret()
		if err != nil {
			return nil, err
		}
		cfg.Secret = s
	}
	if !validSecret(cfg.Secret) {
		return nil, &ConfigError{Field: "log.secretFile", Msg: "the kong-log secret must be 16 to 256 printable ASCII characters without spaces (it goes into an HTTP header)"}
	}
	var tc *tls.Config
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, &ConfigError{Field: "log.tls", Msg: "set both certFile and keyFile for an https receiver"}
		}
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, &ConfigError{Field: "log.tls", Msg: fmt.Sprintf("load the receiver's certificate: %v", err)}
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("kong-log: listen on %s: %w", cfg.Addr, err)
	}
	r := &LogReceiver{
		cfg: cfg, log: logger.With("metrics", "kong-log"), ln: ln, scheme: "http",
		want: []byte("Bearer " + cfg.Secret), started: cfg.Now(),
		ring:  make([]record, cfg.MaxRequests),
		slots: make(chan *logWorker, cfg.MaxInflight),
	}
	r.clients.Max, r.routes.Max = maxClients, maxRouteNames
	empty := map[string]uint16{}
	r.cohorts.Store(&empty)
	r.targets.Store(&[]logTarget{})
	r.targetIDs = map[logTarget]uint16{}
	for range cfg.MaxInflight {
		r.slots <- &logWorker{}
	}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelDebug)}
	if tc != nil {
		r.scheme = "https"
		r.srv.TLSConfig = tc
		ln = tls.NewListener(ln, tc)
	}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func validSecret(s string) bool {
	if len(s) < 16 || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// URL is the receiver's address as http(s)://host:port/.
func (r *LogReceiver) URL() string { return r.scheme + "://" + r.ln.Addr().String() + "/" }

// authorization is the header value Kong must send. It is the secret: never log it.
func (r *LogReceiver) authorization() string { return string(r.want) }

// Close stops the server: from then on nothing is accepted (a replay after the rollout finds no
// receiver).
func (r *LogReceiver) Close() error { return r.srv.Close() }

// SetCohort maps the target addresses (host:port) of a cohort; host names are resolved to the IPs
// Kong logs.
func (r *LogReceiver) SetCohort(c providers.Cohort, addrs []string) error {
	ci, ok := cohortIndex(c)
	if !ok {
		return fmt.Errorf("kong-log: unknown cohort %q", c)
	}
	keys := map[string]bool{}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("kong-log: %q is not host:port", a)
		}
		if ip := net.ParseIP(host); ip != nil {
			keys[net.JoinHostPort(ip.String(), port)] = true
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ips, err := r.cfg.Resolve(ctx, host)
		cancel()
		if err != nil {
			return fmt.Errorf("kong-log: resolve target host %q: %w", host, err)
		}
		for _, ip := range ips {
			if p := net.ParseIP(ip); p != nil {
				ip = p.String()
			}
			keys[net.JoinHostPort(ip, port)] = true
		}
	}
	r.mu.Lock() // serializes writers of the map; readers load it without a lock
	defer r.mu.Unlock()
	old := *r.cohorts.Load()
	targets := *r.targets.Load()
	m := make(map[string]uint16, len(old)+len(keys))
	for k, id := range old {
		if targets[id-1].cohort != ci {
			m[k] = id
		}
	}
	if len(targets)+len(keys) > maxTargets {
		return fmt.Errorf("kong-log: %s targets: more than %d distinct target addresses for one receiver; start a new receiver (a new rollout)", c, maxTargets)
	}
	for k := range keys {
		tg := logTarget{addr: k, cohort: ci}
		id, ok := r.targetIDs[tg]
		if !ok {
			targets = append(targets[:len(targets):len(targets)], tg) // a new array: readers keep theirs
			id = uint16(len(targets))
			r.targetIDs[tg] = id
		}
		m[k] = id
	}
	r.targets.Store(&targets)
	r.cohorts.Store(&m)
	return nil
}

// ServeHTTP accepts an http-log post that carries the rollout's secret.
func (r *LogReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost && req.Method != http.MethodPut && req.Method != http.MethodPatch {
		http.Error(w, "http-log receiver: POST entries here", http.StatusMethodNotAllowed)
		return
	}
	now := r.cfg.Now()
	if subtle.ConstantTimeCompare(headerBytes(req.Header.Get("Authorization")), r.want) != 1 {
		n := r.reject(now)
		if n&(n-1) == 0 { // the 1st, 2nd, 4th, 8th... rejection: enough to be seen, not a flood
			r.log.Warn("kong-log: post rejected: no or wrong Authorization header (not from this rollout's http-log plugin)", "remote", req.RemoteAddr, "rejected", n)
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="canaryctl kong-log"`)
		http.Error(w, "http-log receiver: this post lacks the rollout's Authorization header", http.StatusUnauthorized)
		return
	}
	var wk *logWorker
	select {
	case wk = <-r.slots:
	default:
		t := time.NewTimer(r.cfg.Wait)
		select {
		case wk = <-r.slots:
			t.Stop()
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return
		}
	}
	if wk == nil {
		r.shed(w, req, now)
		return
	}
	defer func() { r.slots <- wk }()
	body, err := readBody(req.Body, wk.buf[:0], r.cfg.MaxBody, req.ContentLength)
	if cap(body) <= r.cfg.MaxBody {
		wk.buf = body[:0]
	}
	if errors.Is(err, errTooLarge) {
		r.log.Warn("kong-log: post too large", "limit", r.cfg.MaxBody)
		http.Error(w, "http-log receiver: body too large; lower the plugin's queue.max_batch_size", http.StatusRequestEntityTooLarge)
		return
	}
	if err != nil {
		return // the sender went away; it retries the batch
	}
	wk.recs, wk.keys, wk.spans = wk.recs[:0], wk.keys[:0], wk.spans[:0]
	wk.n = entryCounts{}
	if err := r.decode(body, wk, r.started.Add(-staleGrace).UnixMicro()); err != nil {
		r.log.Warn("kong-log: bad http-log post", "err", err)
		http.Error(w, "http-log receiver: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.store(wk, now)
	w.WriteHeader(http.StatusOK)
}

// headerBytes views s as bytes without copying (for the constant-time compare, read only).
func headerBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

var errTooLarge = errors.New("body too large")

// readBody reads the body into buf (grown as needed, at most limit bytes).
func readBody(rd io.Reader, buf []byte, limit int, hint int64) ([]byte, error) {
	if hint > int64(limit) {
		return buf, errTooLarge
	}
	if hint > 0 && int(hint) > cap(buf) {
		buf = make([]byte, 0, int(hint)+512)
	}
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= limit {
				// one more byte tells a body of exactly limit bytes from a larger one
				var one [1]byte
				if n, _ := rd.Read(one[:]); n > 0 {
					return buf, errTooLarge
				}
				return buf, nil
			}
			buf = append(buf, 0)[:len(buf)]
		}
		end := min(cap(buf), limit)
		n, err := rd.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// shed drops an authenticated post because no slot freed up within Wait: its entries are counted
// (streamed through a small buffer, never held) and the post is answered 200, so Kong does not
// resend what was already counted as lost.
func (r *LogReceiver) shed(w http.ResponseWriter, req *http.Request, now time.Time) {
	n, err := countEntries(io.LimitReader(req.Body, int64(r.cfg.MaxBody)))
	if err != nil && n == 0 {
		n = 1
	}
	total := r.drop(now.Unix(), n)
	r.log.Warn("kong-log: receiver overloaded, entries dropped (the windows they belong to are not judged)", "dropped", n, "droppedTotal", total)
	w.WriteHeader(http.StatusOK)
}

// store appends a decoded post's records to the ring under the lock; overwritten records are
// dropped entries of the windows they belonged to.
func (r *LogReceiver) store(wk *logWorker, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	locked := false
	lockLoss := func() {
		if !locked {
			locked = true
			r.lossMu.Lock() // lock order: mu, then lossMu
		}
	}
	defer func() {
		if locked {
			r.lossMu.Unlock()
		}
	}()
	if r.full || wk.n.stale > 0 {
		lockLoss()
	}
	for _, rec := range wk.recs {
		if rec.client != 0 {
			sp := wk.spans[rec.client-1]
			rec.client = r.clients.ID(wk.keys[sp.off : sp.off+sp.n])
		}
		if r.full {
			r.bucketLocked(r.ring[r.next].t/1e6).dropped++
			r.stats.DroppedEntries++
		}
		r.ring[r.next] = rec
		r.next++
		if r.next == len(r.ring) {
			r.next, r.full = 0, true
			lockLoss() // wrapped during this post

		}
	}
	r.stats.Received += wk.n.received
	r.stats.Unattributed += wk.n.unattributed
	r.stats.Invalid += wk.n.invalid
	r.stats.StaleEntries += wk.n.stale
	if wk.n.stale > 0 {
		r.bucketLocked(now.Unix()).stale += wk.n.stale
	}
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

func (r *LogReceiver) reject(now time.Time) int {
	r.lossMu.Lock()
	r.bucketLocked(now.Unix()).rejected++
	r.lossMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.RejectedPosts++
	return r.stats.RejectedPosts
}

func (r *LogReceiver) drop(sec int64, n int) int {
	r.lossMu.Lock()
	r.bucketLocked(sec).dropped += n
	r.lossMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.DroppedEntries += n
	return r.stats.DroppedEntries
}

// bucketLocked returns the loss bucket of second sec (reset if it held an older second).
func (r *LogReceiver) bucketLocked(sec int64) *lossBucket {
	b := &r.loss[uint64(sec)%lossSeconds]
	if b.sec != sec {
		*b = lossBucket{sec: sec}
	}
	return b
}

// Ingest returns what was lost or refused for the window [since, until): entries dropped or
// evicted, posts rejected and stale entries, counted by the second they arrived (an evicted entry
// by the second it finished), including those that arrived up to Lag after the window.
func (r *LogReceiver) Ingest(ctx context.Context, since, until time.Time) (providers.Ingest, error) {
	if err := ctx.Err(); err != nil {
		return providers.Ingest{}, err
	}
	from, to := since.Unix(), until.Add(r.cfg.Lag).Unix()
	if to-from >= lossSeconds {
		from = to - lossSeconds + 1
	}
	var in providers.Ingest
	r.lossMu.Lock()
	defer r.lossMu.Unlock()
	for s := from; s <= to; s++ {
		b := &r.loss[uint64(s)%lossSeconds]
		if b.sec != s {
			continue
		}
		in.DroppedEntries += b.dropped
		in.RejectedPosts += b.rejected
		in.StaleEntries += b.stale
	}
	return in, nil
}

// WaitReceived blocks until at least n entries have been received in total, or ctx ends.
func (r *LogReceiver) WaitReceived(ctx context.Context, n int) error {
	for {
		r.mu.Lock()
		got := r.stats.Received
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		ch := r.changed
		r.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kong-log: wait for %d entries (have %d): %w", n, got, ctx.Err())
		case <-ch:
		}
	}
}

// Requests returns the logged requests that finished in [since, until), in time order. Latency is
// the upstream's (latencies.proxy), so Kong's own time does not blur the comparison.
func (r *LogReceiver) Requests(ctx context.Context, since, until time.Time) ([]providers.Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lo, hi := since.UnixMicro(), until.UnixMicro()
	if since.IsZero() {
		lo = 0
	}
	r.mu.Lock()
	// loaded under mu, after the store of every record in the ring: each record's id came from a
	// cohort map published after the targets that hold it
	targets := *r.targets.Load()
	routes := r.routes.Names()
	clients := r.clients.Names()
	n := r.next
	if r.full {
		n = len(r.ring)
	}
	var out []providers.Request
	for i := 0; i < n; i++ {
		q := r.ring[i]
		if q.t >= lo && q.t < hi {
			tg := targets[q.target-1]
			out = append(out, providers.Request{
				Time: time.UnixMicro(q.t), Cohort: cohortNames[tg.cohort], Status: int(q.status),
				Latency: time.Duration(q.lat) * time.Microsecond, Instance: tg.addr,
				Route: intern.Name(routes, q.route), Path: intern.Name(routes, q.path), Client: intern.Name(clients, q.client),
			})
		}
	}
	r.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// Stats returns how many entries were received and how many could not be attributed to a cohort.
func (r *LogReceiver) Stats() (received, unattributed int) {
	s := r.Counters()
	return s.Received, s.Unattributed
}

// Counters returns the receiver's counters since it started.
func (r *LogReceiver) Counters() LogStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// key formats ip:port as net.JoinHostPort does (IPv6 in brackets) into buf for the cohort lookup,
// without allocating.
func key(buf []byte, ip string, port int64) []byte {
	buf = buf[:0]
	if strings.IndexByte(ip, ':') >= 0 && !strings.HasPrefix(ip, "[") {
		buf = append(append(append(buf, '['), ip...), ']')
	} else {
		buf = append(buf, ip...)
	}
	buf = append(buf, ':')
	return strconv.AppendInt(buf, port, 10)
}
