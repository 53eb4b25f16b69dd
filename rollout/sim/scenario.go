package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/canaryctl/canaryctl/internal/yamlerr"
	// The specs a policy writes name gateway.type kong and metrics.type kong-log: their types
	// register themselves with the spec when the package is linked in (providers registry).
	_ "github.com/canaryctl/canaryctl/providers/kong"
	"github.com/canaryctl/canaryctl/rollout"
	"github.com/canaryctl/canaryctl/rollout/sim/traffic"
)

// What a scenario expects of the rollout: a good canary is promoted (every rollback is a false one),
// a bad one rolled back (a rollback is a detection).
const (
	ExpectPromote  = "promote"
	ExpectRollback = "rollback"
)

// Scenario is one scenario file: the traffic (a traffic.Model, inline), what a correct verdict is,
// the rollout policy under test and the targets the verdicts are held to.
type Scenario struct {
	// Name identifies the scenario (default: the file name without .yaml).
	Name string `yaml:"name" json:"name"`
	// Class groups scenarios in the table (e.g. "sticky cohorts").
	Class       string `yaml:"class" json:"class"`
	Description string `yaml:"description" json:"description"`
	// Expect is promote (a good canary: A/A) or rollback (a bad one: A/B).
	Expect        string `yaml:"expect" json:"expect"`
	traffic.Model `yaml:",inline" json:"traffic"`
	Policy        Policy `yaml:"policy" json:"policy"`
	Target        Target `yaml:"target" json:"target"`
	// Limit is the virtual time after which a rollout that has not ended is stopped (interrupted, so
	// it rolls back) and counted as undecided (default 6h).
	Limit time.Duration `yaml:"limit" json:"limit"`

	// File is where the scenario was read from, SHA256 the hex SHA-256 of its content (a result
	// names the exact file it measured).
	File   string `yaml:"-" json:"file,omitempty"`
	SHA256 string `yaml:"-" json:"sha256,omitempty"`
}

// Policy is the rollout policy under test. Left out, everything is the engine's default (what
// `canaryctl run` does with a spec that only names its service, deployments and gateway).
type Policy struct {
	// Mode is analysis.mode: sequential (the default with per-request data) or kayenta.
	Mode string `yaml:"mode" json:"mode,omitempty"`
	// Alpha is analysis.sequential.alpha.
	Alpha float64 `yaml:"alpha" json:"alpha,omitempty"`
	// Steps is the spec's steps: weights in percent ([2.5, 10, 100]) or the spec's step objects
	// ({weight: 10, duration: 10m}).
	Steps any `yaml:"steps" json:"steps,omitempty"`
	// Control is analysis.control: baseline (default) or stable (no baseline is deployed).
	Control string `yaml:"control" json:"control,omitempty"`
	// Gateway is the gateway the spec names (the simulator stands in for it): builtin (default;
	// metrics builtin), kong (mode targets, metrics kong-log) or kong-hash (mode hash on a user
	// header, metrics kong-log; the default with sticky clients, which is how a spec asks for them).
	Gateway string `yaml:"gateway" json:"gateway,omitempty"`
	// Spec holds any other rollout spec fields, merged into the spec the simulator runs
	// (e.g. {analysis: {thresholds: {pass: 90}}}); service, stable, deploy, gateway and metrics are
	// the simulator's.
	Spec map[string]any `yaml:"spec" json:"spec,omitempty"`
}

// Target is what the verdicts must achieve; zero fields take the defaults for the scenario's Expect.
type Target struct {
	// MaxFalseRollbacks (promote): the highest acceptable false rollback rate (default 0.01), and
	// MaxUpperBound the highest acceptable upper end of its 95% interval (default 0.02).
	MaxFalseRollbacks float64 `yaml:"maxFalseRollbacks" json:"maxFalseRollbacks,omitempty"`
	MaxUpperBound     float64 `yaml:"maxUpperBound" json:"maxUpperBound,omitempty"`
	// MinDetection (rollback): the lowest acceptable share of rollouts rolled back (default 0.95),
	// counting only rollbacks within Within of the regression's onset when Within is set.
	MinDetection float64       `yaml:"minDetection" json:"minDetection,omitempty"`
	Within       time.Duration `yaml:"within" json:"within,omitempty"`
	// MedianRollback (rollback): the median time from the regression's onset to the rollback must
	// be below it.
	MedianRollback time.Duration `yaml:"medianRollback" json:"medianRollback,omitempty"`
}

