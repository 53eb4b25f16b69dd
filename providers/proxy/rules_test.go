package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/canaryctl/canaryctl/providers"
)

const testSecret = "s3cret-for-tests-only"

func hs256(t testing.TB, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRulesRouteBeforeTheSplit drives every rule kind through the proxy to real upstreams. The
// split sends everything to stable, so reaching canary or baseline proves the rule matched.
func TestRulesRouteBeforeTheSplit(t *testing.T) {
	t.Parallel()
	_, _, _, ups := three(t)
	rules := []Rule{
		{Name: "never", Match: Match{Header: "X-Canary", Equals: []string{"never"}}, Cohort: providers.Stable},
		{Name: "always", Match: Match{Header: "X-Canary", Equals: []string{"always"}}, Cohort: providers.Canary},
		{Name: "version", Match: Match{Header: "X-Version", Regex: `v2(\.\d+)?`}, Cohort: providers.Canary},
		{Name: "query", Match: Match{Query: "use_canary", Equals: []string{"true"}}, Cohort: providers.Canary},
		{Name: "cookie", Match: Match{Cookie: "cohort", Equals: []string{"baseline"}}, Cohort: providers.Baseline},
		{Name: "role", Match: Match{Claim: "role", Equals: []string{"beta-tester"}}, Cohort: providers.Canary},
		{Name: "sub", Match: Match{Claim: "sub", Equals: []string{"alice", "bob"}}, Cohort: providers.Baseline},
		{Name: "groups", Match: Match{Claim: "groups", Equals: []string{"canary-club"}}, Cohort: providers.Canary},
	}
	p, srv := startProxy(t, Config{Upstreams: ups, Rules: rules, JWT: JWTConfig{Secret: testSecret}})
	c := testClient()
	exp := time.Now().Add(time.Hour).Unix()
	for _, tc := range []struct {
		name   string
		header map[string]string
		query  string
		cookie *http.Cookie
		want   string
		byRule bool
	}{
		{name: "no rule matches: split", want: "stable"},
		{name: "header equals always", header: map[string]string{"X-Canary": "always"}, want: "canary", byRule: true},
		{name: "header never wins over later rules", header: map[string]string{"X-Canary": "never", "X-Version": "v2"}, want: "stable", byRule: true},
		{name: "header equals other value", header: map[string]string{"X-Canary": "sometimes"}, want: "stable"},
		{name: "header regex", header: map[string]string{"X-Version": "v2.1"}, want: "canary", byRule: true},
		{name: "header regex is anchored", header: map[string]string{"X-Version": "v21"}, want: "stable"},
		{name: "query", query: "?use_canary=true", want: "canary", byRule: true},
		{name: "query other value", query: "?use_canary=false", want: "stable"},
		{name: "cookie", cookie: &http.Cookie{Name: "cohort", Value: "baseline"}, want: "baseline", byRule: true},
		{name: "jwt claim role", header: map[string]string{"Authorization": "Bearer " + hs256(t, testSecret, jwt.MapClaims{"role": "beta-tester", "exp": exp})}, want: "canary", byRule: true},
		{name: "jwt sub in list", header: map[string]string{"Authorization": "Bearer " + hs256(t, testSecret, jwt.MapClaims{"sub": "bob", "exp": exp})}, want: "baseline", byRule: true},
		{name: "jwt list claim", header: map[string]string{"Authorization": "Bearer " + hs256(t, testSecret, jwt.MapClaims{"groups": []string{"x", "canary-club"}})}, want: "canary", byRule: true},
		{name: "jwt with wrong signature is absent", header: map[string]string{"Authorization": "Bearer " + hs256(t, "not-the-secret", jwt.MapClaims{"role": "beta-tester"})}, want: "stable"},
		{name: "expired jwt is absent", header: map[string]string{"Authorization": "Bearer " + hs256(t, testSecret, jwt.MapClaims{"role": "beta-tester", "exp": time.Now().Add(-time.Hour).Unix()})}, want: "stable"},
		{name: "garbage token is absent", header: map[string]string{"Authorization": "Bearer not.a.token"}, want: "stable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := newReq(t, srv.URL+"/path"+tc.query)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			if tc.cookie != nil {
				req.AddCookie(tc.cookie)
			}
			before := time.Now()
			if got := get(t, c, req); got != tc.want {
				t.Fatalf("routed to %q, want %q", got, tc.want)
			}
			reqs := samples(t, p, before, 1)
			if len(reqs) == 0 {
				t.Fatal("request not recorded")
			}
			last := reqs[len(reqs)-1]
			if last.ByRule != tc.byRule || string(last.Cohort) != tc.want {
				t.Fatalf("recorded %+v, want cohort %s byRule %v", last, tc.want, tc.byRule)
			}
		})
	}
}

