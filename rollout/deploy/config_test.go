package deploy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	okStatic := Target{Type: Static, Addresses: []string{"http://10.0.0.7:8080"}}
	okExec := Target{Type: Exec, Command: "kubectl apply -f {{.Cohort}}.yaml", Teardown: "kubectl delete -f {{.Cohort}}.yaml",
		Addresses: []string{"http://{{.Service}}-{{.Cohort}}:{{.Port}}"}}
	okProcess := Target{Type: Process, Command: "{{.Executable}}", Args: []string{"--port", "{{.Port}}"}}
	with := func(t Target, f func(*Target)) Target { f(&t); return t }
	tests := []struct {
		name   string
		cfg    Config
		fields []string // field paths of the errors, in order; none means valid
		hint   string   // part of the message
	}{
		{name: "static and process", cfg: Config{Baseline: okStatic, Canary: okProcess}},
		{name: "exec both", cfg: Config{Baseline: okExec, Canary: okExec}},
		{name: "static with probe", cfg: Config{Baseline: with(okStatic, func(t *Target) {
			t.Readiness = &Probe{Path: "/healthz", Status: 204, Interval: time.Second, Timeout: time.Second}
		}), Canary: okStatic}},
		{name: "missing types", cfg: Config{}, fields: []string{"deploy.baseline.type", "deploy.canary.type"}, hint: "use one of static, exec, process"},
		{name: "unknown type", cfg: Config{Baseline: okStatic, Canary: Target{Type: "docker"}},
			fields: []string{"deploy.canary.type"}, hint: `unknown type "docker"`},
		{name: "static without addresses", cfg: Config{Baseline: Target{Type: Static}, Canary: okStatic},
			fields: []string{"deploy.baseline.addresses"}, hint: "required for type static"},
		{name: "static bad scheme", cfg: Config{Baseline: okStatic, Canary: with(okStatic, func(t *Target) {
			t.Addresses = []string{"http://a:1", "10.0.0.7:8080"}
		})}, fields: []string{"deploy.canary.addresses[1]"}, hint: "is not a URL"},
		{name: "static ftp", cfg: Config{Baseline: okStatic, Canary: with(okStatic, func(t *Target) {
			t.Addresses = []string{"ftp://a:1"}
		})}, fields: []string{"deploy.canary.addresses[0]"}, hint: "must start with http:// or https://"},
		{name: "static no host", cfg: Config{Baseline: okStatic, Canary: with(okStatic, func(t *Target) {
			t.Addresses = []string{"http://:8080"}
		})}, fields: []string{"deploy.canary.addresses[0]"}, hint: "has no host"},
		{name: "static with command", cfg: Config{Baseline: okStatic, Canary: with(okStatic, func(t *Target) { t.Command = "x" })},
			fields: []string{"deploy.canary.command"}, hint: "not used by type static"},
		{name: "exec without command", cfg: Config{Baseline: okStatic, Canary: with(okExec, func(t *Target) { t.Command = " " })},
			fields: []string{"deploy.canary.command"}, hint: "required for type exec; e.g."},
		{name: "exec without teardown", cfg: Config{Baseline: okStatic, Canary: with(okExec, func(t *Target) { t.Teardown = "" })},
			fields: []string{"deploy.canary.teardown"}, hint: "required for type exec"},
		{name: "exec without addresses", cfg: Config{Baseline: okStatic, Canary: with(okExec, func(t *Target) { t.Addresses = nil })},
			fields: []string{"deploy.canary.addresses"}},
		{name: "exec misspelt key", cfg: Config{Baseline: okStatic, Canary: with(okExec, func(t *Target) { t.Command = "helm install {{.Imgae}}" })},
			fields: []string{"deploy.canary.command"}, hint: "Imgae"},
		{name: "exec unknown var", cfg: Config{Baseline: okStatic, Canary: with(okExec, func(t *Target) { t.Teardown = "x {{.Vars.ns}}" })},
			fields: []string{"deploy.canary.teardown"}, hint: "ns"},
		{name: "exec known var", cfg: Config{Baseline: okStatic, Canary: with(okExec, func(t *Target) {
			t.Teardown = "x {{.Vars.ns}} {{quote .Image}}"
			t.Vars = map[string]string{"ns": "prod"}
		})}},
		{name: "exec bad template", cfg: Config{Baseline: okStatic, Canary: with(okExec, func(t *Target) { t.Command = "x {{.Cohort" })},
			fields: []string{"deploy.canary.command"}, hint: "parse template"},
		{name: "exec address renders to non-URL", cfg: Config{Baseline: okStatic, Canary: with(okExec, func(t *Target) {
			t.Addresses = []string{"{{.Service}}:{{.Port}}"}
		})}, fields: []string{"deploy.canary.addresses[0]"}, hint: "http://"},
		{name: "exec bad port", cfg: Config{Baseline: okStatic, Canary: with(okExec, func(t *Target) { t.Port = 70000 })},
			fields: []string{"deploy.canary.port"}, hint: "1..65535"},
		{name: "exec with args", cfg: Config{Baseline: okStatic, Canary: with(okExec, func(t *Target) { t.Args = []string{"a"} })},
			fields: []string{"deploy.canary.args"}, hint: "remove it"},
		{name: "process without command", cfg: Config{Baseline: with(okProcess, func(t *Target) { t.Command = "" }), Canary: okProcess},
			fields: []string{"deploy.baseline.command"}, hint: "required for type process"},
		{name: "process bad arg", cfg: Config{Baseline: okStatic, Canary: with(okProcess, func(t *Target) { t.Args = []string{"ok", "{{.Prot}}"} })},
			fields: []string{"deploy.canary.args[1]"}, hint: "Prot"},
		{name: "process bad env", cfg: Config{Baseline: okStatic, Canary: with(okProcess, func(t *Target) { t.Env = map[string]string{"A": "{{.X}}"} })},
			fields: []string{"deploy.canary.env.A"}},
		{name: "process bad env name", cfg: Config{Baseline: okStatic, Canary: with(okProcess, func(t *Target) { t.Env = map[string]string{"A=B": "x"} })},
			fields: []string{"deploy.canary.env"}, hint: "not an environment variable name"},
		{name: "process too many instances", cfg: Config{Baseline: okStatic, Canary: with(okProcess, func(t *Target) { t.Instances = 17 })},
			fields: []string{"deploy.canary.instances"}, hint: "1..16"},
		{name: "process with addresses", cfg: Config{Baseline: okStatic, Canary: with(okProcess, func(t *Target) { t.Addresses = []string{"http://a"} })},
			fields: []string{"deploy.canary.addresses"}, hint: "not used by type process"},
		{name: "negative durations", cfg: Config{Baseline: okStatic, Canary: with(okProcess, func(t *Target) {
			t.Timeout, t.GracePeriod = -time.Second, -time.Second
		})}, fields: []string{"deploy.canary.timeout", "deploy.canary.gracePeriod"}, hint: "negative"},
		{name: "bad probe", cfg: Config{Baseline: okStatic, Canary: with(okProcess, func(t *Target) {
			t.Readiness = &Probe{Path: "healthz", Status: 42, Interval: -1, Timeout: -1}
		})}, fields: []string{"deploy.canary.readiness.path", "deploy.canary.readiness.status",
			"deploy.canary.readiness.interval", "deploy.canary.readiness.timeout"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			got := fields(t, err)
			if strings.Join(got, " ") != strings.Join(tc.fields, " ") {
				t.Fatalf("error fields = %q, want %q (error: %v)", got, tc.fields, err)
			}
			if err == nil {
				return
			}
			var inv interface{ InvalidInput() bool }
			if !errors.As(err, &inv) || !inv.InvalidInput() {
				t.Errorf("error %v does not mark invalid input", err)
			}
			if !strings.Contains(err.Error(), tc.hint) {
				t.Errorf("error %q does not contain %q", err, tc.hint)
			}
		})
	}
}

