package kongtest

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/canaryctl/canaryctl/providers/kong/internal/schemaerr"
)

// The entity schemas below mirror the field definitions of Kong 3.x (kong/db/schema/entities/*.lua and
// kong/plugins/*/schema.lua) for the fields canaryctl and its tests use: names, types, defaults,
// `between` ranges and `one_of` sets. Validation errors use the messages of kong/db/schema/init.lua
// ("required field missing", "unknown field", "expected an integer", "value should be between 0 and
// 65535", "expected one of: ...").

type kind int

const (
	kString kind = iota
	kInt
	kNumber
	kBool
	kStrings
	kRecord  // nested record with its own fields
	kMap     // free-form object (headers, healthchecks)
	kForeign // {"id": "..."} reference
)

type field struct {
	name     string
	kind     kind
	def      any
	required bool
	oneOf    []string
	between  *[2]float64
	nested   []field
	check    func(v any) string // custom validator: returns a message or ""
	auto     bool               // set by the server (id, timestamps): ignored in input
}

func between(lo, hi float64) *[2]float64 { return &[2]float64{lo, hi} }

var tagsField = field{name: "tags", kind: kStrings, check: checkTags}

// checkTags mirrors typedefs.tags: printable ASCII without ',' and '/' (the list separators of the
// `tags` query filter).
func checkTags(v any) string {
	for _, t := range v.([]any) {
		s := t.(string)
		if s == "" {
			return "invalid tag '': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
		}
		if strings.ContainsAny(s, ",/") {
			return fmt.Sprintf("invalid tag '%s': expected printable ascii (except `,` and `/`) or valid utf-8 sequences", s)
		}
	}
	return ""
}

// schemas by entity name (kong/db/schema/entities/{services,routes,upstreams,targets,plugins}.lua).
var schemas = map[string][]field{
	"services": {
		{name: "id", auto: true}, {name: "created_at", auto: true}, {name: "updated_at", auto: true},
		{name: "name", kind: kString},
		{name: "host", kind: kString, required: true},
		{name: "port", kind: kInt, def: int64(80), between: between(0, 65535)},
		{name: "protocol", kind: kString, def: "http", oneOf: []string{"grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"}},
		{name: "path", kind: kString, check: func(v any) string {
			if !strings.HasPrefix(v.(string), "/") {
				return "should start with: /"
			}
			return ""
		}},
		{name: "retries", kind: kInt, def: int64(5), between: between(0, 32767)},
		{name: "connect_timeout", kind: kInt, def: int64(60000), between: between(1, 2147483646)},
		{name: "write_timeout", kind: kInt, def: int64(60000), between: between(1, 2147483646)},
		{name: "read_timeout", kind: kInt, def: int64(60000), between: between(1, 2147483646)},
		{name: "enabled", kind: kBool, def: true},
		tagsField,
	},
	"routes": {
		{name: "id", auto: true}, {name: "created_at", auto: true}, {name: "updated_at", auto: true},
		{name: "name", kind: kString},
		{name: "paths", kind: kStrings},
		{name: "hosts", kind: kStrings},
		{name: "methods", kind: kStrings},
		{name: "protocols", kind: kStrings, def: []any{"http", "https"}},
		{name: "strip_path", kind: kBool, def: true},
		{name: "preserve_host", kind: kBool, def: false},
		{name: "service", kind: kForeign},
		tagsField,
	},
	"upstreams": {
		{name: "id", auto: true}, {name: "created_at", auto: true}, {name: "updated_at", auto: true},
		{name: "name", kind: kString, required: true},
		{name: "algorithm", kind: kString, def: "round-robin", oneOf: []string{"consistent-hashing", "least-connections", "round-robin", "latency"}},
		{name: "hash_on", kind: kString, def: "none", oneOf: hashOn},
		{name: "hash_fallback", kind: kString, def: "none", oneOf: hashOn},
		{name: "hash_on_header", kind: kString},
		{name: "hash_fallback_header", kind: kString},
		{name: "hash_on_cookie", kind: kString},
		{name: "hash_on_cookie_path", kind: kString, def: "/"},
		{name: "hash_on_query_arg", kind: kString},
		{name: "hash_fallback_query_arg", kind: kString},
		{name: "hash_on_uri_capture", kind: kString},
		{name: "hash_fallback_uri_capture", kind: kString},
		{name: "slots", kind: kInt, def: int64(10000), between: between(10, 65536)},
		{name: "host_header", kind: kString},
		{name: "healthchecks", kind: kMap},
		tagsField,
	},
	"targets": {
		{name: "id", auto: true}, {name: "created_at", auto: true}, {name: "updated_at", auto: true},
		{name: "upstream", auto: true},
		{name: "target", kind: kString, required: true, check: checkTarget},
		{name: "weight", kind: kInt, def: int64(100), between: between(0, 65535)},
		tagsField,
	},
	"plugins": {
		{name: "id", auto: true}, {name: "created_at", auto: true}, {name: "updated_at", auto: true},
		{name: "name", kind: kString, required: true},
		{name: "service", kind: kForeign},
		{name: "route", kind: kForeign},
		{name: "consumer", kind: kForeign},
		{name: "config", kind: kMap}, // validated per plugin below
		{name: "enabled", kind: kBool, def: true},
		{name: "protocols", kind: kStrings, def: []any{"grpc", "grpcs", "http", "https"}},
		{name: "instance_name", kind: kString},
		tagsField,
	},
}

