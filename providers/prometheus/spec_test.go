package prometheus

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestSpecProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		yaml  string
		field string // "" for no problem
		msg   string
	}{
		{"minimal", "url: http://127.0.0.1:9090", "", ""},
		{"full", `url: https://mimir.example/prometheus
tokenFile: /run/secrets/prom
headers: {X-Scope-OrgID: shop}
tls: {caFile: /etc/ca.pem, serverName: mimir}
timeout: 10s
retries: 3
querySet: app-labels
cohortLabel: track
cohortValues: {canary: v2}
selector: namespace="shop"
appMetric: http_request_duration_seconds
minWindow: 2m`, "", ""},
		{"missing url", "querySet: builtin", "url", "is required"},
		{"token twice", "url: http://h\ntokenEnv: T\ntokenFile: f", "tokenFile", "not both"},
		{"basic auth without user", "url: http://h\nbasicAuth: {passwordEnv: P}", "basicAuth.user", "required"},
		{"basic auth and token", "url: http://h\ntokenEnv: T\nbasicAuth: {user: u}", "basicAuth", "not both"},
		{"negative retries", "url: http://h\nretries: -1", "retries", "negative"},
		{"half a client cert", "url: http://h\ntls: {certFile: c.pem}", "tls.keyFile", "both"},
		{"unknown query set", "url: http://h\nquerySet: kong", "querySet", "valid: app-labels, builtin"},
		{"bad cohort", "url: http://h\ncohortValues: {blue: x}", "cohortValues", "unknown cohort"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var s Spec
			dec := yaml.NewDecoder(strings.NewReader(tc.yaml))
			dec.KnownFields(true)
			if err := dec.Decode(&s); err != nil {
				t.Fatal(err)
			}
			probs := s.Problems()
			if tc.field == "" {
				if len(probs) > 0 {
					t.Fatalf("problems %v, want none", probs)
				}
				return
			}
			for _, p := range probs {
				if p.Field == tc.field && strings.Contains(p.Err.Error(), tc.msg) {
					return
				}
			}
			t.Fatalf("problems %v, want one on %q containing %q", probs, tc.field, tc.msg)
		})
	}
}

func TestSpecConfigReadsSecretsFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PROM_TOKEN": "tok", "PROM_PW": "pw"}
	s := Spec{URL: "http://h", TokenEnv: "PROM_TOKEN", CohortValues: map[string]string{"canary": "v2"}}
	cfg, err := s.Config("shop", func(k string) string { return env[k] }, nil)
	if err != nil || cfg.BearerToken != "tok" || cfg.Service != "shop" || cfg.CohortValues["canary"] != "v2" {
		t.Fatalf("Config = %+v, %v", cfg, err)
	}
	b := Spec{URL: "http://h", BasicAuth: &BasicAuthSpec{User: "u", PasswordEnv: "PROM_PW"}}
	if cfg, err := b.Config("shop", func(k string) string { return env[k] }, nil); err != nil || cfg.BasicAuth.Password != "pw" {
		t.Fatalf("basic auth Config = %+v, %v", cfg.BasicAuth, err)
	}
	s.TokenEnv = "UNSET"
	if _, err := s.Config("shop", func(k string) string { return env[k] }, nil); err == nil || !strings.Contains(err.Error(), "UNSET is empty") {
		t.Fatalf("err = %v, want the empty variable named", err)
	}
}
