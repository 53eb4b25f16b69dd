package rollout

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/internal/yamlerr"
	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout/deploy"
)

// SpecVersion is the only version of the rollout spec this build reads.
const SpecVersion = 1

// Spec is a rollout: what to ship, where traffic flows, how to judge it and in which steps.
// It is read from YAML (see README.md for a complete example with every default).
type Spec struct {
	Version int    `yaml:"version" json:"version"`
	Service string `yaml:"service" json:"service"`
	// Stable says how the version in production is reached.
	Stable StableSpec `yaml:"stable" json:"stable"`
	// Deploy says how baseline and canary are deployed (package rollout/deploy).
	Deploy   deploy.Config `yaml:"deploy" json:"deploy"`
	Gateway  GatewaySpec   `yaml:"gateway" json:"gateway"`
	Metrics  MetricsSpec   `yaml:"metrics" json:"metrics"`
	Analysis AnalysisSpec  `yaml:"analysis" json:"analysis"`
	Steps    []StepSpec    `yaml:"steps" json:"steps"`
	// OnMarginal: what to do when a step ends with a score between marginal and pass:
	// "pause" (default; wait for promote/resume or abort) or "rollback".
	OnMarginal string `yaml:"onMarginal" json:"onMarginal"`
	// PauseTimeout bounds how long a paused rollout holds its split before rolling back (default 1h).
	PauseTimeout time.Duration     `yaml:"pauseTimeout" json:"pauseTimeout"`
	Notify       NotificationsSpec `yaml:"notifications" json:"notifications"`
	// State selects the state store (spec_state.go): local directory (default) or etcd.
	State StateSpec `yaml:"state,omitempty" json:"state,omitzero"`

	// controlDefaulted: analysis.control was left out and set to stable because the gateway mode
	// has no baseline cohort (see control.go).
	controlDefaulted bool
}

// StableSpec: the addresses of the stable instances, registered at the gateway as the stable cohort.
type StableSpec struct {
	Addresses []string `yaml:"addresses" json:"addresses"`
}

// AnalysisSpec is the Kayenta canary configuration: metrics with their per-metric settings,
// score thresholds and the tolerance for flaky measurements.
type AnalysisSpec struct {
	// Mode is how steps are judged: "sequential" (request-level, always-valid tests, looked at every
	// lookInterval; the default for per-request metrics sources builtin and kong-log) or "kayenta"
	// (per-interval series, Mann-Whitney judge; the default, and the only mode, for prometheus).
	Mode string `yaml:"mode" json:"mode"`
	// Control is what the canary is compared with: "baseline" (a fresh copy of stable deployed beside
	// the canary, the default) or "stable" (no baseline; stable's own traffic is the control; the
	// default, and the only choice, for gateway.kong.mode canary-plugin and bluegreen). See control.go.
	Control string `yaml:"control" json:"control"`
	// Sequential configures mode sequential (see sequential.go).
	Sequential SequentialSpec `yaml:"sequential" json:"sequential"`
	// Metrics, Thresholds and Resolution configure mode kayenta.
	Metrics    []MetricSpec `yaml:"metrics" json:"metrics"`
	Thresholds Thresholds   `yaml:"thresholds" json:"thresholds"`
	// Resolution is the width of one point of the series compared by Mann-Whitney (default 10s).
	Resolution time.Duration `yaml:"resolution" json:"resolution"`
	// ConsecutiveErrorLimit: metric fetches or judgements in a row that may fail before the rollout
	// rolls back (default 4, as Argo Rollouts).
	ConsecutiveErrorLimit int `yaml:"consecutiveErrorLimit" json:"consecutiveErrorLimit"`
	// Routes judges every route on its own as well as the service (routes.go): auto (the default in
	// mode sequential when the requests name routes), off, or an explicit list.
	Routes RoutesSpec `yaml:"routes" json:"routes,omitzero"`
}

// Thresholds are the score thresholds: a final score >= Pass passes a step; any interval score
// <= Marginal fails the rollout at once (Kayenta's fail-fast).
type Thresholds struct {
	Pass     float64 `yaml:"pass" json:"pass"`
	Marginal float64 `yaml:"marginal" json:"marginal"`
}

