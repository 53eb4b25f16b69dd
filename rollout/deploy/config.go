// Package deploy starts and stops the baseline and canary deployments of a rollout.
//
// Three kinds of target sit behind one Deployer:
//
//   - static: addresses that are already running (nothing is started or stopped);
//   - exec: templated shell commands for deploy and teardown (kubectl apply, helm, docker run...),
//     with an address template and an HTTP readiness probe;
//   - process: local executables started on free loopback ports (or handed their listening socket,
//     listenFD), logs captured to files, stopped with SIGTERM then SIGKILL of the whole process group.
//
// Once ready, a deployment is watched until it is torn down (Deployer.Alive): a process that exits,
// a readiness probe failing readiness.failureThreshold times in a row, or an exec target's status
// command failing as often marks it not alive, and the rollout engine rolls back.
//
// The package knows nothing of the rollout engine: the engine imports it and calls Deploy and Teardown.
package deploy

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"text/template"
	"time"
)

// Type names a kind of target.
type Type string

// The target types.
const (
	Static  Type = "static"
	Exec    Type = "exec"
	Process Type = "process"
)

// Types lists the valid target types.
var Types = []Type{Static, Exec, Process}

// Config says how baseline and canary are deployed. It is the `deploy:` section of a rollout spec.
type Config struct {
	Baseline Target `yaml:"baseline" json:"baseline"`
	Canary   Target `yaml:"canary" json:"canary"`
}

// Target says how one cohort is deployed.
//
// Templates (exec command, teardown and addresses; process command, args and env) are Go text/template
// strings; a key that does not exist is an error. They see:
//
//	.Cohort      baseline or canary
//	.Service     the service name of the rollout
//	.Version     Target.Version
//	.Image       Target.Image
//	.Port        a free loopback port (process: one per instance; exec: Target.Port or a free one)
//	.Instance    the instance number, from 0 (process only)
//	.Executable  the path of the running canaryctl binary
//	.Vars        Target.Vars
//
// and the function quote, which quotes a string for a POSIX shell: {{quote .Image}}.
type Target struct {
	Type Type `yaml:"type" json:"type"`

	// Version and Image describe what is deployed; they are only used in templates.
	Version string            `yaml:"version,omitempty" json:"version,omitempty"`
	Image   string            `yaml:"image,omitempty" json:"image,omitempty"`
	Vars    map[string]string `yaml:"vars,omitempty" json:"vars,omitempty"`

	// Addresses: static: the URLs of the running instances; exec: templates rendered to URLs after
	// the deploy command. Process targets get http://127.0.0.1:PORT per instance.
	Addresses []string `yaml:"addresses,omitempty" json:"addresses,omitempty"`

	// Command: exec: the deploy shell command (run with sh -c); process: the executable.
	Command string `yaml:"command,omitempty" json:"command,omitempty"`
	// Teardown: exec: the shell command that removes the deployment (always attempted, even after a
	// failed or timed-out deploy, and safe to run twice).
	Teardown string `yaml:"teardown,omitempty" json:"teardown,omitempty"`
	// Args: process: the arguments, templates.
	Args []string `yaml:"args,omitempty" json:"args,omitempty"`
	// Env: exec and process: extra environment variables, templates. PORT is always set.
	Env map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	// Dir: exec and process: the working directory (default: the current one).
	Dir string `yaml:"dir,omitempty" json:"dir,omitempty"`
	// Port: exec: the value of .Port (default: a free loopback port).
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// Instances: process: how many copies to start (default 1).
	Instances int `yaml:"instances,omitempty" json:"instances,omitempty"`
	// ListenFD: process: canaryctl binds the loopback port itself and hands the listening socket
	// to the instance as file descriptor 3 (LISTEN_FDS=1 and LISTEN_PID, systemd's socket
	// activation; also CANARYCTL_LISTEN_FD=3), so no other process can take the port between its
	// choice and the instance serving on it. The instance must serve on that descriptor (canaryctl
	// demo-service does); without it, .Port is a port that was free a moment before the start.
	ListenFD bool `yaml:"listenFD,omitempty" json:"listenFD,omitempty"`
	// Status: exec: a shell command (template) that exits 0 while the deployment is alive, run
	// every StatusInterval after the deployment was ready (e.g. "kubectl rollout status
	// deploy/{{.Service}}-{{.Cohort}} --timeout 5s"); failing Readiness.FailureThreshold times in
	// a row rolls the rollout back.
	Status string `yaml:"status,omitempty" json:"status,omitempty"`
	// StatusInterval: exec: how often Status runs (default 10s).
	StatusInterval time.Duration `yaml:"statusInterval,omitempty" json:"statusInterval,omitempty"`

	// Readiness: the HTTP probe every address must pass before Deploy returns. Static and exec
	// targets are not probed without it; process targets default to a probe of "/" expecting 200.
	Readiness *Probe `yaml:"readiness,omitempty" json:"readiness,omitempty"`
	// Timeout bounds the whole deploy: command and readiness (default 2m).
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// GracePeriod: process: time between SIGTERM and SIGKILL on teardown (default 5s); exec: the
	// same for a deploy or teardown command that outlives its timeout.
	GracePeriod time.Duration `yaml:"gracePeriod,omitempty" json:"gracePeriod,omitempty"`
}

