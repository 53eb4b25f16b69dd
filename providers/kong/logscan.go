package kong

import (
	"bytes"
	"errors"
	"strconv"
	"unsafe"
)

// scanner walks JSON in place for the few fields of an http-log entry the analysis reads, and
// skips everything else without decoding it. It is hand-written rather than gjson (which an
// earlier version used) because skipping is what it mostly does: 90% of an entry is headers,
// service and route, and gjson skips nested values a byte at a time (its parseSquash was ~60% of
// the receiver's CPU); here strings are jumped with bytes.IndexByte (vectorized in the Go runtime).
// encoding/json's Decoder allocates per token. The scanner checks the structure as it goes (a
// malformed body is an error, never a partial read; the fuzz test compares it with encoding/json),
// but not the bytes inside strings.
type scanner struct {
	b     []byte
	i     int
	depth int // nesting of skipped values, bounded by maxDepth
}

// maxDepth bounds the nesting skip follows (Kong's entries nest 4 deep), so that no body can
// exhaust the stack.
const maxDepth = 256

var errSyntax = errors.New("malformed JSON")

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte (0 at the end).
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) expect(c byte) bool {
	if s.peek() != c {
		return false
	}
	s.i++
	return true
}

// str reads a string at s.i ('"') and returns its raw contents (escapes not decoded).
func (s *scanner) str() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i + 1
	j := start
	for {
		k := bytes.IndexByte(s.b[j:], '"')
		if k < 0 {
			return nil, false
		}
		j += k
		// the quote is escaped when an odd number of backslashes precede it
		n := 0
		for p := j - 1; p >= start && s.b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			// control characters and escapes inside are not checked: Kong's cjson writes valid
			// strings, and checking would cost a pass over every byte the skip jumps
			s.i = j + 1
			return s.b[start:j], true
		}
		j++
	}
}

// num reads a number.
func (s *scanner) num() (float64, bool) {
	s.ws()
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			s.i++
			continue
		}
		break
	}
	raw := s.b[start:s.i]
	if len(raw) == 0 || !validNumber(raw) {
		return 0, false
	}
	// integers (nearly all of Kong's numbers) without strconv
	if len(raw) <= 18 {
		neg, v, ok := raw[0] == '-', int64(0), true
		digits := raw
		if neg {
			digits = raw[1:]
		}
		for _, c := range digits {
			if c < '0' || c > '9' {
				ok = false
				break
			}
			v = v*10 + int64(c-'0')
		}
		if ok {
			if neg {
				v = -v
			}
			return float64(v), true
		}
	}
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(raw), len(raw)), 64)
	return f, err == nil
}

// validNumber checks JSON's number grammar: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?
func validNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

func (s *scanner) literal(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// skip skips one value of any kind (recursively, without closures: nothing escapes).
func (s *scanner) skip() bool {
	switch s.peek() {
	case '"':
		_, ok := s.str()
		return ok
	case '{':
		if s.depth++; s.depth > maxDepth {
			return false
		}
		more, ok := s.beginObject()
		for ok && more {
			if _, ok = s.key(); ok {
				if ok = s.skip(); ok {
					more, ok = s.endMember('}')
				}
			}
		}
		s.depth--
		return ok
	case '[':
		if s.depth++; s.depth > maxDepth {
			return false
		}
		more, ok := s.beginArray()
		for ok && more {
			if ok = s.skip(); ok {
				more, ok = s.endMember(']')
			}
		}
		s.depth--
		return ok
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		return s.skipNum()
	}
}

// skipNum skips a number without converting it (the grammar is still checked).
func (s *scanner) skipNum() bool {
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			s.i++
			continue
		}
		break
	}
	return s.i > start && validNumber(s.b[start:s.i])
}

// beginObject reads '{'; more is false for an empty object.
func (s *scanner) beginObject() (more, ok bool) {
	if !s.expect('{') {
		return false, false
	}
	if s.expect('}') {
		return false, true
	}
	return true, true
}

// beginArray reads '['; more is false for an empty array.
func (s *scanner) beginArray() (more, ok bool) {
	if !s.expect('[') {
		return false, false
	}
	if s.expect(']') {
		return false, true
	}
	return true, true
}

// key reads a member's key and its ':'.
func (s *scanner) key() ([]byte, bool) {
	k, ok := s.str()
	if !ok || !s.expect(':') {
		return nil, false
	}
	return k, true
}

// endMember reads the ',' before the next member (more) or the closing byte.
func (s *scanner) endMember(closing byte) (more, ok bool) {
	switch s.peek() {
	case ',':
		s.i++
		return true, true
	case closing:
		s.i++
		return false, true
	}
	return false, false
}