// MetricSpec is one metric to judge, with Kayenta's per-metric settings.
type MetricSpec struct {
	Name     string               `yaml:"name" json:"name"`
	Kind     providers.MetricKind `yaml:"kind" json:"kind"`
	Quantile float64              `yaml:"quantile,omitempty" json:"quantile,omitempty"`
	Query    string               `yaml:"query,omitempty" json:"query,omitempty"`
	// Direction: which change is bad: "increase", "decrease" or "either".
	Direction string `yaml:"direction" json:"direction"`
	// Critical: a failing critical metric fails the whole judgement.
	Critical bool `yaml:"critical" json:"critical"`
	// MustHaveData: missing data is a failure, not "nodata".
	MustHaveData bool `yaml:"mustHaveData" json:"mustHaveData"`
	// NaNStrategy: "remove" (default) or "replace" (with 0) for points without data.
	NaNStrategy string     `yaml:"nanStrategy" json:"nanStrategy"`
	EffectSize  EffectSize `yaml:"effectSize" json:"effectSize"`
	// Group and Weight: Kayenta scores metrics by group; Weight is the group's weight (every metric of a
	// group states the same weight). Leave all weights out for equal groups.
	Group  string  `yaml:"group" json:"group"`
	Weight float64 `yaml:"weight,omitempty" json:"weight,omitempty"`
}

// EffectSize are Kayenta's effect size thresholds, as ratios of mean(canary) to mean(baseline)
// (measure meanRatio): a significant change within [AllowedDecrease, AllowedIncrease] still passes; a
// critical metric's High (Low) fails the whole judgement only when the ratio is at least
// CriticalIncrease (at most CriticalDecrease). Every default is 1, Kayenta's.
type EffectSize struct {
	AllowedIncrease  float64 `yaml:"allowedIncrease" json:"allowedIncrease"`
	AllowedDecrease  float64 `yaml:"allowedDecrease" json:"allowedDecrease"`
	CriticalIncrease float64 `yaml:"criticalIncrease" json:"criticalIncrease"`
	CriticalDecrease float64 `yaml:"criticalDecrease" json:"criticalDecrease"`
}

// StepSpec is one traffic step.
type StepSpec struct {
	// Weight is the canary's share in percent (baseline gets the same share; see Spec.SplitFor).
	Weight float64 `yaml:"weight" json:"weight"`
	// Duration is the bake time of the step, counted from the moment its split is set.
	Duration time.Duration `yaml:"duration" json:"duration"`
	// Interval between two judgements.
	Interval time.Duration `yaml:"interval" json:"interval"`
	// Lookback is the window each judgement looks at; 0 = everything since the end of the warm-up.
	Lookback time.Duration `yaml:"lookback" json:"lookback"`
	// Warmup: time after the split is set during which nothing is judged.
	Warmup time.Duration `yaml:"warmup" json:"warmup"`
	// Approval: pause before this step's split is set until someone runs `canaryctl promote`.
	Approval bool `yaml:"approval" json:"approval"`
}

// UnmarshalYAML fills the step defaults before decoding, so that a step can say warmup: 0s and a
// step that leaves warmup out gets DefaultStepWarmup. Unknown keys are errors.
func (s *StepSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		known := []string{"weight", "duration", "interval", "lookback", "warmup", "approval"}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i].Value; !slices.Contains(known, k) {
				return fmt.Errorf("line %d: field %s not found in step (valid: %s)", n.Content[i].Line, k, strings.Join(known, ", "))
			}
		}
	}
	type plain StepSpec
	p := plain{Duration: DefaultStepDuration, Interval: DefaultStepInterval, Warmup: DefaultStepWarmup}
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = StepSpec(p)
	return nil
}

// NotificationsSpec: webhooks called with a JSON payload that has a Slack-compatible "text" field.
type NotificationsSpec struct {
	Webhooks []WebhookSpec `yaml:"webhooks" json:"webhooks"`
	// Timeout per webhook call (default 5s).
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
}