var hashOn = []string{"none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture"}

// pluginSchemas mirror kong/plugins/http-log/schema.lua (with the shared queue schema of
// kong/tools/queue_schema.lua) and the documented configuration of the Enterprise canary plugin
// (developer.konghq.com/plugins/canary/reference).
var pluginSchemas = map[string][]field{
	"http-log": {
		{name: "http_endpoint", kind: kString, required: true, check: checkURL},
		{name: "method", kind: kString, def: "POST", oneOf: []string{"POST", "PUT", "PATCH"}},
		{name: "content_type", kind: kString, def: "application/json", oneOf: []string{"application/json", "application/json; charset=utf-8"}},
		{name: "timeout", kind: kNumber, def: 10000.0},
		{name: "keepalive", kind: kNumber, def: 60000.0},
		{name: "headers", kind: kMap, check: checkLogHeaders},
		{name: "custom_fields_by_lua", kind: kMap},
		// deprecated from 3.3, without defaults (the 3.0-3.2 batching; see httpLogLegacy)
		{name: "retry_count", kind: kInt},
		{name: "queue_size", kind: kInt},
		{name: "flush_timeout", kind: kNumber},
		{name: "queue", kind: kRecord, def: map[string]any{}, nested: []field{
			{name: "max_batch_size", kind: kInt, def: int64(1), between: between(1, 1000000)},
			{name: "max_coalescing_delay", kind: kNumber, def: 1.0, between: between(0, 3600)},
			{name: "max_entries", kind: kInt, def: int64(10000), between: between(1, 1000000)},
			{name: "max_bytes", kind: kInt},
			{name: "max_retry_time", kind: kNumber, def: 60.0},
			{name: "initial_retry_delay", kind: kNumber, def: 0.01, between: between(0.001, 1000000)},
			{name: "max_retry_delay", kind: kNumber, def: 60.0, between: between(0.001, 1000000)},
			{name: "concurrency_limit", kind: kInt, def: int64(1), oneOf: nil, between: between(-1, 1)},
		}},
	},
	"canary": {
		{name: "start", kind: kNumber},
		{name: "duration", kind: kNumber, def: 3600.0},
		{name: "steps", kind: kNumber, def: 1000.0},
		{name: "percentage", kind: kNumber, between: between(0, 100)},
		{name: "upstream_host", kind: kString},
		{name: "upstream_port", kind: kInt, between: between(0, 65535)},
		{name: "upstream_uri", kind: kString},
		{name: "upstream_fallback", kind: kBool, def: false},
		{name: "hash", kind: kString, def: "consumer", oneOf: []string{"consumer", "ip", "none", "allow", "deny", "header"}},
		{name: "hash_header", kind: kString},
		{name: "canary_by_header_name", kind: kString},
		{name: "groups", kind: kStrings},
	},
}

