package providers

// Routes of a request (Request.Route): the sources that see paths (the built-in proxy, the simulator)
// name a request by its method and path template, so that /users/42 and /users/43 are one route.

// DefaultRouteSegments is how many leading path segments name a route by default.
const DefaultRouteSegments = 2

// MaxRouteSegments bounds RouteTemplate's segments.
const MaxRouteSegments = 8

// RouteIDSegment replaces a path segment that is an identifier (all digits, a UUID, or 16 or more
// hexadecimal digits with at least one digit).
const RouteIDSegment = "{id}"

// text is what route templates are built from: a request's method and path as the proxy holds
// them ([]byte) or as a log entry gives them (string), without copying either.
type text interface{ ~string | ~[]byte }

// AppendRouteTemplate appends the route of a request to dst: the upper-case method, a space and
// the first segments segments of the path (the query and fragment dropped, empty segments
// skipped), each identifier segment written as {id}: "GET /users/{id}" for GET
// /users/42/orders?x=1 with segments 2. The root, and a path of no segment, is "/". It allocates
// only when dst is too small, so the proxy's hot path appends into a reused buffer.
func AppendRouteTemplate[M, P text](dst []byte, method M, path P, segments int) []byte {
	for i := 0; i < len(method); i++ {
		c := method[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	if len(method) > 0 {
		dst = append(dst, ' ')
	}
	end := len(path)
	for i := 0; i < len(path); i++ {
		if path[i] == '?' || path[i] == '#' {
			end = i
			break
		}
	}
	n := 0
	for i := 0; i < end && n < segments; {
		if path[i] == '/' {
			i++
			continue
		}
		j := i
		for j < end && path[j] != '/' {
			j++
		}
		dst = append(dst, '/')
		if isIDSegment(path[i:j]) {
			dst = append(dst, RouteIDSegment...)
		} else {
			for k := i; k < j; k++ {
				dst = append(dst, path[k])
			}
		}
		n++
		i = j
	}
	if n == 0 {
		dst = append(dst, '/')
	}
	return dst
}

// RouteTemplate is AppendRouteTemplate as a string.
func RouteTemplate(method, path string, segments int) string {
	return string(AppendRouteTemplate(make([]byte, 0, len(method)+1+len(path)), method, path, segments))
}

// isIDSegment reports whether a path segment is an identifier: all digits (42), a UUID
// (8-4-4-4-12 hexadecimal digits), or a hash or object id (16 or more hexadecimal digits, at
// least one a digit, so that a long word of a-f letters stays a word).
func isIDSegment[T text](s T) bool {
	digits, hex := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			hex++
		}
	}
	switch {
	case len(s) == 0:
		return false
	case digits == len(s):
		return true
	case len(s) >= 16 && digits+hex == len(s) && digits > 0:
		return true
	}
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		dash := i == 8 || i == 13 || i == 18 || i == 23
		hexDigit := c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
		if dash != (c == '-') || !dash && !hexDigit {
			return false
		}
	}
	return true
}