// WebhookSpec is one webhook.
type WebhookSpec struct {
	URL string `yaml:"url" json:"url"`
	// URLEnv names an environment variable that holds the URL instead (a Slack webhook URL is a
	// secret; it then stays out of the spec and the state directory). Set url or urlEnv.
	URLEnv string `yaml:"urlEnv,omitempty" json:"urlEnv,omitempty"`
	// On lists the events that trigger it: promoted, rolledBack, failed, paused, started (default: all
	// but started).
	On []string `yaml:"on,omitempty" json:"on,omitempty"`
}

// Defaults.
const (
	DefaultResolution            = 10 * time.Second
	DefaultConsecutiveErrorLimit = 4
	DefaultPass                  = 95.0
	DefaultMarginal              = 75.0
	DefaultStepDuration          = 5 * time.Minute
	DefaultStepInterval          = time.Minute
	DefaultStepWarmup            = 30 * time.Second
	DefaultPauseTimeout          = time.Hour
	DefaultNotifyTimeout         = 5 * time.Second
	DefaultQuantile              = 0.99
	MaxSteps                     = 20
)

// DefaultStepWeights are the default steps in percent (shared with the simulator through
// analysis/sequential).
var DefaultStepWeights = sequential.DefaultStepWeights()

// Notification events.
const (
	EventStarted    = "started"
	EventPromoted   = "promoted"
	EventRolledBack = "rolledBack"
	EventFailed     = "failed"
	EventPaused     = "paused"
)

var notifyEvents = []string{EventStarted, EventPromoted, EventRolledBack, EventFailed, EventPaused}

// DefaultMetrics are the metrics judged when the spec names none: P99 latency (an increase is bad)
// and 5xx rate (an increase is bad, critical).
func DefaultMetrics() []MetricSpec {
	return []MetricSpec{
		{Name: "p99-latency", Kind: providers.LatencyQuantile, Quantile: DefaultQuantile, Direction: "increase",
			MustHaveData: true, NaNStrategy: "remove", Group: "latency",
			EffectSize: EffectSize{AllowedIncrease: 1.1, AllowedDecrease: 1, CriticalIncrease: 1, CriticalDecrease: 1}},
		// A point without requests has no error rate: removed (NaN), never 0% errors. With "replace"
		// a canary that served few requests looked clean in every empty point (issue 14: Pass, score
		// 100, for a canary answering 8.85% 5xx).
		{Name: "5xx-rate", Kind: providers.ErrorRate, Direction: "increase", Critical: true,
			NaNStrategy: "remove", Group: "errors",
			EffectSize: EffectSize{AllowedIncrease: 1, AllowedDecrease: 1, CriticalIncrease: 1, CriticalDecrease: 1}},
	}
}

// SpecError is one invalid field of a spec: it names the field path, its line in the file when
// known, and the fix: "steps[1].interval (line 14): 5s is shorter than ...; use ...".
type SpecError struct {
	Field string // e.g. steps[1].interval
	Line  int    // line of the field (or of the nearest enclosing field written) in the file; 0 if unknown
	Msg   string
}

func (e *SpecError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", e.Field, e.Line, e.Msg)
	}
	return e.Field + ": " + e.Msg
}

// InvalidInput marks the error as the user's input being wrong (exit code 2).
func (e *SpecError) InvalidInput() bool { return true }

// SpecErrors is every problem of a spec, one per line.
type SpecErrors []error

func (e SpecErrors) Error() string {
	s := make([]string, len(e))
	for i, x := range e {
		s[i] = x.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap exposes every problem to errors.Is and errors.As.
func (e SpecErrors) Unwrap() []error { return e }

// InvalidInput marks the errors as the user's input being wrong (exit code 2).
func (SpecErrors) InvalidInput() bool { return true }

// MaxSpecSize bounds the size of a spec file.
const MaxSpecSize = 1 << 20

// ParseSpec reads a YAML spec, fills in defaults and validates it. Unknown fields are errors. Every
// problem is a *SpecError naming the field; several are returned together as SpecErrors.
func ParseSpec(r io.Reader) (*Spec, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSpecSize+1))
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	if len(data) > MaxSpecSize {
		return nil, &SpecError{Field: "(file)", Msg: fmt.Sprintf("larger than %d bytes; a spec is a short YAML document", MaxSpecSize)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Spec
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &SpecError{Field: "(file)", Msg: "empty; start from the example in rollout/README.md"}
		}
		return nil, yamlProblems(data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &SpecError{Field: "(yaml)", Msg: "more than one YAML document; keep one spec per file"}
	}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		return nil, withLines(data, err)
	}
	return &s, nil
}

