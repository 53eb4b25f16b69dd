package prometheus

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cfg       Config
		wantField string
	}{
		{"missing url", Config{}, "url"},
		{"not http", Config{URL: "ftp://x"}, "url"},
		{"no host", Config{URL: "http://"}, "url"},
		{"token and file", Config{URL: "http://h", BearerToken: "a", BearerTokenFile: "f"}, "bearerTokenFile"},
		{"basic and bearer", Config{URL: "http://h", BearerToken: "a", BasicAuth: BasicAuth{User: "u"}}, "basicAuth"},
		{"password without user", Config{URL: "http://h", BasicAuth: BasicAuth{Password: "p"}}, "basicAuth.user"},
		{"password and file", Config{URL: "http://h", BasicAuth: BasicAuth{User: "u", Password: "p", PasswordFile: "f"}}, "basicAuth.passwordFile"},
		{"cert without key", Config{URL: "http://h", TLS: TLS{CertFile: "c"}}, "tls.keyFile"},
		{"missing CA file", Config{URL: "http://h", TLS: TLS{CAFile: "/nonexistent/ca.pem"}}, "tls.caFile"},
		{"missing client cert", Config{URL: "http://h", TLS: TLS{CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"}}, "tls.certFile"},
		{"bad cohort label", Config{URL: "http://h", CohortLabel: "my-label"}, "cohortLabel"},
		{"bad cohort value key", Config{URL: "http://h", CohortValues: map[providers.Cohort]string{"blue": "x"}}, "cohortValues"},
		{"quote in service", Config{URL: "http://h", Service: `a"b`}, "service"},
		{"negative timeout", Config{URL: "http://h", Timeout: -1}, "timeout"},
		{"unknown query set", Config{URL: "http://h", QuerySet: "graphite"}, "querySet"},
		{"unknown app metric", Config{URL: "http://h", QuerySet: "app-labels", AppMetric: "requests"}, "appMetric"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.cfg)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.wantField || !ce.InvalidInput() {
				t.Fatalf("New() err = %v, want a ConfigError on field %q", err, tc.wantField)
			}
		})
	}
}

func TestUnknownQuerySetListsValidNames(t *testing.T) {
	t.Parallel()
	_, err := New(Config{URL: "http://h", QuerySet: "kong"})
	if err == nil || !strings.Contains(err.Error(), "(valid: app-labels, builtin)") || !strings.Contains(err.Error(), "does not label by upstream target") {
		t.Fatalf("err = %v, want the valid names and the Kong explanation", err)
	}
}

func TestAuthAndHeaders(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		mod   func(*Config)
		check func(r *http.Request) string // returns a complaint, "" if fine
	}{
		{"bearer token", func(c *Config) { c.BearerToken = "tok" }, func(r *http.Request) string {
			return expect(r.Header.Get("Authorization"), "Bearer tok")
		}},
		{"bearer token file, trimmed", func(c *Config) { c.BearerTokenFile = tokenFile }, func(r *http.Request) string {
			return expect(r.Header.Get("Authorization"), "Bearer file-token")
		}},
		{"basic auth", func(c *Config) { c.BasicAuth = BasicAuth{User: "u", Password: "p"} }, func(r *http.Request) string {
			u, p, _ := r.BasicAuth()
			return expect(u+":"+p, "u:p")
		}},
		{"basic auth password file", func(c *Config) { c.BasicAuth = BasicAuth{User: "u", PasswordFile: pwFile} }, func(r *http.Request) string {
			u, p, _ := r.BasicAuth()
			return expect(u+":"+p, "u:s3cret")
		}},
		{"extra headers", func(c *Config) { c.Headers = map[string]string{"X-Scope-OrgID": "tenant-1"} }, func(r *http.Request) string {
			return expect(r.Header.Get("X-Scope-OrgID"), "tenant-1")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t, func(_ providers.Cohort, _ int, _ string, w http.ResponseWriter, r *http.Request) {
				if msg := tc.check(r); msg != "" {
					writeJSON(w, 401, apiErrorBody("unauthorized", msg))
					return
				}
				writeJSON(w, 200, matrixBody(testStart, testStep, series{at: map[int]string{0: "1"}}))
			})
			p, _ := newTestProvider(t, f.srv.URL, tc.mod)
			if _, err := p.Pair(t.Context(), latency, testWindow); err != nil {
				t.Fatalf("Pair: %v", err)
			}
		})
	}
}

func expect(got, want string) string {
	if got != want {
		return "got " + got + ", want " + want
	}
	return ""
}

func TestMissingTokenFileIsNotRetried(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, func(_ providers.Cohort, _ int, _ string, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, matrixBody(testStart, testStep))
	})
	p, _ := newTestProvider(t, f.srv.URL, func(c *Config) { c.BearerTokenFile = filepath.Join(t.TempDir(), "absent") })
	_, err := p.Pair(t.Context(), latency, testWindow)
	var qe *QueryError
	if !errors.As(err, &qe) || qe.Attempts != 1 || !strings.Contains(err.Error(), "read bearer token file") {
		t.Fatalf("err = %v, want one attempt failing to read the token file", err)
	}
}

func TestTLSCAFile(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, matrixBody(testStart, testStep, series{at: map[int]string{0: "1"}}))
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("trusted through CAFile", func(t *testing.T) {
		t.Parallel()
		p, _ := newTestProvider(t, srv.URL, func(c *Config) { c.TLS.CAFile = ca; c.TLS.ServerName = "example.com" })
		if _, err := p.Pair(t.Context(), latency, testWindow); err != nil {
			t.Fatalf("Pair: %v", err)
		}
	})
	t.Run("unknown authority without it", func(t *testing.T) {
		t.Parallel()
		p, _ := newTestProvider(t, srv.URL, func(c *Config) { c.Retries = -1 })
		_, err := p.Pair(t.Context(), latency, testWindow)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v, want a certificate error", err)
		}
	})
}

// TestTLSClientCertificate: a server that requires a client certificate accepts the one given by
// CertFile/KeyFile and rejects a client without it (not retried: nothing would change).
func TestTLSClientCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "canaryctl"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	clientCert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(clientCert)

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, matrixBody(testStart, testStep, series{at: map[int]string{0: "1"}}))
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	p, _ := newTestProvider(t, srv.URL, func(c *Config) { c.TLS = TLS{CAFile: ca, CertFile: certFile, KeyFile: keyFile} })
	if _, err := p.Pair(t.Context(), latency, testWindow); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	p, _ = newTestProvider(t, srv.URL, func(c *Config) { c.TLS = TLS{CAFile: ca}; c.Retries = -1 })
	if _, err := p.Pair(t.Context(), latency, testWindow); err == nil {
		t.Fatal("without a client certificate the server must refuse")
	}
}

// TestNetworkErrorsAreRetried: a refused connection is retried Retries times.
func TestNetworkErrorsAreRetried(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	p, logs := newTestProvider(t, url, func(c *Config) { c.Retries = 2 })
	_, err := p.Pair(t.Context(), latency, testWindow)
	var qe *QueryError
	if !errors.As(err, &qe) || qe.Attempts != 3 || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want 3 attempts ending in connection refused", err)
	}
	if n := strings.Count(logs.String(), "retrying"); n != 4 { // 2 retries x 2 cohorts
		t.Errorf("%d retry log lines, want 4:\n%s", n, logs.String())
	}
}
