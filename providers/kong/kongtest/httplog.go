package kongtest

import (
	"encoding/base64"
	"net/url"
	"sort"
	"strings"
)

// checkLogHeaders mirrors the http-log plugin's config.headers in Kong 3.x
// (kong/plugins/http-log/schema.lua): a map from a header name to one string, without Host,
// Content-Length or Content-Type (Kong sets those). Kong 2.x took an array of strings per header;
// kongtest is 3.x and rejects that shape as Kong 3.x does.
func checkLogHeaders(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return "expected a map"
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		switch strings.ToLower(k) {
		case "host", "content-length", "content-type":
			return "cannot contain '" + k + "' header"
		}
		if !validHeaderName(k) {
			return "bad header name '" + k + "', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
		}
		if _, ok := m[k].(string); !ok {
			return "expected a string for header " + k
		}
	}
	return ""
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// logAuthorization is the Authorization header Kong's http-log sends for an endpoint with user info
// ("Basic " + base64 of it, kong/plugins/http-log/handler.lua), which the configured headers do not
// override; "" without user info.
func logAuthorization(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.User == nil {
		return ""
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.String()))
}