// Probe is an HTTP readiness probe: GET address+Path until it answers Status.
type Probe struct {
	Path     string        `yaml:"path,omitempty" json:"path,omitempty"`         // default "/"
	Status   int           `yaml:"status,omitempty" json:"status,omitempty"`     // default 200
	Interval time.Duration `yaml:"interval,omitempty" json:"interval,omitempty"` // default 1s
	Timeout  time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`   // per attempt, default 1s
	// FailureThreshold: after the deployment was ready, this many failed probes (or status
	// commands) in a row mark it not alive and the rollout rolls back (default 3).
	FailureThreshold int `yaml:"failureThreshold,omitempty" json:"failureThreshold,omitempty"`
}

// Defaults.
const (
	DefaultTimeout       = 2 * time.Minute
	DefaultGracePeriod   = 5 * time.Second
	DefaultProbePath     = "/"
	DefaultProbeStatus   = 200
	DefaultProbeInterval = time.Second
	DefaultProbeTimeout  = time.Second
	// DefaultFailureThreshold: failed liveness checks in a row before a deployment is not alive.
	DefaultFailureThreshold = 3
	// DefaultStatusInterval: how often an exec target's status command runs.
	DefaultStatusInterval = 10 * time.Second
	// MaxInstances bounds Target.Instances: this is for local processes, not a fleet.
	MaxInstances = 16
)

// ConfigError is an invalid field of the deploy configuration. It names the field and the fix.
type ConfigError struct {
	Field string // e.g. deploy.canary.command
	Msg   string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Msg }

// InvalidInput marks the error as the user's input being wrong (exit code 2).
func (e *ConfigError) InvalidInput() bool { return true }

// Validate checks the whole configuration and returns every problem found (joined), each a
// *ConfigError whose field path starts with "deploy.".
func (c *Config) Validate() error {
	return errors.Join(c.Baseline.validate("deploy.baseline"), c.Canary.validate("deploy.canary"))
}

// Validate checks one target; field paths start with path (e.g. "deploy.canary").
func (t *Target) Validate(path string) error { return t.validate(path) }

func (t *Target) validate(p string) error {
	c := &targetCheck{t: t, p: p}
	check, ok := typeChecks[t.Type]
	switch {
	case t.Type == "":
		c.bad("type", "required; use one of %s", typeList())
		return errors.Join(c.errs...)
	case !ok:
		c.bad("type", "unknown type %q; use one of %s", t.Type, typeList())
		return errors.Join(c.errs...)
	}
	check(c)
	for _, f := range targetFields {
		if f.set(t) && !slices.Contains(f.usedBy, t.Type) {
			c.bad(f.name, "not used by type %s; remove it", t.Type)
		}
	}
	for k := range t.Env {
		if k == "" || strings.ContainsAny(k, "= \t\n") {
			c.bad("env", "%q is not an environment variable name; use letters, digits and _", k)
		}
	}
	if t.Timeout < 0 {
		c.bad("timeout", "%s is negative; use a duration such as 2m", t.Timeout)
	}
	if t.GracePeriod < 0 {
		c.bad("gracePeriod", "%s is negative; use a duration such as 5s", t.GracePeriod)
	}
	if t.Readiness != nil {
		c.readiness(*t.Readiness)
	}
	return errors.Join(c.errs...)
}

// targetCheck collects the problems of one target (p is its field path).
type targetCheck struct {
	t    *Target
	p    string
	errs []error
}

func (c *targetCheck) bad(field, format string, args ...any) {
	c.errs = append(c.errs, &ConfigError{Field: c.p + "." + field, Msg: fmt.Sprintf(format, args...)})
}

// template checks a field holding a template.
func (c *targetCheck) template(field, text string) {
	if err := checkTemplate(text, c.t); err != nil {
		c.bad(field, "%v; templates see .Cohort .Service .Version .Image .Port .Instance .Executable .Vars.NAME", err)
	}
}

// required reports a field left blank with an example, or checks its template.
func (c *targetCheck) required(field, text, example string) {
	if strings.TrimSpace(text) == "" {
		c.bad(field, "required for type %s; e.g. %s", c.t.Type, example)
		return
	}
	c.template(field, text)
}

// typeChecks check the fields each type uses.
var typeChecks = map[Type]func(c *targetCheck){
	Static: func(c *targetCheck) {
		if len(c.t.Addresses) == 0 {
			c.bad("addresses", "required for type static; e.g. [\"http://10.0.0.7:8080\"]")
		}
		for i, a := range c.t.Addresses {
			if err := checkURL(a); err != nil {
				c.bad(fmt.Sprintf("addresses[%d]", i), "%v", err)
			}
		}
	},
	Exec: func(c *targetCheck) {
		t := c.t
		c.required("command", t.Command, "\"kubectl apply -f deploy/{{.Cohort}}.yaml\"")
		c.required("teardown", t.Teardown, "\"kubectl delete --ignore-not-found -f deploy/{{.Cohort}}.yaml\"")
		if len(t.Addresses) == 0 {
			c.bad("addresses", "required for type exec; e.g. [\"http://{{.Service}}-{{.Cohort}}.default.svc:8080\"]")
		}
		for i, a := range t.Addresses {
			f := fmt.Sprintf("addresses[%d]", i)
			c.template(f, a)
			if s, err := render(a, sampleVars(t)); err == nil {
				if err := checkURL(s); err != nil {
					c.bad(f, "%v", err)
				}
			}
		}
		c.envTemplates()
		if t.Port < 0 || t.Port > 65535 {
			c.bad("port", "%d is not a port; use 1..65535, or leave it out for a free loopback port", t.Port)
		}
		if t.Status != "" {
			c.template("status", t.Status)
		}
		if t.StatusInterval < 0 {
			c.bad("statusInterval", "%s is negative; use a duration such as 10s", t.StatusInterval)
		}
	},
	Process: func(c *targetCheck) {
		t := c.t
		c.required("command", t.Command, "\"./bin/myservice\" or \"{{.Executable}}\"")
		for i, a := range t.Args {
			c.template(fmt.Sprintf("args[%d]", i), a)
		}
		c.envTemplates()
		if t.Instances < 0 || t.Instances > MaxInstances {
			c.bad("instances", "%d is out of range; use 1..%d (default 1)", t.Instances, MaxInstances)
		}
	},
}

func (c *targetCheck) envTemplates() {
	for k, v := range c.t.Env {
		c.template("env."+k, v)
	}
}

// targetFields are the fields not every type uses, in the order their problems are reported.
var targetFields = []struct {
	name   string
	set    func(t *Target) bool
	usedBy []Type
}{
	{"addresses", func(t *Target) bool { return len(t.Addresses) > 0 }, []Type{Static, Exec}},
	{"command", func(t *Target) bool { return t.Command != "" }, []Type{Exec, Process}},
	{"teardown", func(t *Target) bool { return t.Teardown != "" }, []Type{Exec}},
	{"args", func(t *Target) bool { return len(t.Args) > 0 }, []Type{Process}},
	{"env", func(t *Target) bool { return len(t.Env) > 0 }, []Type{Exec, Process}},
	{"dir", func(t *Target) bool { return t.Dir != "" }, []Type{Exec, Process}},
	{"port", func(t *Target) bool { return t.Port != 0 }, []Type{Exec}},
	{"instances", func(t *Target) bool { return t.Instances != 0 }, []Type{Process}},
	{"listenFD", func(t *Target) bool { return t.ListenFD }, []Type{Process}},
	{"status", func(t *Target) bool { return t.Status != "" }, []Type{Exec}},
	{"statusInterval", func(t *Target) bool { return t.StatusInterval != 0 }, []Type{Exec}},
}

// readiness checks the readiness probe.
func (c *targetCheck) readiness(pr Probe) {
	if pr.Path != "" && !strings.HasPrefix(pr.Path, "/") {
		c.bad("readiness.path", "%q must start with /; e.g. /healthz", pr.Path)
	}
	if pr.Status != 0 && (pr.Status < 100 || pr.Status > 599) {
		c.bad("readiness.status", "%d is not an HTTP status; use 100..599 (default 200)", pr.Status)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"readiness.interval", pr.Interval}, {"readiness.timeout", pr.Timeout}} {
		if d.v < 0 {
			c.bad(d.field, "%s is negative; use a duration such as 1s", d.v)
		}
	}
	if pr.FailureThreshold < 0 {
		c.bad("readiness.failureThreshold", "%d is negative; use 1 or more (default 3)", pr.FailureThreshold)
	}
}

func typeList() string {
	s := make([]string, len(Types))
	for i, t := range Types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// checkURL accepts an absolute http or https URL with a host.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL (%v); use e.g. http://10.0.0.7:8080", s, errors.Unwrap(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q must start with http:// or https://; e.g. http://10.0.0.7:8080", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%q has no host; use e.g. http://10.0.0.7:8080", s)
	}
	return nil
}

// checkTemplate parses text and renders it with sample values, so that a misspelt key is found
// before anything is deployed.
func checkTemplate(text string, t *Target) error {
	_, err := render(text, sampleVars(t))
	return err
}

func sampleVars(t *Target) map[string]any {
	return vars(t, "canary", "service", "/usr/local/bin/canaryctl", 8080, 0)
}

// vars is the data every template sees.
func vars(t *Target, cohort, service, executable string, port, instance int) map[string]any {
	v := make(map[string]string, len(t.Vars))
	for k, x := range t.Vars {
		v[k] = x
	}
	return map[string]any{
		"Cohort":     cohort,
		"Service":    service,
		"Version":    t.Version,
		"Image":      t.Image,
		"Port":       port,
		"Instance":   instance,
		"Executable": executable,
		"Vars":       v,
	}
}

var funcs = template.FuncMap{"quote": shellQuote}

// render executes a template; a missing key is an error.
func render(text string, data map[string]any) (string, error) {
	tpl, err := template.New("").Option("missingkey=error").Funcs(funcs).Parse(text)
	if err != nil {
		return "", fmt.Errorf("parse template %q: %w", text, err)
	}
	var b strings.Builder
	if err := tpl.Execute(&b, data); err != nil {
		return "", fmt.Errorf("render template %q: %w", text, err)
	}
	return b.String(), nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
