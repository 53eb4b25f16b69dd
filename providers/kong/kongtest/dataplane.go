package kongtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// canaryUpstream is where the Enterprise canary plugin (developer.konghq.com/plugins/canary) of the
// service sends the request, if it chooses it: upstream_host/upstream_port/upstream_uri instead of
// the service's.
func canaryUpstream(st *store, svc map[string]any, r *http.Request, host string, port int, path string) (string, int, string) {
	for _, p := range st.children("plugins", "service", svc["id"].(string)) {
		if p["name"] != "canary" || p["enabled"] != true {
			continue
		}
		c := p["config"].(map[string]any)
		if canaryChosen(c, r) {
			if h, ok := c["upstream_host"].(string); ok {
				host = h
			}
			if pt, ok := c["upstream_port"].(int64); ok {
				port = int(pt)
			}
			if u, ok := c["upstream_uri"].(string); ok {
				path = u
			}
		}
	}
	return host, port, path
}

// logQueuesLocked are the queues of the enabled http-log plugins that log the service's requests.
func (s *Server) logQueuesLocked(st *store, svc map[string]any) []*logQueue {
	var logs []*logQueue
	for _, p := range st.list["plugins"] {
		if p["name"] != "http-log" || p["enabled"] != true {
			continue
		}
		if ref, ok := p["service"].(map[string]any); ok && ref["id"] != svc["id"] {
			continue
		}
		logs = append(logs, s.queueLocked(p))
	}
	return logs
}

// logTries are the balancer's tries as a log entry lists them.
func logTries(tries []map[string]any) []Try {
	lt := make([]Try, len(tries))
	for i, t := range tries {
		lt[i] = Try{IP: t["ip"].(string), Port: t["port"].(int), Start: time.UnixMilli(t["balancer_start"].(int64)), Failed: t["state"] == "failed"}
	}
	return lt
}