// DefaultLimit bounds a simulated rollout's virtual time.
const DefaultLimit = 6 * time.Hour

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ParseScenario reads one scenario file's content; name is used when the file gives none.
func ParseScenario(data []byte, name string) (*Scenario, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty scenario; start from a file in testdata/scenarios")
		}
		return nil, fmt.Errorf("%s; fix the YAML (field names are case-sensitive, see rollout/sim/README.md)", oneLine(yamlerr.Describe(data, err)))
	}
	if s.Name == "" {
		s.Name = name
	}
	s.Model = s.Model.WithDefaults()
	if s.Limit == 0 {
		s.Limit = DefaultLimit
	}
	s.Target = s.Target.withDefaults(s.Expect)
	if err := s.validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// LoadScenario reads a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	s, err := ParseScenario(data, strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)))
	if err != nil {
		return nil, &ScenarioError{File: path, Err: err}
	}
	s.File = path
	sum := sha256.Sum256(data)
	s.SHA256 = hex.EncodeToString(sum[:])
	return s, nil
}

// ScenarioError is an invalid scenario file: every line of Error names the file and the field.
type ScenarioError struct {
	File string
	Err  error
}

func (e *ScenarioError) Error() string {
	lines := strings.Split(e.Err.Error(), "\n")
	for i, l := range lines {
		lines[i] = "scenario " + e.File + ": " + l
	}
	return strings.Join(lines, "\n")
}

func (e *ScenarioError) Unwrap() error { return e.Err }

// InvalidInput marks the error as the user's input (exit code 2).
func (e *ScenarioError) InvalidInput() bool { return true }

// LoadScenarios reads scenario files and directories (every *.yaml in them, in name order).
func LoadScenarios(paths []string) ([]*Scenario, error) {
	var out []*Scenario
	seen := map[string]string{}
	for _, p := range paths {
		files := []string{p}
		if fi, err := os.Stat(p); err != nil {
			return nil, &ScenarioError{File: p, Err: err}
		} else if fi.IsDir() {
			files, err = filepath.Glob(filepath.Join(p, "*.yaml"))
			if err != nil {
				return nil, fmt.Errorf("list scenarios in %s: %w", p, err)
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("read scenarios: %s holds no *.yaml file", p)
			}
			slices.Sort(files)
		}
		for _, f := range files {
			s, err := LoadScenario(f)
			if err != nil {
				return nil, err
			}
			if prev, ok := seen[s.Name]; ok {
				return nil, fmt.Errorf("scenario %s: name %q is also used by %s; names must be unique", f, s.Name, prev)
			}
			seen[s.Name] = f
			out = append(out, s)
		}
	}
	return out, nil
}

func (t Target) withDefaults(expect string) Target {
	switch expect {
	case ExpectPromote:
		if t.MaxFalseRollbacks == 0 {
			t.MaxFalseRollbacks = 0.01
		}
		if t.MaxUpperBound == 0 {
			t.MaxUpperBound = 0.02
		}
	case ExpectRollback:
		if t.MinDetection == 0 {
			t.MinDetection = 0.95
		}
	}
	return t
}

