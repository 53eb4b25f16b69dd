package proxy

import (
	"errors"
	"net/http"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
)

// FuzzParseFileConfig: any YAML either fails with a ConfigError naming a field or yields a config
// that New accepts or rejects with a ConfigError; routing a request through it never panics and
// always picks a cohort.
func FuzzParseFileConfig(f *testing.F) {
	f.Add([]byte("upstreams:\n  stable: [http://127.0.0.1:9001]\n  canary: [http://127.0.0.1:9002]\nsplit:\n  canaryPercent: 2.5\nhashOn: header:X-User\n"))
	f.Add([]byte("upstreams: {stable: [http://127.0.0.1:1]}\nrules:\n- name: beta\n  match: {header: X-Canary, equals: [always]}\n  cohort: canary\n- match: {cidr: [10.0.0.0/8, \"::1\"]}\n  cohort: stable\n- match: {query: v, regex: 'v2.*'}\n  cohort: baseline\ndeny: [{cookie: plan, equals: [bank]}]\nallow: [{header: X-Beta}]\n"))
	f.Add([]byte("upstreams: {stable: [http://a:1]}\njwt: {secret: x}\nrules: [{match: {claim: role, equals: [beta]}, cohort: canary}]\nhashOn: consumer\n"))
	f.Add([]byte("upstreams: {stable: [http://a:1]}\ngeoip: {mmdbFile: x.mmdb, pollInterval: 1m}\nrules: [{match: {country: [DE, at]}, cohort: canary}]\ndeny: [{continent: [OC]}]\n"))
	f.Add([]byte("bogus: 1\n"))
	f.Add([]byte("timeouts: {dial: -1s}\n"))
	f.Add([]byte("split: {canaryPercent: 60, baselinePercent: 50}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fc, err := ParseFileConfig(data)
		var ce *ConfigError
		if err != nil {
			if !errors.As(err, &ce) || ce.Field == "" {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		cfg, err := fc.ProxyConfig()
		if err != nil {
			if !errors.As(err, &ce) {
				t.Fatalf("ProxyConfig error without a field: %v", err)
			}
			return
		}
		cfg.JWT.SecretFile, cfg.JWT.PublicKeyFiles, cfg.JWT.JWKSFile = "", nil, "" // no file access while fuzzing
		cfg.GeoIP.MMDBFile = ""
		p, err := New(cfg)
		if err != nil {
			if !errors.As(err, &ce) || ce.Field == "" {
				t.Fatalf("New error without a field: %v", err)
			}
			return
		}
		r, _ := http.NewRequest(http.MethodGet, "http://x/?use_canary=true", nil)
		r.RemoteAddr = "10.1.2.3:4"
		r.Header.Set("X-Canary", "always")
		r.Header.Set("X-User", "u")
		r.AddCookie(&http.Cookie{Name: "plan", Value: "bank"})
		ci, _ := p.decide(p.table.Load(), r)
		if ci < 0 || ci >= nCohorts {
			t.Fatalf("cohort index %d", ci)
		}
		if s := p.table.Load().split; s.Validate() != nil {
			t.Fatalf("invalid split %v accepted", s)
		}
	})
}

// FuzzMatch: compiling any match never panics; a compiled match evaluates any request.
func FuzzMatch(f *testing.F) {
	f.Add("X-Canary", "", "", "", "always", "", "", "always", "1.2.3.4:5")
	f.Add("", "q", "", "", "", "v[0-9]+", "", "v22", "[::1]:1")
	f.Add("", "", "", "", "", "", "10.0.0.0/8", "", "10.0.0.1:1")
	f.Add("", "", "c", "", "", "(", "", "x", "x")
	f.Fuzz(func(t *testing.T, header, query, cookie, claim, equals, regex, cidr, value, remote string) {
		m := Match{Header: header, Query: query, Cookie: cookie, Claim: claim, Regex: regex}
		if equals != "" {
			m.Equals = []string{equals}
		}
		if cidr != "" {
			m.CIDR = []string{cidr}
		}
		c, err := compileMatch(m, "match")
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error is not a ConfigError: %v", err)
			}
			return
		}
		r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		r.RemoteAddr = remote
		if header != "" {
			r.Header.Set(header, value)
		}
		_ = c.match(&reqInfo{r: r})
	})
}

func FuzzHashOn(f *testing.F) {
	for _, s := range []string{"", "none", "ip", "header:X-User", "cookie:sid", "consumer", "header:", "cookie", "bogus"} {
		f.Add(s, "key")
	}
	f.Fuzz(func(t *testing.T, h, key string) {
		k, name, err := parseHashOn(HashOn(h))
		if err != nil {
			if !errors.Is(err, ErrInvalidHashOn) {
				t.Fatalf("error %v is not ErrInvalidHashOn", err)
			}
			return
		}
		if (k == hashHeader || k == hashCookie) && name == "" {
			t.Fatalf("%q parsed to an empty name", h)
		}
		if b := bucketOf(key); b < 0 || b >= providers.BasisPoints {
			t.Fatalf("bucket %d", b)
		}
	})
}

// FuzzGeoInput: country and continent codes and X-Forwarded-For values never panic; an accepted
// code is two upper-case letters; a parsed forwarded entry is a valid unmapped address.
func FuzzGeoInput(f *testing.F) {
	for _, s := range []string{"DE", "uk", "EU", "", "1.2.3.4, 5.6.7.8", "[::ffff:1.2.3.4]:80", "unknown", "ä"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if c, err := parseCountry(s); err == nil {
			if len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
				t.Fatalf("parseCountry(%q) accepted %q", s, c)
			}
		}
		if c, err := parseContinent(s); err == nil && !continents[c] {
			t.Fatalf("parseContinent(%q) accepted %q", s, c)
		}
		if a, ok := lastForwarded(s); ok && (!a.IsValid() || a.Is4In6()) {
			t.Fatalf("lastForwarded(%q) = %v", s, a)
		}
	})
}
