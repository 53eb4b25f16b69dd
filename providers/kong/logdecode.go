package kong

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"unsafe"
)

// errNotEntries: an http-log body is a JSON object (queue.max_batch_size 1) or an array of them.
var errNotEntries = errors.New("the body is neither an http-log entry (a JSON object) nor an array of entries")

// decode reads the entries of an http-log body (one entry, or a JSON array of them as Kong's queue
// sends) into wk.recs, counting what it cannot use in wk.n. Only started_at, latencies.request,
// latencies.proxy, response.status, the last of tries (ip, port), route.name, route.id,
// request.method, request.uri, consumer.id and client_ip (the request's client: the consumer
// when one is authenticated, else the address; or the sticky hash header) are read; everything
// else (service, other headers...) is skipped without being decoded (see scanner). The body is read in
// place: no copy, no allocation per entry. A malformed body is an error and nothing of it is kept.
// Entries that finished before staleBefore (µs since the epoch) are counted as stale, not kept.
func (r *LogReceiver) decode(body []byte, wk *logWorker, staleBefore int64) error {
	d := entryDecoder{s: scanner{b: body}, cohorts: *r.cohorts.Load(), wk: wk, staleBefore: staleBefore, routes: &r.routes,
		clientHeader: r.cfg.ClientHeader, clientCookie: r.cfg.ClientCookie, clientIP: r.cfg.ClientIP}
	if d.clientCookie != "" {
		d.clientHeader = "cookie"
	}
	s := &d.s
	ok := true
	switch s.peek() {
	case '[':
		var more bool
		more, ok = s.beginArray()
		for ok && more {
			if ok = d.entry(); ok {
				more, ok = s.endMember(']')
			}
		}
	case '{':
		ok = d.entry()
	default:
		return errNotEntries
	}
	if !ok || s.peek() != 0 {
		wk.recs, wk.keys, wk.spans, wk.n = wk.recs[:0], wk.keys[:0], wk.spans[:0], entryCounts{}
		return fmt.Errorf("%w at byte %d", errSyntax, s.i)
	}
	return nil
}

type entryDecoder struct {
	s           scanner
	cohorts     map[string]uint16 // ip:port -> target id
	wk          *logWorker
	staleBefore int64
	kb          [96]byte
	// routes interns routes and path templates (nil: not recorded); rb and pb are its scratch
	routes *routeNames
	rb, pb [512]byte
	// the client key's source (LogConfig)
	clientHeader, clientCookie string
	clientIP                   bool
}

// numOrSkip reads a number, or skips a value of another kind (isNum false).
func (d *entryDecoder) numOrSkip() (v float64, isNum, ok bool) {
	switch c := d.s.peek(); {
	case c == '-' || (c >= '0' && c <= '9'):
		v, ok = d.s.num()
		return v, ok, ok
	default:
		return 0, false, d.s.skip()
	}
}

// entryFields are the members of one http-log entry the receiver reads.
type entryFields struct {
	started, request, proxy, status float64
	hasStart, hasProxy, hasTry      bool
	rt                              entryRoute // analysis.routes (logroutes.go)
	ip, clientIP, consumer, sticky  []byte
	port                            float64
}

// entry reads one entry into a record; false on a syntax error.
func (d *entryDecoder) entry() bool {
	s := &d.s
	n := &d.wk.n
	n.received++
	if s.peek() != '{' {
		n.invalid++
		return s.skip()
	}
	f := entryFields{proxy: -1, port: -1}
	more, ok := s.beginObject()
	for ok && more {
		var k []byte
		if k, ok = s.key(); !ok {
			break
		}
		if ok = d.field(k, &f); ok {
			more, ok = s.endMember('}')
		}
	}
	if !ok {
		return false
	}
	if d.record(f.started, f.request, f.proxy, f.status, f.hasStart, f.hasProxy, f.hasTry, f.ip, f.port, d.clientKey(&f)) && d.routes != nil {
		rec := &d.wk.recs[len(d.wk.recs)-1]
		rec.route, rec.path = d.routes.routeIDs(f.rt, d.rb[:0], d.pb[:0])
	}
	return true
}