// serveProxy is the data plane: route -> service -> (canary plugin) -> upstream target, then the
// log phase (http-log).
func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	s.mu.Lock()
	st := s.ws["default"]
	// the router's routes and services (router.go), which may be older than the database
	route, svc := matchRoute(s.routerLocked(), r.URL.Path)
	if svc == nil {
		s.mu.Unlock()
		// kong/runloop/handler.lua: no route matched
		writeJSON(w, msg(http.StatusNotFound, "no Route matched with those values"))
		return
	}
	host, _ := svc["host"].(string)
	port := int(svc["port"].(int64))
	path, _ := svc["path"].(string)
	uri := r.URL.Path
	if route["strip_path"] == true {
		uri = stripPrefix(route, uri)
	}
	host, port, path = canaryUpstream(st, svc, r, host, port, path)
	upstreamURI := joinPath(path, uri)
	if r.URL.RawQuery != "" {
		upstreamURI += "?" + r.URL.RawQuery
	}
	retries := int(svc["retries"].(int64))
	logs := s.logQueuesLocked(st, svc)
	up := st.find("upstreams", host)
	svcCopy, routeCopy := cloneValue(svc), cloneValue(route)
	s.mu.Unlock()

	body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	var tries []map[string]any
	var resp *http.Response
	var upstreamStart, upstreamEnd time.Time
	exclude := map[string]bool{}
	status := 0
	var respBody []byte
	for attempt := 0; attempt <= retries; attempt++ {
		addr := ""
		if up != nil {
			s.mu.Lock()
			addr = s.pick(st, up, r, w, exclude)
			s.mu.Unlock()
			if addr == "" {
				if len(tries) == 0 {
					status = http.StatusServiceUnavailable
					respBody = mustJSON(map[string]any{"message": "failure to get a peer from the ring-balancer"})
				}
				break
			}
		} else {
			addr = net.JoinHostPort(host, strconv.Itoa(port))
		}
		ip, portStr, _ := net.SplitHostPort(addr)
		if net.ParseIP(ip) == nil {
			ips, err := hostsOnly.LookupHost(r.Context(), ip)
			if err != nil || len(ips) == 0 {
				// kong/runloop/balancer/init.lua: a host that is no upstream is resolved by DNS
				status = http.StatusServiceUnavailable
				respBody = mustJSON(map[string]any{"message": "name resolution failed"})
				break
			}
			ip = ips[0]
		}
		pn, _ := strconv.Atoi(portStr)
		try := map[string]any{"balancer_start": time.Now().UnixMilli(), "balancer_latency": 0, "ip": ip, "port": pn}
		tries = append(tries, try)
		out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+net.JoinHostPort(ip, portStr)+upstreamURI, bytes.NewReader(body))
		if err != nil {
			status = http.StatusBadGateway
			break
		}
		out.Header = r.Header.Clone()
		out.Host = addr
		out.Header.Set("X-Forwarded-For", clientIP(r))
		upstreamStart = time.Now()
		resp, err = s.client.Do(out)
		upstreamEnd = time.Now()
		if err != nil {
			// kong/runloop/balancer: a failed connection is retried on the next target
			try["state"] = "failed"
			try["code"] = 502
			exclude[addr] = true
			status = http.StatusBadGateway
			respBody = mustJSON(map[string]any{"message": "An invalid response was received from the upstream server"})
			if r.Context().Err() != nil {
				break
			}
			continue
		}
		respBody, _ = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		_ = resp.Body.Close()
		status = resp.StatusCode
		s.mu.Lock()
		s.hits[addr]++
		s.mu.Unlock()
		break
	}
	if resp != nil {
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.Header().Set("X-Kong-Upstream-Latency", strconv.FormatInt(upstreamEnd.Sub(upstreamStart).Milliseconds(), 10))
	} else {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.Header().Set("Via", "1.1 kong/3.9.0")
	w.WriteHeader(status)
	_, _ = w.Write(respBody)
	finished := time.Now()
	if len(logs) == 0 {
		return
	}
	proxy := time.Duration(-1)
	if resp != nil {
		proxy = upstreamEnd.Sub(upstreamStart)
	}
	lt := logTries(tries)
	entry := LogEntry(LogInput{
		Method: r.Method, Host: r.Host, URI: r.URL.RequestURI(), Query: flatQuery(r), RequestHeaders: r.Header,
		RequestSize: len(body), UpstreamURI: upstreamURI, Status: status, ResponseHeaders: w.Header(),
		ResponseSize: len(respBody), Started: started, Request: finished.Sub(started), Proxy: proxy,
		Tries: lt, ClientIP: clientIP(r), Service: svcCopy.(map[string]any), Route: routeCopy.(map[string]any),
		RequestID: r.Header.Get("X-Request-Id"),
	})
	raw := mustJSON(entry)
	for _, q := range logs {
		q.add(raw)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func flatHeaders(h http.Header) map[string]any {
	m := map[string]any{}
	for k, v := range h {
		m[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	return m
}

func flatQuery(r *http.Request) map[string]any {
	m := map[string]any{}
	for k, v := range r.URL.Query() {
		m[k] = strings.Join(v, ",")
	}
	return m
}

func clientIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// matchRoute picks the route with the longest matching path prefix (kong/router: paths are prefixes,
// longer ones win); a route without paths matches everything.
func matchRoute(st *store, p string) (route, svc map[string]any) {
	best := -1
	for _, r := range st.list["routes"] {
		paths := strs(r["paths"])
		if len(paths) == 0 && best < 0 {
			route, best = r, 0
			continue
		}
		for _, x := range paths {
			if strings.HasPrefix(p, x) && len(x) > best {
				route, best = r, len(x)
			}
		}
	}
	if route == nil {
		return nil, nil
	}
	ref, ok := route["service"].(map[string]any)
	if !ok {
		return nil, nil
	}
	svc = st.find("services", fmt.Sprint(ref["id"]))
	if svc == nil {
		return nil, nil
	}
	return route, svc
}

func stripPrefix(route map[string]any, p string) string {
	best := ""
	for _, x := range strs(route["paths"]) {
		if strings.HasPrefix(p, x) && len(x) > len(best) {
			best = x
		}
	}
	rest := strings.TrimPrefix(p, best)
	if !strings.HasPrefix(rest, "/") {
		rest = "/" + rest
	}
	return rest
}

func joinPath(base, p string) string {
	if base == "" || base == "/" {
		return p
	}
	if p == "/" {
		return base
	}
	return strings.TrimSuffix(base, "/") + p
}

func canaryChosen(c map[string]any, r *http.Request) bool {
	pct, _ := c["percentage"].(float64)
	switch c["hash"] {
	case "none":
		return rand.Float64()*100 < pct
	case "allow", "deny":
		return false // consumer groups are not modelled
	case "header":
		key := r.Header.Get(fmt.Sprint(c["hash_header"]))
		if key == "" {
			return rand.Float64()*100 < pct
		}
		return bucket(key) < pct
	case "ip":
		return bucket(clientIP(r)) < pct
	default: // consumer: kongtest has no auth plugins; the X-Consumer-Username header stands in
		key := r.Header.Get("X-Consumer-Username")
		if key == "" {
			key = clientIP(r)
		}
		return bucket(key) < pct
	}
}

func bucket(key string) float64 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return float64(h.Sum32()%10000) / 100
}

// pick chooses a target of up: consistent hashing when hash_on is set (a stable position on the
// weighted ring), otherwise smooth weighted round-robin, which spreads picks in exact proportion to
// the weights like Kong's round-robin balancer wheel (kong/runloop/balancer/round_robin.lua).
// Targets with weight 0 get no traffic; "exclude" holds targets that already failed this request.
func (s *Server) pick(st *store, up map[string]any, r *http.Request, w http.ResponseWriter, exclude map[string]bool) string {
	id := up["id"].(string)
	var ts []map[string]any
	total := int64(0)
	for _, t := range s.balancerTargetsLocked(id) {
		wt := t["weight"].(int64)
		if wt <= 0 || exclude[t["target"].(string)] {
			continue
		}
		ts = append(ts, t)
		total += wt
	}
	if len(ts) == 0 {
		return ""
	}
	if key := hashKey(up, r, w); key != "" {
		sort.Slice(ts, func(i, j int) bool { return ts[i]["target"].(string) < ts[j]["target"].(string) })
		h := fnv.New64a()
		_, _ = h.Write([]byte(key))
		pos := int64(h.Sum64() % uint64(total))
		for _, t := range ts {
			pos -= t["weight"].(int64)
			if pos < 0 {
				return t["target"].(string)
			}
		}
	}
	cur := s.wrr[id]
	if cur == nil {
		cur = map[string]int{}
		s.wrr[id] = cur
	}
	var best map[string]any
	for _, t := range ts {
		tid := t["id"].(string)
		cur[tid] += int(t["weight"].(int64))
		if best == nil || cur[tid] > cur[best["id"].(string)] {
			best = t
		}
	}
	cur[best["id"].(string)] -= int(total)
	return best["target"].(string)
}

// hashKey returns the consistent-hashing key of the request for the upstream's hash_on
// (kong/runloop/balancer/init.lua get_value_to_hash), or "" for none.
func hashKey(up map[string]any, r *http.Request, w http.ResponseWriter) string {
	switch up["hash_on"] {
	case "ip":
		return clientIP(r)
	case "header":
		return r.Header.Get(fmt.Sprint(up["hash_on_header"]))
	case "consumer":
		return r.Header.Get("X-Consumer-Username")
	case "path":
		return r.URL.Path
	case "query_arg":
		return r.URL.Query().Get(fmt.Sprint(up["hash_on_query_arg"]))
	case "cookie":
		name := fmt.Sprint(up["hash_on_cookie"])
		if c, err := r.Cookie(name); err == nil {
			return c.Value
		}
		// Kong generates the cookie when it is missing and sends it to the client.
		v := newID()
		path, _ := up["hash_on_cookie_path"].(string)
		http.SetCookie(w, &http.Cookie{Name: name, Value: v, Path: path})
		return v
	}
	return ""
}

// ---- http-log queue ----

// logQueue batches serialized entries like kong/tools/queue.lua: a batch is sent when it holds
// max_batch_size entries or max_coalescing_delay seconds after its first entry; with
// max_batch_size > 1 the body is a JSON array, otherwise the single entry.
type logQueue struct {
	endpoint    string
	method      string
	contentType string
	headers     map[string]string
	batch       int
	delay       time.Duration
	retryDelay  time.Duration
	maxEntries  int
	client      *http.Client

	mu      sync.Mutex
	pending [][]byte
	kick    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
}

func (s *Server) queueLocked(p map[string]any) *logQueue {
	id := p["id"].(string)
	if q := s.queues[id]; q != nil {
		return q
	}
	c := p["config"].(map[string]any)
	qc, _ := c["queue"].(map[string]any)
	if qc == nil {
		// Kong 3.0-3.2 (kong/tools/batch_queue.lua): queue_size entries per batch, flushed
		// flush_timeout seconds after the first
		qc = map[string]any{"max_batch_size": c["queue_size"], "max_coalescing_delay": c["flush_timeout"],
			"initial_retry_delay": 0.01, "max_entries": int64(10000)}
	}
	q := &logQueue{
		endpoint:    c["http_endpoint"].(string),
		method:      c["method"].(string),
		contentType: c["content_type"].(string),
		headers:     map[string]string{},
		batch:       int(qc["max_batch_size"].(int64)),
		delay:       time.Duration(qc["max_coalescing_delay"].(float64) * float64(time.Second)),
		retryDelay:  time.Duration(qc["initial_retry_delay"].(float64) * float64(time.Second)),
		maxEntries:  int(qc["max_entries"].(int64)),
		client:      s.client,
		kick:        make(chan struct{}, 1),
		done:        make(chan struct{}),
	}
	if h, ok := c["headers"].(map[string]any); ok {
		for k, v := range h {
			q.headers[k] = fmt.Sprint(v)
		}
	}
	q.wg.Add(1)
	go q.run()
	s.queues[id] = q
	return q
}

func (q *logQueue) add(entry []byte) {
	q.mu.Lock()
	if len(q.pending) < q.maxEntries {
		q.pending = append(q.pending, entry)
	}
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func (q *logQueue) run() {
	defer q.wg.Done()
	for {
		select {
		case <-q.kick:
		case <-q.done:
			q.flush(true)
			return
		}
		// coalesce: wait up to delay for the batch to fill
		deadline := time.NewTimer(q.delay)
	wait:
		for {
			q.mu.Lock()
			n := len(q.pending)
			q.mu.Unlock()
			if n >= q.batch {
				break
			}
			select {
			case <-deadline.C:
				break wait
			case <-q.kick:
			case <-q.done:
				deadline.Stop()
				q.flush(true)
				return
			}
		}
		deadline.Stop()
		q.flush(false)
	}
}

// flush sends full batches (and, when all is set or the delay expired, the partial one).
func (q *logQueue) flush(all bool) {
	for {
		q.mu.Lock()
		n := len(q.pending)
		if n == 0 {
			q.mu.Unlock()
			return
		}
		if n > q.batch {
			n = q.batch
		}
		entries := q.pending[:n]
		q.pending = q.pending[n:]
		q.mu.Unlock()
		var body []byte
		if q.batch == 1 {
			body = entries[0]
		} else {
			body = append([]byte("["), bytes.Join(entries, []byte(","))...)
			body = append(body, ']')
		}
		q.send(body)
		_ = all
	}
}

func (q *logQueue) send(body []byte) {
	delay := q.retryDelay
	for attempt := 0; attempt < 4; attempt++ {
		req, err := http.NewRequest(q.method, q.endpoint, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", q.contentType)
		for k, v := range q.headers {
			req.Header.Set(k, v)
		}
		if auth := logAuthorization(q.endpoint); auth != "" {
			req.Header.Set("Authorization", auth) // the endpoint's user info wins over config.headers
		}
		resp, err := q.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode < 300 { // kong/plugins/http-log/handler.lua: anything else is retried
				return
			}
		}
		time.Sleep(delay)
		delay *= 2
	}
}

func (q *logQueue) stop() {
	select {
	case <-q.done:
	default:
		close(q.done)
	}
	q.wg.Wait()
}
