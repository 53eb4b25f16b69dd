package sim

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
	"github.com/canaryctl/canaryctl/rollout/sim/traffic"
)

const library = "../../testdata/scenarios"

func loadLibrary(t *testing.T) []*Scenario {
	t.Helper()
	scs, err := LoadScenarios([]string{library})
	if err != nil {
		t.Fatal(err)
	}
	return scs
}

func scenario(t *testing.T, name string) *Scenario {
	t.Helper()
	s, err := LoadScenario(filepath.Join(library, name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLibrary checks the shape of the scenario library: at least 20 scenarios, each class with a
// good and a bad canary, names from the file names, and the cases the acceptance targets name.
func TestLibrary(t *testing.T) {
	t.Parallel()
	scs := loadLibrary(t)
	if len(scs) < 20 {
		t.Errorf("%d scenarios, want at least 20", len(scs))
	}
	expects := map[string]map[string]bool{}
	for _, s := range scs {
		if base := strings.TrimSuffix(filepath.Base(s.File), ".yaml"); s.Name != base {
			t.Errorf("%s: name %q, want the file's name %q", s.File, s.Name, base)
		}
		if s.Class == "" || s.Description == "" {
			t.Errorf("%s: class and description are required in the library", s.File)
		}
		if expects[s.Class] == nil {
			expects[s.Class] = map[string]bool{}
		}
		expects[s.Class][s.Expect] = true
	}
	for class, e := range expects {
		if class == "last step only" {
			continue // a regression only: its A/A is the ideal class's
		}
		if !e[ExpectPromote] || !e[ExpectRollback] {
			t.Errorf("class %q has expectations %v; want a good and a bad canary", class, e)
		}
	}
	want := map[string]func(*Scenario) bool{
		"5 req/s":                func(s *Scenario) bool { return s.Rate.RPS == 5 },
		"20 req/s":               func(s *Scenario) bool { return s.Rate.RPS == 20 },
		"+1 pp at the last step": func(s *Scenario) bool { return s.Regression.AddErrorRate == 0.01 && s.Regression.FromStep == 3 },
		"+20 ms median":          func(s *Scenario) bool { return s.Regression.Added == 20*time.Millisecond },
		"10% 5xx at 200 req/s in a median < 10 s": func(s *Scenario) bool {
			return s.Rate.RPS == 200 && s.Regression.ErrorRate == 0.1 && s.Target.MedianRollback == 10*time.Second
		},
		"10% 5xx at 5 req/s within 15 min": func(s *Scenario) bool {
			return s.Rate.RPS == 5 && s.Regression.ErrorRate == 0.1 && s.Target.Within == 15*time.Minute
		},
	}
	for what, ok := range want {
		if !slices.ContainsFunc(scs, ok) {
			t.Errorf("the library has no scenario for %s", what)
		}
	}
}

func TestScenarioErrors(t *testing.T) {
	t.Parallel()
	const good = "expect: promote\nrate: {rps: 100}\nlatency: {median: 50ms}\n"
	cases := []struct {
		name, yaml, want string
	}{
		{"empty", "", "empty scenario"},
		{"unknown field", good + "colour: blue\n", "colour"},
		{"bad expect", strings.Replace(good, "promote", "pass", 1), "expect"},
		{"promote with a regression", good + "regression: {addErrorRate: 0.01}\n", "expect"},
		{"rollback without regression", strings.Replace(good, "promote", "rollback", 1), "expect"},
		{"detection target on a good canary", good + "target: {minDetection: 0.9}\n", "target"},
		{"bad name", "name: Big Name\n" + good, "name"},
		{"model field", strings.Replace(good, "rps: 100", "rps: 0", 1), "rate.rps"},
		{"unknown mode", good + "policy: {mode: bayes}\n", "analysis.mode"},
		{"bad alpha", good + "policy: {alpha: 2}\n", "alpha"},
		{"spec field owned by the simulator", good + "policy: {spec: {gateway: {type: kong}}}\n", "policy.spec.gateway"},
		{"unknown gateway", good + "policy: {gateway: nginx}\n", "policy.gateway"},
		{"bad steps", good + "policy: {steps: [0]}\n", "steps"},
		{"short limit", good + "limit: 1s\n", "limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseScenario([]byte(tc.yaml), "x")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func run(t *testing.T, n int, scs ...*Scenario) *Report {
	t.Helper()
	rep, err := Run(t.Context(), Config{Scenarios: scs, Rollouts: n, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestSimulatorRunsTheEngine shows that what is measured is what the engine does: the step policy
// lives only in package rollout, and changing it (through the spec, the only way in) changes the
// simulated verdicts exactly as the engine's rules say.
func TestSimulatorRunsTheEngine(t *testing.T) {
	t.Parallel()
	const n = 2 // rollouts per policy
	minBake := scenario(t, "aa-ideal")
	minBake.Policy.Spec = map[string]any{"analysis": map[string]any{"sequential": map[string]any{"minBake": "4m"}}}
	kayenta := scenario(t, "aa-ideal")
	kayenta.Policy.Mode = "kayenta"
	oneStep := scenario(t, "aa-ideal")
	oneStep.Policy.Steps = []any{10}
	cases := []struct {
		name  string
		sc    *Scenario
		check func(r Rollout) string // "" when the promoted rollout r follows the rule
	}{
		{"default: a step passes after 1 minute's bake", scenario(t, "aa-ideal"), func(r Rollout) string {
			if r.Seconds < 3*60 || r.Step != 2 {
				return "want 3 steps of at least 1 minute each"
			}
			return ""
		}},
		{"minBake 4m: a step passes after 4 minutes at the earliest", minBake, func(r Rollout) string {
			if r.Seconds < 3*240 {
				return "want at least 3 × 4 min"
			}
			return ""
		}},
		{"kayenta: each 5-minute step is judged at its end", kayenta, func(r Rollout) string {
			if r.Seconds != 900 {
				return "want exactly 3 × 5 min"
			}
			return ""
		}},
		{"one 10% step", oneStep, func(r Rollout) string {
			if r.Step != 0 || r.Seconds > 300 {
				return "want one step, promoted within its 5 minutes"
			}
			return ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			promoted := 0
			for i := range n {
				r, err := runOne(t.Context(), tc.sc, seedFor(7, tc.sc.Name, i))
				if err != nil {
					t.Fatal(err)
				}
				if r.Outcome != Promoted {
					continue
				}
				promoted++
				if why := tc.check(r); why != "" {
					t.Errorf("rollout %d promoted after %.1f s at step %d: %s", i, r.Seconds, r.Step+1, why)
				}
			}
			if promoted == 0 {
				t.Fatalf("none of %d good canaries promoted; the rule cannot be checked", n)
			}
		})
	}
}

func TestResultsDoNotDependOnWorkers(t *testing.T) {
	t.Parallel()
	sc := scenario(t, "ab-10pct-5xx-200rps")
	a, err := Run(t.Context(), Config{Scenarios: []*Scenario{sc}, Rollouts: 4, Seed: 3, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(t.Context(), Config{Scenarios: []*Scenario{sc}, Rollouts: 4, Seed: 3, Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	ra, rb := a.Results[0], b.Results[0]
	if ra.MedianSeconds != rb.MedianSeconds || ra.RolledBack != rb.RolledBack || ra.MeanExposed != rb.MeanExposed {
		t.Errorf("1 worker: %+v\n3 workers: %+v", ra, rb)
	}
	if ra.RolledBack != 4 || ra.MedianRollbackS <= 0 {
		t.Errorf("a 10%%-5xx canary: %d of 4 rolled back, median %.1f s after the onset", ra.RolledBack, ra.MedianRollbackS)
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Run(ctx, Config{Scenarios: []*Scenario{scenario(t, "aa-ideal")}, Rollouts: 100}); err == nil {
		t.Fatal("a cancelled simulation reported success")
	}
}

type stepRouter struct{ r traffic.Route }

func (s stepRouter) Route(time.Time) traffic.Route { return s.r }

func TestRequestLog(t *testing.T) {
	t.Parallel()
	sc := scenario(t, "aa-ideal")
	clock := &virtualClock{now: t0, limit: t0.Add(time.Hour)}
	gen := traffic.New(sc.Model, t0, stepRouter{traffic.Route{Split: providers.Split{Canary: 5000, Baseline: 5000}}}, [2]uint64{1, 2})
	l := newRequestLog(clock, gen)
	clock.now = t0.Add(10 * time.Second)
	reqs, err := l.Requests(t.Context(), t0.Add(2*time.Second), t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) < 1000 {
		t.Fatalf("%d requests in 8 s at 200 req/s", len(reqs))
	}
	for i, q := range reqs {
		if q.Time.Before(t0.Add(2*time.Second)) || !q.Time.Before(clock.now) || i > 0 && q.Time.Before(reqs[i-1].Time) {
			t.Fatalf("request %d at %s: want [since, now) in order", i, q.Time.Sub(t0))
		}
	}
	// a later window sees the same requests where the windows overlap
	again, err := l.Requests(t.Context(), t0.Add(5*time.Second), t0.Add(8*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var want []providers.Request
	for _, q := range reqs {
		if !q.Time.Before(t0.Add(5*time.Second)) && q.Time.Before(t0.Add(8*time.Second)) {
			want = append(want, q)
		}
	}
	if !slices.Equal(again, want) {
		t.Errorf("overlapping window: %d requests, want %d", len(again), len(want))
	}
	if _, err := l.Requests(t.Context(), t0, t0.Add(time.Second)); err == nil {
		t.Error("a window moving back before dropped requests gave no error")
	}
}

var rowRE = regexp.MustCompile(`^\| ([a-z0-9._-]+) \| [0-9.]+ req/s \| (good|bad) \| (sequential α=[0-9.]+|kayenta) \| [0-9.]+% \[[0-9.]+%, [0-9.]+%\] \| [0-9.]+% \| [0-9.]+% \| [^|]+ / [^|]+ \| [^|]+ \| [^|]+ \| (✅|❌) [^|]+ \|$`)

// TestReadmeTable checks that README.md's decision table is the committed results file
// (results.json, written by make sim) rendered by the generator, and that the results file covers
// the library as it is: every scenario, in order, each run from the same file content (SHA-256).
// It does not rerun the library: make sim does, and make readme-table re-renders the table.
func TestReadmeTable(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	table, err := Table(doc)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("results.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := ReadReport(f)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	if err := rep.WriteMarkdown(&want); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimPrefix(table, "\n"); got != want.String() {
		t.Errorf("README.md's decision table is not results.json rendered; run make readme-table (or make sim).\nREADME:\n%s\nresults.json:\n%s", got, want.String())
	}
	lib := loadLibrary(t)
	if len(rep.Results) != len(lib) {
		t.Fatalf("results.json has %d scenarios, the library %d; run make sim", len(rep.Results), len(lib))
	}
	for i, s := range lib {
		r := rep.Results[i]
		if r.Scenario != s.Name || r.ScenarioSHA256 != s.SHA256 || r.Rollouts != rep.Rollouts {
			t.Errorf("results.json row %d: %s (sha256 %.12s, %d rollouts), library: %s (sha256 %.12s); run make sim",
				i+1, r.Scenario, r.ScenarioSHA256, r.Rollouts, s.Name, s.SHA256)
		}
	}
}

// TestTableFormat checks the generator's rows against the README's documented columns.
func TestTableFormat(t *testing.T) {
	t.Parallel()
	rep := run(t, 1, scenario(t, "ab-10pct-5xx-200rps"), scenario(t, "aa-5rps"))
	var own strings.Builder
	if err := rep.WriteMarkdown(&own); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(own.String()), "\n")
	if len(lines) != 6 || !strings.Contains(lines[0], "1 rollouts per scenario, seed 7") || lines[2] != TableHeader || lines[3] != TableRule {
		t.Fatalf("table does not start with the generator's caption, header and rule:\n%s", own.String())
	}
	for _, l := range lines[4:] {
		if !rowRE.MatchString(l) {
			t.Errorf("row not in the generator's format:\n%s", l)
		}
	}
	var back bytes.Buffer
	if err := rep.WriteJSON(&back); err != nil {
		t.Fatal(err)
	}
	again, err := ReadReport(&back)
	if err != nil {
		t.Fatal(err)
	}
	var twice strings.Builder
	if err := again.WriteMarkdown(&twice); err != nil {
		t.Fatal(err)
	}
	if twice.String() != own.String() {
		t.Errorf("a report read back from its JSON renders differently:\n%s\nwant\n%s", twice.String(), own.String())
	}
}

// TestFullExample keeps the README's every-field example valid and in the README.
func TestFullExample(t *testing.T) {
	t.Parallel()
	full, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadScenario("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "example" || s.Clients == nil || len(s.Events) != 3 || s.Cohorts.Canary.ColdStart == nil || s.Target.Within != 15*time.Minute {
		t.Errorf("full example parsed as %+v", s)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```yaml\n"+string(full)+"```") {
		t.Error("README.md does not hold testdata/full.yaml verbatim; copy it in")
	}
}

// TestEngineStepPolicyChangesResult changes the engine's own step policy — its default steps,
// rollout.DefaultStepWeights, which a spec without steps gets — and shows the simulator's results
// follow: the simulator has no schedule of its own. Not parallel: it changes a package variable of
// rollout for its duration (parallel tests start after it).
func TestEngineStepPolicyChangesResult(t *testing.T) {
	sc := scenario(t, "aa-ideal")
	if sc.Policy.Steps != nil {
		t.Fatal("aa-ideal names its steps; the test needs a scenario on the engine's default steps")
	}
	const n = 3
	runAll := func() []Rollout {
		var out []Rollout
		for i := range n {
			r, err := runOne(t.Context(), sc, seedFor(7, sc.Name, i))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	def := runAll()
	saved := rollout.DefaultStepWeights
	t.Cleanup(func() { rollout.DefaultStepWeights = saved })
	rollout.DefaultStepWeights = []float64{100}
	one := runAll()
	for i := range n {
		if def[i].Outcome != Promoted || one[i].Outcome != Promoted {
			t.Fatalf("rollout %d: %s with the default steps, %s with one step; want good canaries promoted", i, def[i].Outcome, one[i].Outcome)
		}
		if def[i].Step != len(saved)-1 || one[i].Step != 0 {
			t.Errorf("rollout %d promoted at step %d with steps %v and at step %d with [100]", i, def[i].Step+1, saved, one[i].Step+1)
		}
		if one[i].Seconds >= def[i].Seconds || one[i].Exposed <= def[i].Exposed/2 {
			t.Errorf("rollout %d: one 100%% step took %.0f s and served %d canary requests, the default steps %.0f s and %d",
				i, one[i].Seconds, one[i].Exposed, def[i].Seconds, def[i].Exposed)
		}
	}
}

// yamlPaths lists the YAML keys a type accepts as dotted paths ("cohorts.stable.episodes.every";
// a list's elements as "events[]"), following inline structs, pointers and lists; a map or an
// interface ends a path.
func yamlPaths(t reflect.Type, prefix string, out map[string]bool) {
	switch t.Kind() {
	case reflect.Pointer:
		yamlPaths(t.Elem(), prefix, out)
		return
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct || t.Elem().Kind() == reflect.Pointer {
			yamlPaths(t.Elem(), prefix+"[]", out)
		}
		return
	case reflect.Struct:
		if t == reflect.TypeFor[time.Time]() {
			return
		}
	default:
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if strings.Contains(opts, "inline") {
			yamlPaths(f.Type, prefix, out)
			continue
		}
		p := name
		if prefix != "" {
			p = prefix + "." + name
		}
		out[p] = true
		yamlPaths(f.Type, p, out)
	}
}

// docPaths lists the keys present in a parsed YAML document, in yamlPaths' notation.
func docPaths(v any, prefix string, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out[p] = true
			docPaths(e, p, out)
		}
	case []any:
		for _, e := range v {
			docPaths(e, prefix+"[]", out)
		}
	}
}

// TestFullExampleHasEveryField: the format's documentation (README.md, which holds
// testdata/full.yaml verbatim: TestFullExample) names every field the parser accepts. A field is
// documented by a key in the example, or, for the few that cannot be set beside the others (a bad
// canary's example has no false-rollback target), by name in the example's comments.
func TestFullExampleHasEveryField(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	docPaths(doc, "", have)
	accepted := map[string]bool{}
	yamlPaths(reflect.TypeFor[Scenario](), "", accepted)
	// The three cohorts are one type: a field shown for one is documented for all.
	cohort := regexp.MustCompile(`^cohorts\.(stable|baseline|canary)\.`)
	for _, m := range []map[string]bool{have, accepted} {
		for p := range m {
			if c := cohort.ReplaceAllString(p, "cohorts.*."); c != p {
				delete(m, p)
				m[c] = true
			}
		}
	}
	inComments := map[string]bool{"target.maxFalseRollbacks": true, "target.maxUpperBound": true, "regression.errorRate": true}
	if len(accepted) < 50 {
		t.Fatalf("found %d accepted fields; the walk over Scenario missed some", len(accepted))
	}
	for p := range accepted {
		switch {
		case have[p]:
		case inComments[p]:
			leaf := p[strings.LastIndex(p, ".")+1:]
			if !regexp.MustCompile(`#.*\b` + leaf + `\b`).Match(raw) {
				t.Errorf("%s: neither a key of testdata/full.yaml nor named in its comments", p)
			}
		default:
			t.Errorf("%s: accepted by the parser but not in testdata/full.yaml (README.md's every-field example)", p)
		}
	}
	for p := range have {
		if !accepted[p] && !strings.HasPrefix(p, "policy.spec.") && !strings.HasPrefix(p, "policy.steps") {
			t.Errorf("%s: in the example but not a field of the format", p)
		}
	}
}