// fields returns the field paths of the *ConfigErrors joined in err.
func fields(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []string
	for _, e := range errs {
		if e == nil {
			continue
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			out = append(out, fields(t, errors.Join(j.Unwrap()...))...)
			continue
		}
		var ce *ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("error %v is not a *ConfigError", e)
		}
		out = append(out, ce.Field)
	}
	return out
}

func TestConfigYAML(t *testing.T) {
	t.Parallel()
	const doc = `
baseline:
  type: static
  addresses: ["http://10.0.0.7:8080"]
  readiness: {path: /healthz, status: 204, interval: 250ms, timeout: 2s}
canary:
  type: process
  command: "{{.Executable}}"
  args: [demo-service, --port, "{{.Port}}", --version, "{{.Version}}"]
  version: v2
  instances: 2
  timeout: 30s
  gracePeriod: 3s
  env: {MODE: "{{.Vars.mode}}"}
  vars: {mode: fast}
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := *c.Baseline.Readiness; got != (Probe{Path: "/healthz", Status: 204, Interval: 250 * time.Millisecond, Timeout: 2 * time.Second}) {
		t.Errorf("baseline readiness = %+v", got)
	}
	if c.Canary.Timeout != 30*time.Second || c.Canary.GracePeriod != 3*time.Second || c.Canary.Instances != 2 {
		t.Errorf("canary = %+v", c.Canary)
	}
}

// FuzzConfig: any YAML decodes and validates without panicking, and every error is a *ConfigError
// naming a deploy.* field.
func FuzzConfig(f *testing.F) {
	f.Add("baseline: {type: static, addresses: [\"http://a:1\"]}\ncanary: {type: process, command: x, args: [\"{{.Port}}\"]}")
	f.Add("canary: {type: exec, command: \"{{.Cohort\", teardown: y, addresses: [\"{{.Service}}\"]}")
	f.Add("baseline: {type: process, command: \"{{quote .Image}}\", readiness: {path: x, status: 9}}")
	f.Fuzz(func(t *testing.T, doc string) {
		var c Config
		if yaml.Unmarshal([]byte(doc), &c) != nil {
			return
		}
		err := c.Validate()
		for _, f := range fields(t, err) {
			if !strings.HasPrefix(f, "deploy.baseline") && !strings.HasPrefix(f, "deploy.canary") {
				t.Fatalf("field %q outside deploy.baseline/canary", f)
			}
		}
	})
}
