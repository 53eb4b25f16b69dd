package kong

import (
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"unsafe"

	"github.com/tidwall/gjson"
)

// errNotEntries: an http-log body is a JSON object (queue.max_batch_size 1) or an array of them.
var errNotEntries = errors.New("the body is neither an http-log entry (a JSON object) nor an array of entries")

// decode reads the entries of an http-log body (one entry, or a JSON array of them as Kong's queue
// sends) into wk.recs, counting what it cannot use in wk.n. Only started_at, latencies.request,
// latencies.proxy, response.status and the last of tries (ip, port) are looked at; everything else
// (headers, service, route...) is skipped by gjson without being decoded. The body is read in place
// (no copy, no allocation per entry); nothing decoded outlives the call except the records.
// Entries that finished before staleBefore (µs since the epoch) are counted as stale, not kept.
func (r *LogReceiver) decode(body []byte, wk *logWorker, staleBefore int64) error {
	if len(body) == 0 {
		return errNotEntries
	}
	root := gjson.Parse(unsafe.String(unsafe.SliceData(body), len(body)))
	d := entryDecoder{cohorts: *r.cohorts.Load(), wk: wk, staleBefore: staleBefore}
	switch {
	case root.IsArray():
		root.ForEach(d.each)
	case root.IsObject():
		d.entry(root)
	default:
		return errNotEntries
	}
	return nil
}

type entryDecoder struct {
	cohorts     map[string]uint8
	wk          *logWorker
	staleBefore int64
	kb          [96]byte

	// the entry being decoded
	started, request, proxy float64
	hasStart, hasProxy      bool
	status                  float64
	last                    gjson.Result // the last try
}

func (d *entryDecoder) each(_, e gjson.Result) bool {
	d.entry(e)
	return true
}

func (d *entryDecoder) field(k, v gjson.Result) bool {
	switch k.Str {
	case "started_at":
		d.started, d.hasStart = v.Num, v.Type == gjson.Number
	case "latencies":
		v.ForEach(d.latency)
	case "response":
		d.status = v.Get("status").Num
	case "tries":
		v.ForEach(d.try)
	}
	return true
}

func (d *entryDecoder) latency(k, v gjson.Result) bool {
	switch k.Str {
	case "request":
		d.request = v.Num
	case "proxy":
		d.proxy, d.hasProxy = v.Num, v.Type == gjson.Number
	}
	return true
}

func (d *entryDecoder) try(_, v gjson.Result) bool {
	d.last = v
	return true
}

// entry decodes one entry into a record.
func (d *entryDecoder) entry(e gjson.Result) {
	d.started, d.request, d.proxy, d.status = 0, 0, -1, 0
	d.hasStart, d.hasProxy, d.last = false, false, gjson.Result{}
	n := &d.wk.n
	n.received++
	if !e.IsObject() {
		n.invalid++
		return
	}
	e.ForEach(d.field)
	status := int(d.status)
	if !d.hasStart || d.started <= 0 || d.started > 1e14 || status < 0 || status > 999 || d.request < 0 || d.request > 1e9 {
		n.invalid++
		return
	}
	// the request finished at started_at + latencies.request (ms, possibly fractional)
	t := int64(math.Round((d.started + d.request) * 1000))
	if t < d.staleBefore {
		n.stale++
		return
	}
	if !d.last.Exists() {
		n.unattributed++ // Kong answered without an upstream (no route, no peer)
		return
	}
	ip := d.last.Get("ip").Str
	port := d.last.Get("port").Int()
	c, ok := d.cohorts[string(key(d.kb[:0], ip, port))]
	if !ok {
		// a non-canonical spelling of an address (e.g. IPv6): canonicalize, allocating only here
		if p := net.ParseIP(ip); p != nil {
			c, ok = d.cohorts[string(key(d.kb[:0], p.String(), port))]
		}
		if !ok {
			n.unattributed++
			return
		}
	}
	lat := d.request
	if d.hasProxy && d.proxy >= 0 {
		lat = d.proxy // the upstream's time, without Kong's own
	}
	if status == 0 {
		status = http.StatusBadGateway // tried an upstream but sent no status: none answered
	}
	d.wk.recs = append(d.wk.recs, record{t: t, lat: uint32(min(lat*1000, math.MaxUint32)), status: uint16(status), cohort: c})
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
