package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/canaryctl/canaryctl/providers"
)

// ConfigError is a mistake in the proxy's configuration; Field names the setting (as in the YAML
// file, e.g. "rules[2].match.regex"). It maps to exit code 2.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string      { return fmt.Sprintf("proxy config: %s: %v", e.Field, e.Err) }
func (e *ConfigError) Unwrap() error      { return e.Err }
func (e *ConfigError) InvalidInput() bool { return true }

func configErrorf(field, format string, args ...any) error {
	return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Rule sends the requests it matches to a cohort, before and instead of the split. Rules are
// evaluated in order and the first match wins. Requests routed by a rule are recorded with
// ByRule=true and kept out of the canary/baseline comparison.
type Rule struct {
	Name   string           `yaml:"name" json:"name,omitempty"`
	Match  Match            `yaml:"match" json:"match"`
	Cohort providers.Cohort `yaml:"cohort" json:"cohort"`
}

// Match is one condition on a request. Exactly one source is set: Header, Query, Cookie or Claim
// (a claim of a verified JWT) with an optional test (Equals: any of the values; Regex: an RE2
// pattern that must match the whole value; neither: the source is present), CIDR (the client
// IP is in one of the prefixes), or Country / Continent (the client IP's country, ISO 3166-1
// alpha-2, or continent code in the GeoIP database, see GeoIPConfig; with TrustForwarded the
// client IP is the last X-Forwarded-For entry, the one the trusted load balancer appended).
type Match struct {
	Header string   `yaml:"header,omitempty" json:"header,omitempty"`
	Query  string   `yaml:"query,omitempty" json:"query,omitempty"`
	Cookie string   `yaml:"cookie,omitempty" json:"cookie,omitempty"`
	Claim  string   `yaml:"claim,omitempty" json:"claim,omitempty"`
	Equals []string `yaml:"equals,omitempty" json:"equals,omitempty"`
	Regex  string   `yaml:"regex,omitempty" json:"regex,omitempty"`
	CIDR   []string `yaml:"cidr,omitempty" json:"cidr,omitempty"`

	Country   []string `yaml:"country,omitempty" json:"country,omitempty"`
	Continent []string `yaml:"continent,omitempty" json:"continent,omitempty"`
}

// reqInfo caches what matchers and the hash key read from one request.
type reqInfo struct {
	r        *http.Request
	jwt      *jwtVerifier
	ipDone   bool
	ip       netip.Addr
	qDone    bool
	query    url.Values
	cDone    bool
	claims   map[string]any
	verified bool
	// geo: set only when a country or continent match exists.
	geo      *geoDB
	trustXFF bool
	gDone    bool
	gOK      bool
	codes    geoCodes
}

func (ri *reqInfo) clientIP() (netip.Addr, bool) {
	if !ri.ipDone {
		ri.ipDone = true
		if ap, err := netip.ParseAddrPort(ri.r.RemoteAddr); err == nil {
			ri.ip = ap.Addr().Unmap()
		} else if a, err := netip.ParseAddr(ri.r.RemoteAddr); err == nil {
			ri.ip = a.Unmap()
		}
	}
	return ri.ip, ri.ip.IsValid()
}

// geoClientIP is the IP country and continent matches look up: the last X-Forwarded-For entry
// when that is trusted (the one the load balancer in front appended; earlier entries are whatever
// the client sent), else the connection's address. A trusted but unparseable last entry gives no
// IP: the load balancer's own address would be looked up instead of the client's.
func (ri *reqInfo) geoClientIP() (netip.Addr, bool) {
	if ri.trustXFF {
		if v := ri.r.Header["X-Forwarded-For"]; len(v) > 0 {
			return lastForwarded(v[len(v)-1])
		}
	}
	return ri.clientIP()
}

// lastForwarded parses the last entry of an X-Forwarded-For value: an IP, optionally with a port
// ("192.0.2.1:5", "[2001:db8::1]:5").
func lastForwarded(v string) (netip.Addr, bool) {
	v = lastHop(v)
	if a, err := netip.ParseAddr(v); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// geoCodes looks the client IP up once per request.
func (ri *reqInfo) geoCodes() (geoCodes, bool) {
	if !ri.gDone {
		ri.gDone = true
		if ri.geo != nil {
			if ip, ok := ri.geoClientIP(); ok {
				ri.codes, ri.gOK = ri.geo.lookup(ip)
			}
		}
	}
	return ri.codes, ri.gOK
}

func (ri *reqInfo) queryValues() url.Values {
	if !ri.qDone {
		ri.qDone = true
		ri.query = ri.r.URL.Query()
	}
	return ri.query
}

// jwtClaims returns the claims of the request's token only if its signature verified.
func (ri *reqInfo) jwtClaims() (map[string]any, bool) {
	if !ri.cDone {
		ri.cDone = true
		if ri.jwt != nil {
			ri.claims, ri.verified = ri.jwt.verify(ri.r)
		}
	}
	return ri.claims, ri.verified
}

// matcher is a compiled Match.
type matcher struct {
	kind     byte // 'h' header, 'q' query, 'c' cookie, 'j' claim, 'n' cidr, 'g' country, 'k' continent
	name     string
	equals   []string
	re       *regexp.Regexp
	prefixes []netip.Prefix
}

func compileMatch(m Match, field string) (*matcher, error) {
	var sources []string
	c := &matcher{}
	if m.Header != "" {
		if strings.Contains(m.Header, "_") {
			return nil, configErrorf(field+".header", "%q has an underscore: such headers are dropped (as nginx does); name it with dashes, e.g. %q", m.Header, strings.ReplaceAll(m.Header, "_", "-"))
		}
		sources = append(sources, "header")
		c.kind, c.name = 'h', http.CanonicalHeaderKey(m.Header)
	}
	if m.Query != "" {
		sources = append(sources, "query")
		c.kind, c.name = 'q', m.Query
	}
	if m.Cookie != "" {
		sources = append(sources, "cookie")
		c.kind, c.name = 'c', m.Cookie
	}
	if m.Claim != "" {
		sources = append(sources, "claim")
		c.kind, c.name = 'j', m.Claim
	}
	if len(m.CIDR) > 0 {
		sources = append(sources, "cidr")
		c.kind = 'n'
	}
	if len(m.Country) > 0 {
		sources = append(sources, "country")
		c.kind = 'g'
	}
	if len(m.Continent) > 0 {
		sources = append(sources, "continent")
		c.kind = 'k'
	}
	switch len(sources) {
	case 0:
		return nil, configErrorf(field, "set one of header, query, cookie, claim, cidr, country or continent")
	case 1:
	default:
		return nil, configErrorf(field, "set only one of header, query, cookie, claim, cidr, country or continent (got %s)", strings.Join(sources, ", "))
	}
	if c.kind == 'g' || c.kind == 'k' {
		return compileGeo(c, m, field)
	}
	if c.kind == 'n' {
		if len(m.Equals) > 0 || m.Regex != "" {
			return nil, configErrorf(field, "cidr takes no equals or regex")
		}
		for i, s := range m.CIDR {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				a, aerr := netip.ParseAddr(strings.TrimSpace(s))
				if aerr != nil {
					return nil, configErrorf(fmt.Sprintf("%s.cidr[%d]", field, i), "%q is not a CIDR prefix such as 10.0.0.0/8 or an IP", s)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			c.prefixes = append(c.prefixes, p.Masked())
		}
		return c, nil
	}
	if len(m.Equals) > 0 && m.Regex != "" {
		return nil, configErrorf(field, "set either equals or regex, not both")
	}
	c.equals = m.Equals
	if m.Regex != "" {
		re, err := regexp.Compile(`^(?:` + m.Regex + `)$`)
		if err != nil {
			return nil, configErrorf(field+".regex", "%v", err)
		}
		c.re = re
	}
	return c, nil
}

// test applies the equals/regex test, or presence when there is none.
func (m *matcher) test(v string) bool {
	if m.re != nil {
		return m.re.MatchString(v)
	}
	if len(m.equals) == 0 {
		return true
	}
	for _, e := range m.equals {
		if v == e {
			return true
		}
	}
	return false
}

func (m *matcher) match(ri *reqInfo) bool {
	switch m.kind {
	case 'h':
		for _, v := range ri.r.Header[m.name] {
			if m.test(v) {
				return true
			}
		}
	case 'q':
		for _, v := range ri.queryValues()[m.name] {
			if m.test(v) {
				return true
			}
		}
	case 'c':
		for _, ck := range ri.r.CookiesNamed(m.name) {
			if m.test(ck.Value) {
				return true
			}
		}
	case 'j':
		claims, ok := ri.jwtClaims()
		if !ok {
			return false
		}
		v, ok := claims[m.name]
		if !ok {
			return false
		}
		if list, isList := v.([]any); isList {
			for _, e := range list {
				if s, ok := claimString(e); ok && m.test(s) {
					return true
				}
			}
			return false
		}
		s, ok := claimString(v)
		return ok && m.test(s)
	case 'g', 'k':
		g, ok := ri.geoCodes()
		if !ok {
			return false
		}
		v := g.country
		if m.kind == 'k' {
			v = g.continent
		}
		for _, e := range m.equals {
			if v == e {
				return true
			}
		}
	case 'n':
		ip, ok := ri.clientIP()
		if !ok {
			return false
		}
		for _, p := range m.prefixes {
			if p.Contains(ip) {
				return true
			}
		}
	}
	return false
}

func claimString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

type compiledRule struct {
	name   string
	m      *matcher
	cohort int
}

// HashOn selects the sticky key: "none" (exact split by the wheel), "ip", "header:NAME",
// "cookie:NAME" or "consumer" (the subject of a verified JWT, see JWTConfig.ConsumerClaim).
type HashOn string

type hashKind byte

const (
	hashNone hashKind = iota
	hashIP
	hashHeader
	hashCookie
	hashConsumer
)

// ErrInvalidHashOn: a hash-on value that is not one of the accepted forms.
var ErrInvalidHashOn = errors.New("hash-on must be none, ip, header:NAME, cookie:NAME or consumer")

func parseHashOn(h HashOn) (hashKind, string, error) {
	s := strings.TrimSpace(string(h))
	switch {
	case s == "" || s == "none":
		return hashNone, "", nil
	case s == "ip":
		return hashIP, "", nil
	case s == "consumer":
		return hashConsumer, "", nil
	case strings.HasPrefix(s, "header:") && strings.Contains(s, "_"):
		return 0, "", fmt.Errorf("%w (got %q: headers with an underscore are dropped, as nginx does; use dashes)", ErrInvalidHashOn, s)
	case strings.HasPrefix(s, "header:") && len(s) > len("header:"):
		return hashHeader, http.CanonicalHeaderKey(s[len("header:"):]), nil
	case strings.HasPrefix(s, "cookie:") && len(s) > len("cookie:"):
		return hashCookie, s[len("cookie:"):], nil
	}
	return 0, "", fmt.Errorf("%w (got %q)", ErrInvalidHashOn, s)
}

// bucketOf hashes a key into one of 10,000 buckets with 64-bit FNV-1a, stable across restarts
// and machines, so a user keeps their bucket for the whole rollout.
func bucketOf(key string) int {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return int(h % providers.BasisPoints)
}

// BucketOf returns the sticky bucket (0..9999) of a key: canary owns [0, canary), baseline
// [canary, canary+baseline), stable the rest. Exported for tests and tooling.
func BucketOf(key string) int { return bucketOf(key) }

// stickyKey returns the request's hash key; a missing key falls back to the client IP, and to
// no hashing ("", false) when even that is unknown.
func (p *Proxy) stickyKey(ri *reqInfo) (string, bool) {
	switch p.hashKind {
	case hashHeader:
		if v := ri.r.Header.Get(p.hashName); v != "" {
			return "h:" + v, true
		}
	case hashCookie:
		if ck, err := ri.r.Cookie(p.hashName); err == nil && ck.Value != "" {
			return "c:" + ck.Value, true
		}
	case hashConsumer:
		if claims, ok := ri.jwtClaims(); ok {
			if s, ok := claimString(claims[p.jwt.consumerClaim]); ok && s != "" {
				return "u:" + s, true
			}
		}
	}
	if ip, ok := ri.clientIP(); ok {
		return "ip:" + ip.String(), true
	}
	return "", false
}

func bucketCohort(b int, s providers.Split) int {
	switch {
	case b < s.Canary:
		return iCanary
	case b < s.Canary+s.Baseline:
		return iBaseline
	}
	return iStable
}