func checkURL(v any) string {
	u, err := url.Parse(v.(string))
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "missing host in url"
	}
	return ""
}

// checkTarget mirrors validate_target in kong/db/schema/entities/targets.lua: a hostname or an IP
// address, with an optional port.
func checkTarget(v any) string {
	s := v.(string)
	if _, _, ok := splitTarget(s); !ok {
		return fmt.Sprintf("Invalid target ('%s'); not a valid hostname or ip address", s)
	}
	return ""
}

// DefaultTargetPort is the port Kong adds to a target without one (kong/db/dao/targets.lua,
// format_target: "host:8000").
const DefaultTargetPort = 8000

// splitTarget parses host[:port], "[v6]:port" or a bare IPv6 address.
func splitTarget(s string) (host string, port int, ok bool) {
	if s == "" {
		return "", 0, false
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		// no port: a hostname, an IPv4 address or a bare IPv6 address
		if ip := net.ParseIP(strings.Trim(s, "[]")); ip != nil {
			return ip.String(), DefaultTargetPort, true
		}
		if !validHostname(s) {
			return "", 0, false
		}
		return strings.ToLower(s), DefaultTargetPort, true
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, false
	}
	if ip := net.ParseIP(h); ip != nil {
		return ip.String(), n, true
	}
	if !validHostname(h) {
		return "", 0, false
	}
	return strings.ToLower(h), n, true
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return false
			}
		}
	}
	return true
}

// normalizeTarget renders a target the way Kong stores it: host:port, IPv6 in brackets.
func normalizeTarget(s string) string {
	h, p, ok := splitTarget(s)
	if !ok {
		return s
	}
	return net.JoinHostPort(h, strconv.Itoa(p))
}

// validate checks input against fields, starting from base (nil: defaults, for POST and PUT; an
// existing entity: PATCH). It returns the new record or the field errors, keyed like Kong's
// `fields` (nested records give nested maps).
func validate(fields []field, base, input map[string]any) (map[string]any, map[string]any) {
	errs := map[string]any{}
	out := map[string]any{}
	byName := map[string]field{}
	for _, f := range fields {
		byName[f.name] = f
	}
	if base == nil {
		for _, f := range fields {
			if f.auto {
				continue
			}
			out[f.name] = cloneValue(f.def)
		}
	} else {
		for k, v := range base {
			out[k] = cloneValue(v)
		}
	}
	for k, v := range input {
		f, ok := byName[k]
		if !ok {
			errs[k] = "unknown field"
			continue
		}
		if f.auto {
			continue
		}
		if v == nil {
			out[k] = nil
			continue
		}
		if f.kind == kRecord {
			m, ok := v.(map[string]any)
			if !ok {
				errs[k] = "expected a record"
				continue
			}
			var nbase map[string]any
			if b, ok := out[k].(map[string]any); ok && base != nil {
				nbase = b
			}
			nv, nerr := validate(f.nested, nbase, m)
			if len(nerr) > 0 {
				errs[k] = nerr
				continue
			}
			out[k] = nv
			continue
		}
		nv, msg := coerce(f, v)
		if msg != "" {
			errs[k] = msg
			continue
		}
		out[k] = nv
	}
	for _, f := range fields {
		if f.kind == kRecord {
			if m, ok := out[f.name].(map[string]any); ok && base == nil {
				if _, inInput := input[f.name]; !inInput || len(m) == 0 {
					nv, _ := validate(f.nested, nil, map[string]any{})
					out[f.name] = nv
				}
			}
		}
		if f.required && out[f.name] == nil {
			if _, already := errs[f.name]; !already {
				errs[f.name] = "required field missing"
			}
		}
	}
	return out, errs
}