// field reads the value of the entry's member k into f, or skips it; false on a syntax error.
func (d *entryDecoder) field(k []byte, f *entryFields) (ok bool) {
	s := &d.s
	switch string(k) {
	case "started_at":
		f.started, f.hasStart, ok = d.numOrSkip()
	case "latencies":
		ok = d.members(func(k []byte) (ok bool) {
			switch string(k) {
			case "request":
				f.request, _, ok = d.numOrSkip()
			case "proxy":
				f.proxy, f.hasProxy, ok = d.numOrSkip()
			default:
				ok = s.skip()
			}
			return ok
		})
	case "response":
		ok = d.members(func(k []byte) (ok bool) {
			if string(k) == "status" {
				f.status, _, ok = d.numOrSkip()
				return ok
			}
			return s.skip()
		})
	case "tries":
		ok = d.tries(&f.ip, &f.port, &f.hasTry)
	case "route":
		ok = d.strings(func(k, v []byte) {
			switch string(k) {
			case "name":
				f.rt.name = v
			case "id":
				f.rt.id = v
			}
		})
	case "request":
		ok = d.request(f)
	case "client_ip":
		if s.peek() == '"' {
			f.clientIP, ok = s.str()
		} else {
			ok = s.skip()
		}
	case "consumer":
		ok = d.members(func(k []byte) (ok bool) {
			if string(k) == "id" && s.peek() == '"' {
				f.consumer, ok = s.str()
				return ok
			}
			return s.skip()
		})
	default:
		ok = s.skip()
	}
	return ok
}

// request reads the entry's request object: method and uri (analysis.routes) and, with a sticky
// header configured, that header's value.
func (d *entryDecoder) request(f *entryFields) bool {
	s := &d.s
	return d.members(func(k []byte) (ok bool) {
		switch string(k) {
		case "headers":
			if d.clientHeader == "" {
				return s.skip()
			}
			return d.members(func(h []byte) (ok bool) {
				if string(h) == d.clientHeader && s.peek() == '"' {
					f.sticky, ok = s.str()
					return ok
				}
				return s.skip()
			})
		case "method", "uri":
			if s.peek() != '"' {
				return s.skip()
			}
			v, ok := s.str()
			if string(k) == "method" {
				f.rt.method = v
			} else {
				f.rt.uri = v
			}
			return ok
		}
		return s.skip()
	})
}

// clientKey is the entry's client: the sticky hash header's (or cookie's) value, else the
// consumer, else (or when hashing on the IP) client_ip.
func (d *entryDecoder) clientKey(f *entryFields) []byte {
	client := f.consumer
	if len(client) == 0 || d.clientIP {
		client = f.clientIP
	}
	sticky := f.sticky
	if d.clientCookie != "" {
		sticky = cookieValue(sticky, d.clientCookie)
	}
	if len(sticky) > 0 {
		client = sticky
	}
	return client
}

// strings walks an object calling member with each key whose value is a string (its raw
// contents); values of other kinds are skipped. Anything but an object is skipped.
func (d *entryDecoder) strings(member func(k, v []byte)) bool {
	s := &d.s
	return d.members(func(k []byte) bool {
		if s.peek() != '"' {
			return s.skip()
		}
		v, ok := s.str()
		if ok {
			member(k, v)
		}
		return ok
	})
}

// members walks an object calling member at each key (which consumes the value), or skips a value
// that is not an object.
func (d *entryDecoder) members(member func(k []byte) bool) bool {
	s := &d.s
	if s.peek() != '{' {
		return s.skip()
	}
	more, ok := s.beginObject()
	for ok && more {
		var k []byte
		if k, ok = s.key(); ok {
			if ok = member(k); ok {
				more, ok = s.endMember('}')
			}
		}
	}
	return ok
}