// ServiceOf returns the service an invalid spec names (its top-level service field, if it reads as
// a valid name), so that the reports of a run that never started name it too; "" otherwise.
func ServiceOf(data []byte) string {
	var v struct {
		Service string `yaml:"service"`
	}
	if yaml.Unmarshal(data, &v) != nil && v.Service == "" {
		return ""
	}
	if !ValidServiceName(v.Service) {
		return ""
	}
	return v.Service
}

// yamlProblems explains a failed decode: every problem of the document at once (the decoder stops
// at the first unknown field of a step, and names Go types), each with its field path and line.
func yamlProblems(data []byte, err error) error {
	var errs SpecErrors
	for _, p := range yamlerr.Check(data, &Spec{}, specHint) {
		field := p.Path
		if field == "" {
			field = "(yaml)"
		}
		errs = append(errs, &SpecError{Field: field, Line: p.Line, Msg: p.Msg})
	}
	switch len(errs) {
	case 0: // a problem the walk does not know: the decoder's own words, with field paths
		return &SpecError{Field: "(yaml)", Msg: OneLine(yamlerr.Describe(data, err)) + "; fix the YAML (field names are case-sensitive, see rollout/README.md)"}
	case 1:
		return errs[0]
	}
	return errs
}

// specHint says what a spec field holds where its Go type would not ("a number" for a percentage).
func specHint(path string) string {
	switch path {
	case "steps.weight":
		return "the canary's share in percent, e.g. 2.5 or 10"
	case "analysis.thresholds.pass", "analysis.thresholds.marginal":
		return "a score from 0 to 100, e.g. 95"
	case "analysis.metrics.weight":
		return "the group's weight in percent, e.g. 50"
	case "analysis.metrics.quantile":
		return "a quantile between 0 and 1, e.g. 0.99"
	}
	return ""
}

// withLines adds to every *SpecError of err the line its field (or the nearest enclosing field
// written in the file, for a defaulted one) is on.
func withLines(data []byte, err error) error {
	lines := yamlerr.Lines(data)
	for _, e := range flatten(err) {
		var se *SpecError
		if !errors.As(e, &se) || se.Line > 0 {
			continue
		}
		for p := se.Field; p != ""; p = parentPath(p) {
			if l, ok := lines[p]; ok {
				se.Line = l
				break
			}
		}
	}
	return err
}

// parentPath drops the last segment of a field path ("a.b[2]" -> "a.b", "a.b" -> "a").
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// FormatDuration writes a duration as a spec would: 1m, 1m30s, 1h (not 1m0s, 1h0m0s).
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func dur(d time.Duration) string { return FormatDuration(d) }

// OneLine folds a text's white space, new lines included, into single spaces: every error, progress
// line and report line canaryctl prints is one line.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// SetDefaults fills every field left out with its default.
func (s *Spec) SetDefaults() {
	if s.Version == 0 {
		s.Version = SpecVersion
	}
	if s.Gateway.Type == "" {
		s.Gateway.Type = "builtin"
	}
	if s.Metrics.Type == "" {
		s.Metrics.Type = "builtin"
	}
	a := &s.Analysis
	if a.Metrics == nil {
		a.Metrics = DefaultMetrics()
	}
	for i := range a.Metrics {
		a.Metrics[i].setDefaults()
	}
	if a.Thresholds == (Thresholds{}) {
		a.Thresholds = Thresholds{Pass: DefaultPass, Marginal: DefaultMarginal}
	}
	if a.Resolution == 0 {
		a.Resolution = DefaultResolution
	}
	if a.ConsecutiveErrorLimit == 0 {
		a.ConsecutiveErrorLimit = DefaultConsecutiveErrorLimit
	}
	s.setControlDefault()
	s.setSequentialDefaults()
	a.Routes.setDefaults()
	if s.Steps == nil {
		for _, w := range DefaultStepWeights {
			s.Steps = append(s.Steps, StepSpec{Weight: w, Warmup: DefaultStepWarmup})
		}
	}
	for i := range s.Steps {
		st := &s.Steps[i]
		if st.Duration == 0 {
			st.Duration = DefaultStepDuration
		}
		if st.Interval == 0 {
			st.Interval = DefaultStepInterval
		}
	}
	if s.OnMarginal == "" {
		s.OnMarginal = "pause"
	}
	if s.PauseTimeout == 0 {
		s.PauseTimeout = DefaultPauseTimeout
	}
	if s.Notify.Timeout == 0 {
		s.Notify.Timeout = DefaultNotifyTimeout
	}
}

