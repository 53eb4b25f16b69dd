package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWTConfig says how to find and verify the JSON Web Token that claim rules and the "consumer"
// hash key read. A token is trusted only after its signature verifies with one of the configured
// keys (and its exp/nbf/iss/aud checks pass); an unverifiable token is treated as absent.
type JWTConfig struct {
	// Header carrying "Bearer <token>"; default Authorization.
	Header string `yaml:"header,omitempty"`
	// Cookie holding the bare token, tried when the header has none.
	Cookie string `yaml:"cookie,omitempty"`
	// HS256 shared secret, inline or from a file (trailing newline trimmed).
	Secret     string `yaml:"secret,omitempty"`
	SecretFile string `yaml:"secretFile,omitempty"`
	// PEM files with RSA (RS256) or ECDSA P-256 (ES256) public keys.
	PublicKeyFiles []string `yaml:"publicKeyFiles,omitempty"`
	// A JWKS file (RFC 7517) with RSA and EC P-256 keys; tokens with a kid use the matching key.
	JWKSFile string `yaml:"jwksFile,omitempty"`
	// Optional required issuer and audience.
	Issuer   string `yaml:"issuer,omitempty"`
	Audience string `yaml:"audience,omitempty"`
	// ConsumerClaim is the claim used as the "consumer" hash key; default sub.
	ConsumerClaim string `yaml:"consumerClaim,omitempty"`
}

func (c JWTConfig) configured() bool {
	return c.Secret != "" || c.SecretFile != "" || len(c.PublicKeyFiles) > 0 || c.JWKSFile != ""
}

type jwtVerifier struct {
	header        string
	cookie        string
	secret        []byte
	pubKeys       []any          // *rsa.PublicKey, *ecdsa.PublicKey
	kidKeys       map[string]any // from JWKS
	parser        *jwt.Parser
	consumerClaim string
}

func newJWTVerifier(c JWTConfig) (*jwtVerifier, error) {
	v := &jwtVerifier{header: c.Header, cookie: c.Cookie, consumerClaim: c.ConsumerClaim, kidKeys: map[string]any{}}
	if v.header == "" {
		v.header = "Authorization"
	}
	v.header = http.CanonicalHeaderKey(v.header)
	if v.consumerClaim == "" {
		v.consumerClaim = "sub"
	}
	switch {
	case c.Secret != "" && c.SecretFile != "":
		return nil, configErrorf("jwt.secret", "set either secret or secretFile, not both")
	case c.Secret != "":
		v.secret = []byte(c.Secret)
	case c.SecretFile != "":
		b, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return nil, configErrorf("jwt.secretFile", "read: %v", err)
		}
		v.secret = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(v.secret) == 0 {
			return nil, configErrorf("jwt.secretFile", "%s is empty", c.SecretFile)
		}
	}
	for i, f := range c.PublicKeyFiles {
		field := fmt.Sprintf("jwt.publicKeyFiles[%d]", i)
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, configErrorf(field, "read: %v", err)
		}
		if k, err := jwt.ParseRSAPublicKeyFromPEM(b); err == nil {
			v.pubKeys = append(v.pubKeys, k)
			continue
		}
		k, err := jwt.ParseECPublicKeyFromPEM(b)
		if err != nil {
			return nil, configErrorf(field, "%s holds no PEM RSA or ECDSA public key", f)
		}
		if k.Curve != elliptic.P256() {
			return nil, configErrorf(field, "%s: only P-256 (ES256) ECDSA keys are supported", f)
		}
		v.pubKeys = append(v.pubKeys, k)
	}
	if c.JWKSFile != "" {
		b, err := os.ReadFile(c.JWKSFile)
		if err != nil {
			return nil, configErrorf("jwt.jwksFile", "read: %v", err)
		}
		keys, err := ParseJWKS(b)
		if err != nil {
			return nil, configErrorf("jwt.jwksFile", "%v", err)
		}
		for kid, k := range keys {
			if kid == "" {
				v.pubKeys = append(v.pubKeys, k)
			} else {
				v.kidKeys[kid] = k
			}
		}
	}
	var methods []string
	if v.secret != nil {
		methods = append(methods, "HS256")
	}
	if len(v.pubKeys) > 0 || len(v.kidKeys) > 0 {
		methods = append(methods, "RS256", "ES256")
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithLeeway(30 * time.Second)}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	if c.Audience != "" {
		opts = append(opts, jwt.WithAudience(c.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// keyfunc returns the keys a token may be verified with; the parser already rejected any
// algorithm not in WithValidMethods, so an RSA key is never offered as an HMAC secret.
func (v *jwtVerifier) keyfunc(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case "HS256":
		if v.secret == nil {
			return nil, fmt.Errorf("no HS256 secret configured")
		}
		return v.secret, nil
	case "RS256", "ES256":
		if kid, ok := t.Header["kid"].(string); ok && kid != "" {
			if k, ok := v.kidKeys[kid]; ok {
				return k, nil
			}
		}
		var set jwt.VerificationKeySet
		for _, k := range v.pubKeys {
			switch k.(type) {
			case *rsa.PublicKey:
				if t.Method.Alg() == "RS256" {
					set.Keys = append(set.Keys, k)
				}
			case *ecdsa.PublicKey:
				if t.Method.Alg() == "ES256" {
					set.Keys = append(set.Keys, k)
				}
			}
		}
		if len(set.Keys) == 0 {
			return nil, fmt.Errorf("no %s key configured", t.Method.Alg())
		}
		return set, nil
	}
	return nil, fmt.Errorf("algorithm %s not accepted", t.Method.Alg())
}

// token extracts the raw token from the header ("Bearer x") or the cookie.
func (v *jwtVerifier) token(r *http.Request) string {
	if h := r.Header.Get(v.header); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:])
		}
	}
	if v.cookie != "" {
		if c, err := r.Cookie(v.cookie); err == nil {
			return c.Value
		}
	}
	return ""
}

