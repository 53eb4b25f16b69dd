package kong

import (
	"unicode/utf8"

	"github.com/canaryctl/canaryctl/internal/intern"
	"github.com/canaryctl/canaryctl/providers"
)

// Routes in kong-log (analysis.routes). Each entry names the Kong route that matched (route.name,
// else route.id) and the request (request.method, request.uri). A record keeps two small ids into
// the receiver's route table: the route (the name, else the id, else "METHOD /first/two" as the
// built-in proxy names it) and the path template (every segment, identifiers folded to {id}), so
// that explicit pathPrefix and regex routes can match paths without the log keeping every URI.

// maxRouteNames bounds a receiver's route table (names and path templates together): past it, new
// ones are recorded without a route (they count as "other").
const maxRouteNames = 4096

// routeNames interns route names and path templates (internal/intern): an entry's name is looked
// up without allocating; a new one is copied once.
type routeNames struct {
	intern.Table[uint16]
}

// entryRoute is what an entry says about its route, as raw JSON string contents.
type entryRoute struct {
	name, id, method, uri []byte
}

// routeIDs interns an entry's route and path template, using buf and pbuf as scratch.
func (t *routeNames) routeIDs(e entryRoute, buf, pbuf []byte) (route, path uint16) {
	path = 0
	if len(e.uri) > 0 {
		uri := unescapeJSON(buf[:0], e.uri)
		path = t.ID(providers.AppendRouteTemplate(pbuf[:0], "", uri, providers.MaxRouteSegments))
	}
	switch {
	case len(e.name) > 0:
		route = t.ID(unescapeJSON(buf[:0], e.name))
	case len(e.id) > 0:
		route = t.ID(unescapeJSON(buf[:0], e.id))
	case len(e.uri) > 0:
		uri := unescapeJSON(buf[:0], e.uri)
		n := len(uri)
		// the method goes after the URI in the same scratch buffer, then the template after both
		m := unescapeJSON(uri, e.method)[n:]
		route = t.ID(providers.AppendRouteTemplate(pbuf[:0], m, uri, providers.DefaultRouteSegments))
	}
	return route, path
}

// unescapeJSON appends the JSON string contents raw (between the quotes) to dst, unescaped.
// Kong's cjson writes "/" as "\/" (lua-cjson's encode_escape_forward_slash is on by default), so a
// URI arrives as "\/checkout\/pay". Invalid escapes are kept as written.
func unescapeJSON(dst, raw []byte) []byte {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			dst = append(dst, c)
			continue
		}
		i++
		switch e := raw[i]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			if r, ok := hex4(raw[i+1:]); ok {
				dst = utf8.AppendRune(dst, r)
				i += 4
				continue
			}
			dst = append(dst, '\\', e)
		default:
			dst = append(dst, '\\', e)
		}
	}
	return dst
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
