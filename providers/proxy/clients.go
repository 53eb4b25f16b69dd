package proxy

import (
	"net"
	"net/http"
)

// maxClients bounds the client keys a proxy interns (p.clients, internal/intern); later clients
// are recorded as unknown. A million keys (IPs or sticky keys) cost tens of MB at most.
const maxClients = 1 << 20

// h1Client names the client of an h1 request (see clientOf): r is the request built for rules or
// hashing (nil without); without it, the trusted last X-Forwarded-For hop or the connection's IP,
// interned once per connection, so the hot path allocates nothing.
func (p *Proxy) h1Client(c *h1Conn, h *h1Head, r *http.Request) uint32 {
	if r != nil {
		return p.clientOf(r, c.ip)
	}
	if p.trustForwarded && len(h.xff) > 0 {
		return p.clients.ID(lastHop(h.xff[len(h.xff)-1]))
	}
	if c.client == 0 {
		c.client = p.clients.IDString(c.ip)
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
				return p.clients.IDString(key)
			}
		}
		if p.trustForwarded {
			if v := r.Header["X-Forwarded-For"]; len(v) > 0 {
				return p.clients.IDString(lastHop(v[len(v)-1]))
			}
		}
		if ip == "" {
			// the host part of RemoteAddr, a substring: no allocation for a known client
			if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				ip = host
			}
		}
	}
	return p.clients.IDString(ip)
}

// lastHop returns the last entry of an X-Forwarded-For value, the hop the trusted proxy in front
// appended (earlier entries are whatever the client sent), without the optional whitespace around
// it (RFC 9110's OWS: spaces and tabs).
func lastHop[T ~string | ~[]byte](v T) T {
	i := len(v)
	for i > 0 && v[i-1] != ',' {
		i--
	}
	v = v[i:]
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}