// verify returns the claims of a verified token, or false when there is none or it does not verify.
func (v *jwtVerifier) verify(r *http.Request) (map[string]any, bool) {
	raw := v.token(r)
	if raw == "" {
		return nil, false
	}
	claims := jwt.MapClaims{}
	t, err := v.parser.ParseWithClaims(raw, claims, v.keyfunc)
	if err != nil || !t.Valid {
		return nil, false
	}
	return claims, true
}

// ParseJWKS parses a JSON Web Key Set (RFC 7517) with the standard library and returns its RSA
// and EC P-256 public keys by kid ("" for keys without one is not allowed twice). Keys of other
// types, or with "use" other than "sig", are skipped.
func ParseJWKS(b []byte) (map[string]any, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			N   string `json:"n"`
			E   string `json:"e"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	out := map[string]any{}
	dec := base64.RawURLEncoding
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if _, dup := out[k.Kid]; dup {
			return nil, fmt.Errorf("JWKS key %d: duplicate kid %q", i, k.Kid)
		}
		switch k.Kty {
		case "RSA":
			n, err1 := dec.DecodeString(k.N)
			e, err2 := dec.DecodeString(k.E)
			if err1 != nil || err2 != nil || len(n) < 128 || len(e) == 0 || len(e) > 4 {
				return nil, fmt.Errorf("JWKS key %d (kid %q): bad RSA n or e", i, k.Kid)
			}
			var ev int
			for _, c := range e {
				ev = ev<<8 | int(c)
			}
			if ev < 3 {
				return nil, fmt.Errorf("JWKS key %d (kid %q): bad RSA exponent", i, k.Kid)
			}
			out[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: ev}
		case "EC":
			if k.Crv != "P-256" {
				continue
			}
			x, err1 := dec.DecodeString(k.X)
			y, err2 := dec.DecodeString(k.Y)
			if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
				return nil, fmt.Errorf("JWKS key %d (kid %q): bad EC x or y", i, k.Kid)
			}
			pt := append(append([]byte{4}, x...), y...)
			pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
			if err != nil {
				return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i, k.Kid, err)
			}
			out[k.Kid] = pk
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("JWKS holds no RSA or EC P-256 signing key")
	}
	return out, nil
}
