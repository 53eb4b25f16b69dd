package kong

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOpenLogSecret: the receiver gets the rollout's secret (or the user's, for a manual plugin),
// the plugin canaryctl adds carries it, and no log line carries it; a manual plugin's owner is told
// which header to add and where the secret is.
func TestOpenLogSecret(t *testing.T) {
	t.Parallel()
	const rolloutSecret = "rollout-secret-0123456789abcdefghij"
	const userSecret = "user-secret-0123456789abcdefghijkl"
	userFile := filepath.Join(t.TempDir(), "kong-log")
	if err := os.WriteFile(userFile, []byte(userSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		log    LogSpec
		env    map[string]string
		secret string
		said   []string // in the log
	}{
		{name: "plugin added by canaryctl", secret: rolloutSecret},
		{name: "manual, generated secret", log: LogSpec{Manual: true}, secret: rolloutSecret, said: []string{"Authorization", "Bearer <the contents of /state/kong-log.secret>"}},
		{name: "manual, secret file", log: LogSpec{Manual: true, SecretFile: userFile}, secret: userSecret, said: []string{"Bearer <the contents of " + userFile + ">"}},
		{name: "manual, secret env", log: LogSpec{Manual: true, SecretEnv: "MY_LOG_SECRET"}, env: map[string]string{"MY_LOG_SECRET": userSecret}, secret: userSecret, said: []string{"Bearer <$MY_LOG_SECRET>"}},
		{name: "manual, default env", log: LogSpec{Manual: true}, env: map[string]string{DefaultLogSecretEnv: userSecret}, secret: userSecret, said: []string{"Bearer <$" + DefaultLogSecretEnv + ">"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			var logs bytes.Buffer
			noWait := time.Duration(0) // an explicit 0: no propagation wait
			spec := &Spec{Admin: f.kong.AdminURL(), Service: "web", Propagation: &noWait, Log: &tc.log}
			o, err := Open(t.Context(), OpenConfig{Spec: spec, RolloutID: "web", WithLog: true, LogSecret: rolloutSecret,
				LogSecretPath: "/state/kong-log.secret", Getenv: func(k string) string { return tc.env[k] },
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(o.Close)
			if got := o.Log.authorization(); got != "Bearer "+tc.secret {
				t.Fatalf("the receiver wants another secret than %s's", tc.name)
			}
			if !tc.log.Manual {
				setUp(t, o.Router, f)
				var headers any
				for _, p := range f.kong.Plugins() {
					if p["name"] == "http-log" {
						headers = p["config"].(map[string]any)["headers"]
					}
				}
				if h, _ := headers.(map[string]any); h["Authorization"] != "Bearer "+tc.secret {
					t.Fatalf("the http-log plugin's headers are %v, want the rollout's Authorization", headers)
				}
				if err := o.Router.Rollback(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			out := logs.String()
			if strings.Contains(out, tc.secret) {
				t.Fatalf("the secret is in the log:\n%s", out)
			}
			for _, want := range tc.said {
				if !strings.Contains(out, want) {
					t.Errorf("the log lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestLogSpecProblems(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		log   LogSpec
		field string
	}{
		{"tls without key", LogSpec{TLS: &LogTLSSpec{CertFile: "c.pem"}}, "log.tls"},
		{"two secrets", LogSpec{SecretFile: "f", SecretEnv: "E"}, "log.secretEnv"},
		{"http endpoint with tls", LogSpec{Endpoint: "http://10.0.0.5:9900/", TLS: &LogTLSSpec{CertFile: "c", KeyFile: "k"}}, "log.endpoint"},
	} {
		spec := &Spec{Admin: "http://127.0.0.1:8001", Service: "web", Log: &tc.log}
		found := false
		for _, p := range spec.Problems() {
			found = found || p.Field == tc.field
		}
		if !found {
			t.Errorf("%s: no problem for %s in %v", tc.name, tc.field, spec.Problems())
		}
	}
}

// TestOpenLogClientKey: the kong-log receiver takes as each request's client what Kong hashes on
// in the spec's sticky mode (hash_on, or the canary plugin's hash), so that the sequential tests
// judge the unit Kong keeps on one cohort; without a sticky mode, the consumer or client_ip.
func TestOpenLogClientKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		spec           Spec
		header, cookie string
		ip             bool
	}{
		{name: "targets", spec: Spec{Mode: ModeTargets}},
		{name: "hash on header", spec: Spec{Mode: ModeHash, HashOn: "header", HashOnHeader: "X-User-ID"}, header: "x-user-id"},
		{name: "hash on cookie", spec: Spec{Mode: ModeHash, HashOn: "cookie", HashOnCookie: "cohort"}, cookie: "cohort"},
		{name: "hash on ip", spec: Spec{Mode: ModeHash, HashOn: "ip"}, ip: true},
		{name: "hash on consumer", spec: Spec{Mode: ModeHash, HashOn: "consumer"}},
		{name: "canary plugin on header", spec: Spec{Mode: ModeCanaryPlugin, CanaryHash: "header", CanaryHashHeader: "X-Team"}, header: "x-team"},
		{name: "canary plugin on ip", spec: Spec{Mode: ModeCanaryPlugin, CanaryHash: "ip"}, ip: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec, err := openLogReceiver(OpenConfig{Spec: &tc.spec, LogSecret: testSecret}, &LogSpec{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rec.Close() })
			if c := rec.cfg; c.ClientHeader != tc.header || c.ClientCookie != tc.cookie || c.ClientIP != tc.ip {
				t.Errorf("client key from header %q cookie %q ip %v, want %q %q %v", c.ClientHeader, c.ClientCookie, c.ClientIP, tc.header, tc.cookie, tc.ip)
			}
		})
	}
}