// setDefaults fills a metric's fields left out: Kayenta's defaults (effect sizes 1).
func (m *MetricSpec) setDefaults() {
	m.Quantile = cmp.Or(m.Quantile, quantileDefault(m.Kind))
	m.Direction = cmp.Or(m.Direction, "increase")
	m.NaNStrategy = cmp.Or(m.NaNStrategy, "remove")
	m.Group = cmp.Or(m.Group, m.Name)
	e := &m.EffectSize
	e.AllowedIncrease = cmp.Or(e.AllowedIncrease, 1)
	e.AllowedDecrease = cmp.Or(e.AllowedDecrease, 1)
	e.CriticalIncrease = cmp.Or(e.CriticalIncrease, 1)
	e.CriticalDecrease = cmp.Or(e.CriticalDecrease, 1)
}

// quantileDefault is the quantile of a metric of kind k that leaves it out (0: none).
func quantileDefault(k providers.MetricKind) float64 {
	if k == providers.LatencyQuantile {
		return DefaultQuantile
	}
	return 0
}

var serviceRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// ValidServiceName reports whether name can name a rollout (and its state directory).
func ValidServiceName(name string) bool { return serviceRE.MatchString(name) }

// Validate checks the whole spec (after SetDefaults) and returns every problem, or nil.
func (s *Spec) Validate() error {
	var errs SpecErrors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &SpecError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if s.Version != SpecVersion {
		bad("version", "%d is not supported; use %d", s.Version, SpecVersion)
	}
	switch {
	case s.Service == "":
		bad("service", "required; name the service, e.g. checkout")
	case !ValidServiceName(s.Service):
		bad("service", "%q is not a service name; use 1-63 lower-case letters, digits, '.', '-' or '_', starting and ending with a letter or digit, e.g. checkout", s.Service)
	}
	if len(s.Stable.Addresses) == 0 {
		bad("stable.addresses", "required; list the URLs of the stable instances, e.g. [\"http://10.0.0.5:8080\"]")
	}
	for i, a := range s.Stable.Addresses {
		if err := checkURL(a); err != nil {
			bad(fmt.Sprintf("stable.addresses[%d]", i), "%v", err)
		}
	}
	errs = append(errs, s.validateDeploy(bad)...)
	s.validateGateway(bad)
	s.validateAnalysis(bad)
	s.validateSteps(bad)
	s.validateControl(bad)
	s.validateSequential(bad)
	s.validateRoutes(bad)
	s.validateState(bad)
	if s.OnMarginal != "pause" && s.OnMarginal != "rollback" {
		bad("onMarginal", "unknown value %q; use pause or rollback", s.OnMarginal)
	}
	if s.PauseTimeout < 0 {
		bad("pauseTimeout", "%s is negative; use a duration such as 1h", s.PauseTimeout)
	}
	if s.Notify.Timeout < 0 {
		bad("notifications.timeout", "%s is negative; use a duration such as 5s", s.Notify.Timeout)
	}
	for i, w := range s.Notify.Webhooks {
		p := fmt.Sprintf("notifications.webhooks[%d]", i)
		switch {
		case w.URLEnv != "" && w.URL != "":
			bad(p+".urlEnv", "set either url or urlEnv, not both")
		case w.URLEnv != "":
		default:
			if err := checkURL(w.URL); err != nil {
				bad(p+".url", "%v", err)
			}
		}
		for j, ev := range w.On {
			if !slices.Contains(notifyEvents, ev) {
				bad(fmt.Sprintf("%s.on[%d]", p, j), "unknown event %q; use one of %s", ev, strings.Join(notifyEvents, ", "))
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

func (s *Spec) validateGateway(bad func(string, string, ...any)) {
	g := s.Gateway
	gt, ok := providers.LookupGateway(g.Type)
	switch {
	case !ok:
		bad("gateway.type", "unknown gateway %q; use one of %s", g.Type, strings.Join(providers.GatewayNames(), ", "))
	case g.Type == "builtin":
		validateBuiltin(g, bad)
	default:
		validateSection(bad, "gateway", "gateway type", g.Type, gt, g.Section())
	}
	mt, known := providers.LookupMetrics(s.Metrics.Type)
	if known {
		if gw, origin := mt.Gateway(); gw != "" && gw != g.Type {
			bad("metrics.type", "%s metrics come from %s; set gateway.type: %s or choose another metrics source", s.Metrics.Type, origin, gw)
		}
		validateSection(bad, "metrics", "metrics type", s.Metrics.Type, mt, s.Metrics.Section())
	}
	for _, name := range slices.Sorted(maps.Keys(s.Metrics.Sections)) {
		if name != s.Metrics.Type {
			bad("metrics."+name, "only used with metrics.type %s; remove it or set the type", name)
		}
	}
	if !known {
		bad("metrics.type", "unknown metrics source %q; use one of %s", s.Metrics.Type, strings.Join(providers.MetricsNames(), ", "))
	}
}

// sectionType is what validateSection needs of a gateway or metrics type.
type sectionType interface {
	Section() any
	Example() string
	Problems(section any) []providers.Problem
}

// validateSection checks the section of a gateway or metrics type (kind gateway or metrics): present
// when the type has one, and its problems, each under kind.name.
func validateSection(bad func(string, string, ...any), kind, what, name string, t sectionType, section any) {
	if t.Section() == nil {
		return
	}
	if section == nil {
		bad(kind+"."+name, "required for %s %s; e.g. %s", what, name, t.Example())
		return
	}
	for _, p := range t.Problems(section) {
		bad(kind+"."+name+"."+p.Field, "%s", p.Msg)
	}
}

// validateKind checks a metric's kind and the fields that go with it.
func (s *Spec) validateKind(p string, m MetricSpec, bad func(string, string, ...any)) {
	switch m.Kind {
	case providers.LatencyQuantile:
		if !(m.Quantile > 0 && m.Quantile < 1) {
			bad(p+".quantile", "%v is out of range; use a value between 0 and 1, e.g. 0.99", m.Quantile)
		}
	case providers.ErrorRate:
		if m.Quantile != 0 {
			bad(p+".quantile", "only used by kind latency; remove it")
		}
	case providers.Query:
		if strings.TrimSpace(m.Query) == "" {
			bad(p+".query", "required for kind query")
		}
		if s.Metrics.Type == "builtin" {
			bad(p+".kind", "kind query needs a query-capable metrics source (not builtin); use latency or error_rate")
		}
	case "":
		bad(p+".kind", "required; use latency, error_rate or query")
	default:
		bad(p+".kind", "unknown kind %q; use latency, error_rate or query", m.Kind)
	}
	if m.Kind != providers.Query && m.Query != "" {
		bad(p+".query", "only used by kind query; remove it")
	}
}

// metricChoices are a metric's fields that take one of a few words.
var metricChoices = []struct {
	field, noun string
	value       func(MetricSpec) string
	valid       []string
}{
	{"direction", "direction", func(m MetricSpec) string { return m.Direction }, []string{"increase", "decrease", "either"}},
	{"nanStrategy", "strategy", func(m MetricSpec) string { return m.NaNStrategy }, []string{"remove", "replace"}},
}

// effectRatios are the rules of a metric's effect sizes: an increase is a ratio of at least 1, a
// decrease one in (0, 1].
var effectRatios = []struct {
	field, rule, example string
	value                func(EffectSize) float64
	ok                   func(float64) bool
}{
	{"allowedIncrease", ">= 1", "e.g. 1.1 (10% increase tolerated)", func(e EffectSize) float64 { return e.AllowedIncrease }, increaseRatio},
	{"allowedDecrease", "in (0, 1]", "e.g. 0.9 (10% decrease tolerated)", func(e EffectSize) float64 { return e.AllowedDecrease }, decreaseRatio},
	{"criticalIncrease", ">= 1", "e.g. 1.5; a critical metric's increase fails the rollout only beyond it (default 1)", func(e EffectSize) float64 { return e.CriticalIncrease }, increaseRatio},
	{"criticalDecrease", "in (0, 1]", "e.g. 0.5 (default 1)", func(e EffectSize) float64 { return e.CriticalDecrease }, decreaseRatio},
}

func increaseRatio(v float64) bool { return v >= 1 && !math.IsInf(v, 0) }
func decreaseRatio(v float64) bool { return v > 0 && v <= 1 }

// orList writes words as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// validateWeights checks the metrics' group weights: all or none, one per group, adding up to 100.
func validateWeights(metrics []MetricSpec, bad func(string, string, ...any)) {
	groupWeight := map[string]float64{}
	weighted, unweighted := 0, 0
	for i, m := range metrics {
		p := fmt.Sprintf("analysis.metrics[%d]", i)
		switch {
		case m.Weight < 0 || math.IsNaN(m.Weight) || math.IsInf(m.Weight, 0):
			bad(p+".weight", "%v must be between 0 and 100", m.Weight)
		case m.Weight > 0:
			weighted++
			if w, ok := groupWeight[m.Group]; ok && w != m.Weight {
				bad(p+".weight", "group %q has weight %v in another metric; every metric of a group states the same weight", m.Group, w)
			}
			groupWeight[m.Group] = m.Weight
		default:
			unweighted++
		}
	}
	switch {
	case weighted == 0:
	case unweighted > 0:
		bad("analysis.metrics", "some metrics have a weight and some do not; give every metric its group's weight, or none")
	default:
		sum := 0.0
		for _, w := range groupWeight {
			sum += w
		}
		if math.Abs(sum-100) > 1e-9 {
			bad("analysis.metrics", "group weights add up to %v; they must add up to 100", sum)
		}
	}
}

// validateBuiltin checks the builtin gateway's own fields.
func validateBuiltin(g GatewaySpec, bad func(string, string, ...any)) {
	switch {
	case g.Listen == "" && g.Admin == "":
		bad("gateway.listen", "builtin gateway needs listen (embedded proxy, e.g. 127.0.0.1:8080) or admin (URL of a `canaryctl proxy` admin API)")
	case g.Listen != "" && g.Admin != "":
		bad("gateway.admin", "set either listen (embedded proxy) or admin (external proxy), not both")
	case g.Listen != "":
		if _, _, err := net.SplitHostPort(g.Listen); err != nil {
			bad("gateway.listen", "%q is not host:port; use e.g. 127.0.0.1:8080", g.Listen)
		}
		if g.TokenEnv != "" || g.TokenFile != "" {
			bad("gateway.tokenEnv", "a token is only used with admin; remove tokenEnv/tokenFile or set admin")
		}
	default:
		if err := checkURL(g.Admin); err != nil {
			bad("gateway.admin", "%v", err)
		}
		if g.TokenEnv != "" && g.TokenFile != "" {
			bad("gateway.tokenFile", "set either tokenEnv or tokenFile, not both")
		}
	}
}

func (s *Spec) validateAnalysis(bad func(string, string, ...any)) {
	a := s.Analysis
	if len(a.Metrics) == 0 {
		bad("analysis.metrics", "empty; leave the field out for the defaults (p99 latency, 5xx rate) or list metrics")
	}
	seen := map[string]bool{}
	for i, m := range a.Metrics {
		p := fmt.Sprintf("analysis.metrics[%d]", i)
		switch {
		case m.Name == "":
			bad(p+".name", "required; e.g. p99-latency")
		case seen[m.Name]:
			bad(p+".name", "%q is used twice; metric names must be unique", m.Name)
		}
		seen[m.Name] = true
		s.validateKind(p, m, bad)
		for _, c := range metricChoices {
			if v := c.value(m); !slices.Contains(c.valid, v) {
				bad(p+"."+c.field, "unknown %s %q; use %s", c.noun, v, orList(c.valid))
			}
		}
		for _, r := range effectRatios {
			if v := r.value(m.EffectSize); !r.ok(v) {
				bad(p+".effectSize."+r.field, "%v must be a ratio %s, %s", v, r.rule, r.example)
			}
		}
	}
	validateWeights(a.Metrics, bad)
	t := a.Thresholds
	if !(t.Marginal >= 0 && t.Marginal < t.Pass && t.Pass <= 100) {
		bad("analysis.thresholds", "need 0 <= marginal < pass <= 100, got marginal %v pass %v; e.g. marginal 75, pass 95", t.Marginal, t.Pass)
	}
	if a.Resolution < time.Second {
		bad("analysis.resolution", "%s is too fine; use 1s or more, e.g. 10s", dur(a.Resolution))
	}
	if a.ConsecutiveErrorLimit < 1 || a.ConsecutiveErrorLimit > 100 {
		bad("analysis.consecutiveErrorLimit", "%d is out of range; use 1..100 (default 4)", a.ConsecutiveErrorLimit)
	}
}

func (s *Spec) validateSteps(bad func(string, string, ...any)) {
	if len(s.Steps) == 0 {
		bad("steps", "empty; leave the field out for the defaults (2.5%%, 10%%, 100%%) or list steps")
	}
	if len(s.Steps) > MaxSteps {
		bad("steps", "%d steps; use at most %d", len(s.Steps), MaxSteps)
	}
	prev := 0
	for i, st := range s.Steps {
		p := fmt.Sprintf("steps[%d]", i)
		bp, err := providers.PercentToBP(st.Weight)
		switch {
		case err != nil || bp == 0:
			bad(p+".weight", "%v must be a percentage in (0, 100] with at most two decimals, e.g. 2.5", st.Weight)
		case bp <= prev:
			bad(p+".weight", "%v%% is not above the previous step; weights must increase", st.Weight)
		default:
			prev = bp
		}
		if st.Interval < s.Analysis.Resolution {
			bad(p+".interval", "%s is shorter than analysis.resolution (%s); use a longer interval or a finer resolution", dur(st.Interval), dur(s.Analysis.Resolution))
		}
		if st.Warmup < 0 {
			bad(p+".warmup", "%s is negative; use a duration such as 30s", dur(st.Warmup))
		}
		if st.Lookback < 0 {
			bad(p+".lookback", "%s is negative; use 0 (everything since the warm-up) or a duration such as 5m", dur(st.Lookback))
		} else if st.Lookback != 0 && st.Lookback < st.Interval {
			bad(p+".lookback", "%s is shorter than the interval (%s); data would be skipped; use 0 or at least the interval", dur(st.Lookback), dur(st.Interval))
		}
		if st.Duration < st.Warmup+st.Interval {
			bad(p+".duration", "%s leaves no interval to judge after the warm-up (%s) and one interval (%s); make it at least %s",
				dur(st.Duration), dur(st.Warmup), dur(st.Interval), dur(st.Warmup+st.Interval))
		}
	}
}

// SplitFor returns the split of step i: canary and baseline each get the step's weight; when twice the
// weight exceeds 100%, canary and baseline get 50% each and stable none. With analysis.control
// stable there is no baseline: the canary gets the same share (at most 50%, so that stable, the
// control, keeps at least as much traffic) and stable the rest; before/after judging
// (gateway.kong.mode bluegreen) switches the canary's one step to 100%.
func (s *Spec) SplitFor(i int) providers.Split {
	bp, _ := providers.PercentToBP(s.Steps[i].Weight)
	if s.BeforeAfter() {
		return providers.Split{Canary: bp}
	}
	if 2*bp > providers.BasisPoints {
		bp = providers.BasisPoints / 2
	}
	if !s.HasBaseline() {
		return providers.Split{Canary: bp}
	}
	return providers.Split{Canary: bp, Baseline: bp}
}

// MetricDefs returns the metrics to fetch, in spec order.
func (s *Spec) MetricDefs() []providers.Metric {
	out := make([]providers.Metric, len(s.Analysis.Metrics))
	for i, m := range s.Analysis.Metrics {
		out[i] = providers.Metric{Name: m.Name, Kind: m.Kind, Quantile: m.Quantile, Query: m.Query}
	}
	return out
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL; use e.g. http://10.0.0.5:8080", s)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q must be an http:// or https:// URL with a host, e.g. http://10.0.0.5:8080", s)
	}
	return nil
}

// flatten turns an errors.Join tree into its leaves.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