func TestCIDRDenyAndAllowLists(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    Config
		remote string
		header string
		want   int
		byRule bool
	}{
		{"cidr rule matches", Config{Rules: []Rule{{Match: Match{CIDR: []string{"10.0.0.0/8"}}, Cohort: providers.Canary}}}, "10.1.2.3:4", "", iCanary, true},
		{"cidr rule single ip", Config{Rules: []Rule{{Match: Match{CIDR: []string{"192.0.2.7"}}, Cohort: providers.Canary}}}, "192.0.2.7:4", "", iCanary, true},
		{"cidr rule misses", Config{Rules: []Rule{{Match: Match{CIDR: []string{"10.0.0.0/8"}}, Cohort: providers.Canary}}}, "11.1.2.3:4", "", iStable, false},
		{"ipv6 cidr", Config{Rules: []Rule{{Match: Match{CIDR: []string{"2001:db8::/32"}}, Cohort: providers.Baseline}}}, "[2001:db8::1]:80", "", iBaseline, true},
		{"deny beats a canary rule", Config{Deny: []Match{{Header: "X-Tenant", Equals: []string{"bank"}}},
			Rules: []Rule{{Match: Match{Header: "X-Tenant", Regex: ".*"}, Cohort: providers.Canary}}}, "1.1.1.1:1", "bank", iStable, true},
		{"deny keeps a denied user off a 100% canary", Config{Deny: []Match{{Header: "X-Tenant", Equals: []string{"bank"}}}}, "1.1.1.1:1", "bank", iStable, true},
		{"not denied gets the split", Config{Deny: []Match{{Header: "X-Tenant", Equals: []string{"bank"}}}}, "1.1.1.1:1", "shop", iCanary, false},
		{"allow list admits", Config{Allow: []Match{{CIDR: []string{"10.0.0.0/8"}}}}, "10.0.0.1:1", "", iCanary, false},
		{"allow list refuses others", Config{Allow: []Match{{CIDR: []string{"10.0.0.0/8"}}}}, "12.0.0.1:1", "", iStable, true},
		{"allow list refuses a canary rule", Config{Allow: []Match{{CIDR: []string{"10.0.0.0/8"}}},
			Rules: []Rule{{Match: Match{Header: "X-Tenant", Equals: []string{"shop"}}, Cohort: providers.Canary}}}, "12.0.0.1:1", "shop", iStable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			cfg.Upstreams = map[providers.Cohort][]string{"stable": {"http://127.0.0.1:1"}, "baseline": {"http://127.0.0.1:2"}, "canary": {"http://127.0.0.1:3"}}
			cfg.Split = providers.Split{Canary: providers.BasisPoints}
			if tc.want == iStable && !tc.byRule {
				cfg.Split = providers.Split{}
			}
			p, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
			r.RemoteAddr = tc.remote
			if tc.header != "" {
				r.Header.Set("X-Tenant", tc.header)
			}
			ci, byRule := p.decide(p.table.Load(), r)
			if ci != tc.want || byRule != tc.byRule {
				t.Fatalf("decide = %s byRule %v, want %s byRule %v", cohortNames[ci], byRule, cohortNames[tc.want], tc.byRule)
			}
		})
	}
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func pemPublic(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// TestJWTTrustedOnlyWhenVerified checks each key kind, and that tokens that do not verify (wrong
// key, alg none, alg confusion with a public key as HMAC secret, wrong kid) route as if absent.
func TestJWTTrustedOnlyWhenVerified(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaPEM := pemPublic(t, &rsaKey.PublicKey)
	rsaFile := writeFile(t, dir, "rsa.pem", rsaPEM)
	ecFile := writeFile(t, dir, "ec.pem", pemPublic(t, &ecKey.PublicKey))
	b64 := base64.RawURLEncoding.EncodeToString
	ecBytes, _ := ecKey.PublicKey.Bytes() // 0x04 || X || Y
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "r1", "use": "sig", "n": b64(rsaKey.N.Bytes()), "e": b64([]byte{1, 0, 1})},
		{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(ecBytes[1:33]), "y": b64(ecBytes[33:])},
	}})
	jwksFile := writeFile(t, dir, "jwks.json", jwks)
	secretFile := writeFile(t, dir, "secret", []byte(testSecret+"\n"))

	sign := func(m jwt.SigningMethod, key any, kid string) string {
		tok := jwt.NewWithClaims(m, jwt.MapClaims{"role": "beta-tester", "exp": time.Now().Add(time.Hour).Unix()})
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"role": "beta-tester"}).SignedString(jwt.UnsafeAllowNoneSignatureType)

	for _, tc := range []struct {
		name  string
		jwt   JWTConfig
		token string
		want  bool
	}{
		{"hs256 secret file", JWTConfig{SecretFile: secretFile}, sign(jwt.SigningMethodHS256, []byte(testSecret), ""), true},
		{"hs256 wrong secret", JWTConfig{SecretFile: secretFile}, sign(jwt.SigningMethodHS256, []byte("nope"), ""), false},
		{"alg none", JWTConfig{SecretFile: secretFile}, noneTok, false},
		{"rs256 pem", JWTConfig{PublicKeyFiles: []string{rsaFile}}, sign(jwt.SigningMethodRS256, rsaKey, ""), true},
		{"rs256 other key", JWTConfig{PublicKeyFiles: []string{rsaFile}}, sign(jwt.SigningMethodRS256, otherRSA, ""), false},
		{"alg confusion: public key as HS256 secret", JWTConfig{PublicKeyFiles: []string{rsaFile}}, sign(jwt.SigningMethodHS256, rsaPEM, ""), false},
		{"es256 pem", JWTConfig{PublicKeyFiles: []string{ecFile}}, sign(jwt.SigningMethodES256, ecKey, ""), true},
		{"es256 other key", JWTConfig{PublicKeyFiles: []string{ecFile, rsaFile}}, sign(jwt.SigningMethodES256, otherEC, ""), false},
		{"jwks rsa by kid", JWTConfig{JWKSFile: jwksFile}, sign(jwt.SigningMethodRS256, rsaKey, "r1"), true},
		{"jwks ec by kid", JWTConfig{JWKSFile: jwksFile}, sign(jwt.SigningMethodES256, ecKey, "e1"), true},
		{"jwks unknown kid", JWTConfig{JWKSFile: jwksFile}, sign(jwt.SigningMethodES256, ecKey, "zz"), false},
		{"jwks kid of other key type", JWTConfig{JWKSFile: jwksFile}, sign(jwt.SigningMethodRS256, rsaKey, "e1"), false},
		{"issuer required and missing", JWTConfig{SecretFile: secretFile, Issuer: "https://id.example"}, sign(jwt.SigningMethodHS256, []byte(testSecret), ""), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := New(Config{
				Upstreams: map[providers.Cohort][]string{"stable": {"http://127.0.0.1:1"}, "canary": {"http://127.0.0.1:3"}},
				Rules:     []Rule{{Match: Match{Claim: "role", Equals: []string{"beta-tester"}}, Cohort: providers.Canary}},
				JWT:       tc.jwt,
			})
			if err != nil {
				t.Fatal(err)
			}
			r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
			r.RemoteAddr = "127.0.0.1:1"
			r.Header.Set("Authorization", "Bearer "+tc.token)
			ci, byRule := p.decide(p.table.Load(), r)
			if got := ci == iCanary && byRule; got != tc.want {
				t.Fatalf("token trusted = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConsumerHashKeyNeedsVerifiedToken(t *testing.T) {
	t.Parallel()
	p, err := New(Config{Upstreams: map[providers.Cohort][]string{"stable": {"http://127.0.0.1:1"}}, HashOn: "consumer", JWT: JWTConfig{Secret: testSecret}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, token, want string }{
		{"verified sub", hs256(t, testSecret, jwt.MapClaims{"sub": "alice"}), "u:alice"},
		{"unverified falls back to ip", hs256(t, "x", jwt.MapClaims{"sub": "alice"}), "ip:192.0.2.1"},
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		r.RemoteAddr = "192.0.2.1:9"
		r.Header.Set("Authorization", "Bearer "+tc.token)
		if key, _ := p.stickyKey(&reqInfo{r: r, jwt: p.jwt}); key != tc.want {
			t.Errorf("%s: key %q, want %q", tc.name, key, tc.want)
		}
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	t.Parallel()
	stable := map[providers.Cohort][]string{"stable": {"http://127.0.0.1:1"}}
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"no stable", Config{}, "upstreams.stable"},
		{"bad upstream", Config{Upstreams: map[providers.Cohort][]string{"stable": {"ftp://x"}}}, "upstreams.stable"},
		{"bad cohort", Config{Upstreams: map[providers.Cohort][]string{"stable": {"http://a:1"}, "blue": {"http://a:2"}}}, "upstreams"},
		{"split without canary", Config{Upstreams: stable, Split: providers.Split{Canary: 10}}, "split"},
		{"bad hash", Config{Upstreams: stable, HashOn: "header:"}, "hashOn"},
		{"consumer without jwt", Config{Upstreams: stable, HashOn: "consumer"}, "hashOn"},
		{"rule without source", Config{Upstreams: stable, Rules: []Rule{{Cohort: "canary"}}}, "rules[0].match"},
		{"rule two sources", Config{Upstreams: stable, Rules: []Rule{{Match: Match{Header: "a", Query: "b"}, Cohort: "canary"}}}, "rules[0].match"},
		{"rule bad regex", Config{Upstreams: stable, Rules: []Rule{{Match: Match{Header: "a", Regex: "("}, Cohort: "canary"}}}, "rules[0].match.regex"},
		{"rule bad cohort", Config{Upstreams: stable, Rules: []Rule{{Match: Match{Header: "a"}, Cohort: "blue"}}}, "rules[0].cohort"},
		{"rule bad cidr", Config{Upstreams: stable, Rules: []Rule{{Match: Match{CIDR: []string{"10.0.0.0/99"}}, Cohort: "canary"}}}, "rules[0].match.cidr[0]"},
		{"claim without jwt", Config{Upstreams: stable, Rules: []Rule{{Match: Match{Claim: "sub"}, Cohort: "canary"}}}, "rules[0].match.claim"},
		{"deny bad", Config{Upstreams: stable, Deny: []Match{{}}}, "deny[0]"},
		{"jwt missing file", Config{Upstreams: stable, JWT: JWTConfig{PublicKeyFiles: []string{"/nonexistent.pem"}}}, "jwt.publicKeyFiles[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.cfg)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field || !ce.InvalidInput() {
				t.Fatalf("New error = %v, want ConfigError for field %q", err, tc.field)
			}
		})
	}
}