func (s *Scenario) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if !nameRE.MatchString(s.Name) {
		bad("name", "%q must be lower-case letters, digits, . - _ (at most 64), e.g. aa-sticky-clients", s.Name)
	}
	switch s.Expect {
	case ExpectPromote:
		if s.Model.Regression.Active() {
			bad("expect", "promote, but the scenario has a regression; a bad canary expects rollback")
		}
		if s.Target.MinDetection != 0 || s.Target.Within != 0 || s.Target.MedianRollback != 0 {
			bad("target", "minDetection, within and medianRollback are targets of a bad canary (expect: rollback)")
		}
	case ExpectRollback:
		if !s.Model.Regression.Active() {
			bad("expect", "rollback, but the scenario has no regression; give one (e.g. regression: {addErrorRate: 0.01}) or expect promote")
		}
		if s.Target.MaxFalseRollbacks != 0 || s.Target.MaxUpperBound != 0 {
			bad("target", "maxFalseRollbacks and maxUpperBound are targets of a good canary (expect: promote)")
		}
	default:
		bad("expect", "%q: use promote (a good canary, A/A) or rollback (a bad one, A/B)", s.Expect)
	}
	t := s.Target
	for _, f := range []struct {
		name string
		v    float64
	}{{"maxFalseRollbacks", t.MaxFalseRollbacks}, {"maxUpperBound", t.MaxUpperBound}, {"minDetection", t.MinDetection}} {
		if !(f.v >= 0 && f.v <= 1) {
			bad("target."+f.name, "%v must be a share in [0, 1], e.g. 0.95", f.v)
		}
	}
	if t.Within < 0 || t.MedianRollback < 0 {
		bad("target", "within and medianRollback must not be negative")
	}
	if s.Limit < time.Minute {
		bad("limit", "%s is too short; give at least 1m, e.g. 6h", s.Limit)
	}
	if err := s.Model.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := s.Spec(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// The gateways a policy can name (Policy.Gateway).
const (
	GatewayBuiltin  = "builtin"
	GatewayKong     = "kong"
	GatewayKongHash = "kong-hash"
)

// simService is the service name of simulated rollouts.
const simService = "sim"

// Spec builds the rollout spec the simulator runs: the policy over the engine's defaults, with the
// simulator's service, deployments, gateway (built-in, never started) and metrics (the gateway's
// per-request log), parsed and validated by rollout.ParseSpec like a user's spec.
func (s *Scenario) Spec() (*rollout.Spec, error) {
	doc := map[string]any{}
	for k, v := range s.Policy.Spec {
		doc[k] = v
	}
	for _, k := range []string{"service", "stable", "deploy", "gateway", "metrics"} {
		if _, ok := doc[k]; ok {
			return nil, fmt.Errorf("policy.spec.%s: set by the simulator; leave it out", k)
		}
	}
	doc["service"] = simService
	doc["stable"] = map[string]any{"addresses": []string{"http://stable.sim:80"}}
	deploy := map[string]any{"canary": map[string]any{"type": "static", "addresses": []string{"http://canary.sim:80"}}}
	if s.Policy.Control != rollout.ControlStable {
		deploy["baseline"] = map[string]any{"type": "static", "addresses": []string{"http://baseline.sim:80"}}
	}
	doc["deploy"] = deploy
	gw := s.Policy.Gateway
	if gw == "" {
		gw = GatewayBuiltin
		if s.Clients != nil && s.Clients.Sticky {
			gw = GatewayKongHash
		}
	}
	switch gw {
	case GatewayBuiltin:
		doc["gateway"] = map[string]any{"type": "builtin", "listen": "127.0.0.1:8080"}
		doc["metrics"] = map[string]any{"type": "builtin"}
	case GatewayKong, GatewayKongHash:
		kong := map[string]any{"admin": "http://127.0.0.1:8001", "service": simService}
		if gw == GatewayKongHash {
			kong["mode"] = "hash"
			kong["hashOn"] = "header"
			kong["hashOnHeader"] = "X-User-ID"
		}
		doc["gateway"] = map[string]any{"type": "kong", "kong": kong}
		doc["metrics"] = map[string]any{"type": "kong-log"}
	default:
		return nil, fmt.Errorf("policy.gateway: %q: use %s, %s or %s", gw, GatewayBuiltin, GatewayKong, GatewayKongHash)
	}
	analysis, _ := doc["analysis"].(map[string]any)
	if analysis == nil {
		if _, ok := doc["analysis"]; ok {
			return nil, errors.New("policy.spec.analysis: must be a mapping")
		}
		analysis = map[string]any{}
	} else {
		analysis = cloneMap(analysis)
	}
	if s.Policy.Mode != "" {
		analysis["mode"] = s.Policy.Mode
	}
	if s.Policy.Control != "" {
		analysis["control"] = s.Policy.Control
	}
	if s.Policy.Alpha != 0 {
		seq, _ := analysis["sequential"].(map[string]any)
		seq = cloneMap(seq)
		seq["alpha"] = s.Policy.Alpha
		analysis["sequential"] = seq
	}
	if len(analysis) > 0 {
		doc["analysis"] = analysis
	}
	if s.Policy.Steps != nil {
		steps, ok := s.Policy.Steps.([]any)
		if !ok {
			return nil, errors.New("policy.steps: must be a list of weights or steps, e.g. [2.5, 10, 100]")
		}
		out := make([]any, len(steps))
		for i, st := range steps {
			switch st.(type) {
			case int, float64:
				out[i] = map[string]any{"weight": st} // a bare weight: a step with the defaults
			default:
				out[i] = st
			}
		}
		doc["steps"] = out
	}
	raw, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("policy: encode spec: %w", err)
	}
	spec, err := rollout.ParseSpec(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return spec, nil
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
