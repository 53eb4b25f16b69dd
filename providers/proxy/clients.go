package proxy

import (
	"bytes"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// maxClients bounds the client keys a proxy interns; later clients are recorded as unknown. A
// million keys (IPs or sticky keys) cost tens of MB at most.
const maxClients = 1 << 20

// clientTable interns client keys (Request.Client): id 0 is unknown, id i names names[i-1]. Ids are
// never reused, so an id in a sample names the same client whatever comes after it. Lookups of a
// known key take a read lock and allocate nothing; a new key is added under the write lock.
type clientTable struct {
	mu    sync.RWMutex
	ids   map[string]uint32
	names atomic.Pointer[[]string] // append-only snapshot for readers of the ring
}

// id returns the id of key (as bytes or a string, without allocating when it is known).
func (ct *clientTable) id(key []byte) uint32 {
	if len(key) == 0 {
		return 0
	}
	ct.mu.RLock()
	id, ok := ct.ids[string(key)]
	ct.mu.RUnlock()
	if ok {
		return id
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if id, ok := ct.ids[string(key)]; ok {
		return id
	}
	var names []string
	if cur := ct.names.Load(); cur != nil {
		names = *cur
	}
	if len(names) >= maxClients {
		return 0
	}
	if ct.ids == nil {
		ct.ids = map[string]uint32{}
	}
	k := string(key)
	names = append(names, k)
	ct.names.Store(&names)
	id = uint32(len(names))
	ct.ids[k] = id
	return id
}

func (ct *clientTable) idString(key string) uint32 {
	if key == "" {
		return 0
	}
	ct.mu.RLock()
	id, ok := ct.ids[key]
	ct.mu.RUnlock()
	if ok {
		return id
	}
	return ct.id([]byte(key))
}

// snapshot returns the names of every id handed out so far.
func (ct *clientTable) snapshot() []string {
	if cur := ct.names.Load(); cur != nil {
		return *cur
	}
	return nil
}

// h1Client names the client of an h1 request (see clientOf): r is the request built for rules or
// hashing (nil without); without it, the trusted last X-Forwarded-For hop or the connection's IP,
// interned once per connection, so the hot path allocates nothing.
func (p *Proxy) h1Client(c *h1Conn, h *h1Head, r *http.Request) uint32 {
	if r != nil {
		return p.clientOf(r, c.ip)
	}
	if p.trustForwarded && len(h.xff) > 0 {
		last := h.xff[len(h.xff)-1]
		if i := bytes.LastIndexByte(last, ','); i >= 0 {
			last = last[i+1:]
		}
		return p.clients.id(bytes.TrimSpace(last))
	}
	if c.client == 0 {
		c.client = p.clients.idString(c.ip)
	}
	return c.client
}

// clientOf names the client of a request for the request log: the sticky hash key when the proxy
// hashes on one (the unit it keeps on one cohort), else the last X-Forwarded-For hop when that is
// trusted, else the connection's IP (ip, as the h1 loop keeps it per connection; "" to take it
// from r). r may be nil (the h1 loop without rules or hashing); then only ip counts.
func (p *Proxy) clientOf(r *http.Request, ip string) uint32 {
	if r != nil {
		ri := reqInfo{r: r, jwt: p.jwt, geo: p.geo, trustXFF: p.trustForwarded}
		if p.hashKind != hashNone {
			if key, ok := p.stickyKey(&ri); ok {
				return p.clients.idString(key)
			}
		}
		if p.trustForwarded {
			if v := r.Header["X-Forwarded-For"]; len(v) > 0 {
				last := v[len(v)-1]
				if i := strings.LastIndexByte(last, ','); i >= 0 {
					last = last[i+1:]
				}
				return p.clients.idString(strings.TrimSpace(last))
			}
		}
		if ip == "" {
			// the host part of RemoteAddr, a substring: no allocation for a known client
			if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				ip = host
			}
		}
	}
	return p.clients.idString(ip)
}