func coerce(f field, v any) (any, string) {
	var out any
	if c, ok := coercers[f.kind]; ok {
		var msg string
		var final bool
		if out, msg, final = c(f, v); msg != "" || final {
			return out, msg
		}
	}
	if f.check != nil {
		if msg := f.check(out); msg != "" {
			return nil, msg
		}
	}
	return out, ""
}

// coercers convert a JSON value to a field's kind, or say what Kong says of a value of the wrong
// kind; final: the value needs no further check.
var coercers = map[kind]func(f field, v any) (out any, msg string, final bool){
	kString: func(f field, v any) (any, string, bool) {
		s, ok := v.(string)
		if !ok {
			return nil, "expected a string", false
		}
		if len(f.oneOf) > 0 && !slices.Contains(f.oneOf, s) {
			return nil, "expected one of: " + strings.Join(f.oneOf, ", "), false
		}
		return s, "", false
	},
	kInt: func(f field, v any) (any, string, bool) {
		n, ok := v.(json.Number)
		if !ok {
			return nil, "expected an integer", false
		}
		i, err := n.Int64()
		if err != nil {
			return nil, "expected an integer", false
		}
		if f.between != nil && (float64(i) < f.between[0] || float64(i) > f.between[1]) {
			return nil, fmt.Sprintf("value should be between %d and %d", int64(f.between[0]), int64(f.between[1])), false
		}
		return i, "", false
	},
	kNumber: func(f field, v any) (any, string, bool) {
		n, ok := v.(json.Number)
		if !ok {
			return nil, "expected a number", false
		}
		x, err := n.Float64()
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, "expected a number", false
		}
		if f.between != nil && (x < f.between[0] || x > f.between[1]) {
			return nil, fmt.Sprintf("value should be between %s and %s", fmtNum(f.between[0]), fmtNum(f.between[1])), false
		}
		return x, "", false
	},
	kBool: func(_ field, v any) (any, string, bool) {
		if b, ok := v.(bool); ok {
			return b, "", false
		}
		return nil, "expected a boolean", false
	},
	kStrings: func(_ field, v any) (any, string, bool) {
		a, ok := v.([]any)
		if !ok {
			return nil, "expected an array", false
		}
		for _, e := range a {
			if _, ok := e.(string); !ok {
				return nil, "expected an array of strings", false
			}
		}
		return a, "", false
	},
	kMap: func(_ field, v any) (any, string, bool) {
		if m, ok := v.(map[string]any); ok {
			return m, "", false
		}
		return nil, "expected a map", false
	},
	kForeign: func(_ field, v any) (any, string, bool) {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "expected a record", false
		}
		if id, ok := m["id"].(string); ok {
			return map[string]any{"id": id}, "", false
		}
		if name, ok := m["name"].(string); ok {
			return map[string]any{"name": name}, "", true
		}
		return nil, "expected a record with an id", false
	},
}

func fmtNum(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = cloneValue(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = cloneValue(e)
		}
		return a
	default:
		return v
	}
}

// schemaViolation builds Kong's 400 body for field errors (kong/db/errors.lua, SCHEMA_VIOLATION,
// code 2): {"code":2,"name":"schema violation","fields":{...},"message":"schema violation (f: msg)"}
// or "N schema violations (a: x; b: y)".
func schemaViolation(fields map[string]any) map[string]any {
	parts := schemaerr.Parts(fields)
	msg := "schema violation (" + strings.Join(parts, "; ") + ")"
	if len(parts) > 1 {
		msg = fmt.Sprintf("%d schema violations (%s)", len(parts), strings.Join(parts, "; "))
	}
	return map[string]any{"code": 2, "name": "schema violation", "fields": fields, "message": msg}
}
