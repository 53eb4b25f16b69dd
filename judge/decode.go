package judge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// decoder turns untyped JSON (decoded with UseNumber) into typed values, producing a *ConfigError with
// the JSON path for anything Kayenta would crash on or silently misread.
type decoder struct{ source string }

func (d decoder) fail(path, format string, args ...any) *ConfigError {
	return &ConfigError{Source: d.source, Path: path, Problem: fmt.Sprintf(format, args...)}
}

// parse decodes one JSON document; syntax errors name the line and column.
func (d decoder) parse(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, d.syntax(data, dec, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		off := dec.InputOffset()
		line, col := position(data, off)
		return nil, d.fail("", "unexpected data after the JSON document at line %d, column %d", line, col)
	}
	return v, nil
}

func (d decoder) syntax(data []byte, dec *json.Decoder, err error) error {
	if errors.Is(err, io.EOF) {
		return d.fail("", "the document is empty; want a JSON document")
	}
	off := dec.InputOffset()
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		off = int64(len(data))
	}
	line, col := position(data, off)
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return d.fail("", "invalid JSON at line %d, column %d: %s", line, col, msg)
}

func position(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col = 1, 1
	for _, c := range data[:off] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// object requires an object (not a list, not null). Kayenta's MapUtils fans a path out over a list and
// silently falls back to defaults; we reject it.
func (d decoder) object(v any, path, want string) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, d.fail(path, "got %s; want an object %s", describe(v), want)
	}
	return m, nil
}

// optObject is object for an optional key: absent is (nil, nil), null is rejected.
func (d decoder) optObject(m map[string]any, key, path, want string) (map[string]any, error) {
	v, ok := m[key]
	if !ok {
		return nil, nil
	}
	return d.object(v, pathKey(path, key), want)
}

func (d decoder) list(v any, path, want string) ([]any, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, d.fail(path, "got %s; want a list %s", describe(v), want)
	}
	return l, nil
}

func (d decoder) str(v any, path, want string) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", d.fail(path, "got %s; want %s", describe(v), want)
	}
	return s, nil
}

// optString reads an optional string key; null is rejected (Kayenta's .toString on null throws).
func (d decoder) optString(m map[string]any, key, path, def, want string) (string, error) {
	v, ok := m[key]
	if !ok {
		return def, nil
	}
	return d.str(v, pathKey(path, key), want)
}

// optBool reads an optional boolean key. Kayenta casts with asInstanceOf[Boolean]: a "true" string
// throws and null silently means false; both are rejected here.
func (d decoder) optBool(m map[string]any, key, path string) (bool, error) {
	v, ok := m[key]
	if !ok {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, d.fail(pathKey(path, key), "got %s; want true or false without quotes (omit the key for false)", describe(v))
	}
	return b, nil
}

// number reads a JSON number the way Kayenta's Double getters accept it: an integer literal must fit
// in 32 bits (Jackson reads larger ones as Long, which Kayenta cannot cast), a decimal literal must be
// finite. Strings, booleans and null are rejected.
func (d decoder) number(v any, path, want string) (float64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, d.fail(path, "got %s; want %s", describe(v), want)
	}
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || i > math.MaxInt32 || i < math.MinInt32 {
			return 0, d.fail(path, "got %s; integer is too large (Kayenta reads integers as 32-bit, limit ±2147483647); write it with a decimal point, e.g. %s.0, if you mean it", clip(s), clip(s))
		}
		return float64(i), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, d.fail(path, "got %s; number is out of range for a 64-bit float", clip(s))
	}
	return f, nil
}

// double reads a JSON number for a field Jackson binds to a Java Double (group weights, score
// thresholds): any integer or decimal literal that is a finite double.
func (d decoder) double(v any, path, want string) (float64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, d.fail(path, "got %s; want %s", describe(v), want)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, d.fail(path, "got %s; number is out of range for a 64-bit float", clip(string(n)))
	}
	return f, nil
}

func (d decoder) optNumber(m map[string]any, key, path string, def float64, want string) (float64, error) {
	v, ok := m[key]
	if !ok {
		return def, nil
	}
	return d.number(v, pathKey(path, key), want)
}

// oneOf reads an optional string key that must be one of allowed (case-sensitive, as in Kayenta, which
// silently uses the default for anything else).
func (d decoder) oneOf(m map[string]any, key, path, def string, allowed ...string) (string, error) {
	v, ok := m[key]
	if !ok {
		return def, nil
	}
	s, isStr := v.(string)
	for _, a := range allowed {
		if isStr && s == a {
			return s, nil
		}
	}
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = quote(a)
	}
	return "", d.fail(pathKey(path, key), "got %s; want one of %s (case-sensitive; omit the key for %s)",
		describe(v), strings.Join(q, ", "), quote(def))
}

// knownKeys rejects keys outside allowed, naming the first unknown one (sorted, so the error is stable).
func (d decoder) knownKeys(m map[string]any, path string, allowed ...string) error {
	var unknown []string
	for k := range m {
		found := false
		for _, a := range allowed {
			if k == a {
				found = true
				break
			}
		}
		if !found {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	first := unknown[0]
	for _, k := range unknown[1:] {
		if k < first {
			first = k
		}
	}
	hint := ""
	for _, a := range allowed {
		if strings.EqualFold(a, first) {
			hint = fmt.Sprintf(" (did you mean %q? keys are case-sensitive)", a)
		}
	}
	return d.fail(pathKey(path, first), "unknown key%s; Kayenta would silently ignore it — allowed keys here: %s",
		hint, strings.Join(allowed, ", "))
}

// stringMap reads an object whose values are strings.
func (d decoder) stringMap(v any, path, want string) (map[string]string, error) {
	m, err := d.object(v, path, want)
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		s, err := d.str(x, pathKey(path, k), "a string")
		if err != nil {
			return nil, err
		}
		out[k] = s
	}
	return out, nil
}

// raw re-encodes a decoded value compactly (used for fields kept verbatim, like a metric's query).
func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