// tries reads the ip and port of the last try.
func (d *entryDecoder) tries(ip *[]byte, port *float64, hasTry *bool) bool {
	s := &d.s
	if s.peek() != '[' {
		return s.skip()
	}
	more, ok := s.beginArray()
	for ok && more {
		*hasTry, *ip, *port = true, nil, -1
		ok = d.members(func(k []byte) (ok bool) {
			switch string(k) {
			case "ip":
				if s.peek() == '"' {
					*ip, ok = s.str()
					return ok
				}
			case "port":
				*port, _, ok = d.numOrSkip()
				return ok
			}
			return s.skip()
		})
		if ok {
			more, ok = s.endMember(']')
		}
	}
	return ok
}

// record turns an entry's fields into a record, or counts why it cannot (false).
func (d *entryDecoder) record(started, request, proxy, statusF float64, hasStart, hasProxy, hasTry bool, ip []byte, portF float64, client []byte) bool {
	n := &d.wk.n
	status := int(statusF)
	if !hasStart || started <= 0 || started > 1e14 || status < 0 || status > 999 || request < 0 || request > 1e9 {
		n.invalid++
		return false
	}
	// the request finished at started_at + latencies.request (ms, possibly fractional)
	t := int64(math.Round((started + request) * 1000))
	if t < d.staleBefore {
		n.stale++
		return false
	}
	if !hasTry {
		n.unattributed++ // Kong answered without an upstream (no route, no peer)
		return false
	}
	port := int64(portF)
	id, ok := d.cohorts[string(key(d.kb[:0], unsafe.String(unsafe.SliceData(ip), len(ip)), port))]
	if !ok {
		// a non-canonical spelling of an address (e.g. IPv6): canonicalize, allocating only here
		if p := net.ParseIP(string(ip)); p != nil {
			id, ok = d.cohorts[string(key(d.kb[:0], p.String(), port))]
		}
		if !ok {
			n.unattributed++
			return false
		}
	}
	lat := request
	if hasProxy && proxy >= 0 {
		lat = proxy // the upstream's time, without Kong's own
	}
	if status == 0 {
		status = http.StatusBadGateway // tried an upstream but sent no status: none answered
	}
	rec := record{t: t, lat: uint32(min(lat*1000, math.MaxUint32)), status: uint16(status), target: id}
	if wk := d.wk; len(client) > 0 && len(client) <= 256 {
		wk.spans = append(wk.spans, keySpan{off: uint32(len(wk.keys)), n: uint32(len(client))})
		wk.keys = append(wk.keys, client...)
		rec.client = uint32(len(wk.spans))
	}
	d.wk.recs = append(d.wk.recs, rec)
	return true
}

// countEntries counts the entries of an http-log body streamed from rd through a small buffer,
// without keeping it: the objects directly inside a top-level array, or 1 for a top-level object.
func countEntries(rd io.Reader) (int, error) {
	var buf [16 << 10]byte
	depth, n := 0, 0
	var top byte
	inStr, esc := false, false
	for {
		m, err := rd.Read(buf[:])
		for _, c := range buf[:m] {
			if inStr {
				switch {
				case esc:
					esc = false
				case c == '\\':
					esc = true
				case c == '"':
					inStr = false
				}
				continue
			}
			switch c {
			case '"':
				inStr = true
			case '{', '[':
				if depth == 0 {
					top = c
					if c == '{' {
						n = 1
					}
				} else if depth == 1 && top == '[' && c == '{' {
					n++
				}
				depth++
			case '}', ']':
				depth--
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// cookieValue returns the value of cookie name in a Cookie header ("a=1; name=v"), nil if absent.
func cookieValue(header []byte, name string) []byte {
	for len(header) > 0 {
		var part []byte
		if i := bytes.IndexByte(header, ';'); i >= 0 {
			part, header = header[:i], header[i+1:]
		} else {
			part, header = header, nil
		}
		part = bytes.TrimLeft(part, " ")
		if len(part) > len(name) && part[len(name)] == '=' && string(part[:len(name)]) == name {
			return part[len(name)+1:]
		}
	}
	return nil
}
