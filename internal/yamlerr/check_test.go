package yamlerr

import (
	"strings"
	"testing"
	"time"
)

type checked struct {
	Stable struct {
		Addresses []string `yaml:"addresses"`
	} `yaml:"stable"`
	Steps []struct {
		Weight   float64       `yaml:"weight"`
		Duration time.Duration `yaml:"duration"`
		Approval bool          `yaml:"approval"`
	} `yaml:"steps"`
	Limit *int              `yaml:"limit"`
	Vars  map[string]string `yaml:"vars"`
	Own   selfChecked       `yaml:"own"`
}

// selfChecked takes any shape and checks itself (SelfChecked): Check leaves it alone.
type selfChecked struct {
	A int `yaml:"a"`
}

func (selfChecked) YAMLSelfChecked() {}

func TestCheck(t *testing.T) {
	t.Parallel()
	hint := func(p string) string {
		if p == "steps.weight" {
			return "a percentage, e.g. 2.5"
		}
		return ""
	}
	for _, tc := range []struct {
		name, yaml string
		want       []string // every problem, in document order
	}{
		{"valid", "stable: {addresses: [a]}\nsteps:\n- {weight: 1, duration: 5s, approval: yes}\nlimit: 3\nvars: {a: 1}\n", nil},
		{"self-checked shapes are left alone", "own: [1, 2]\n", nil},
		{"every problem at once", "stabel: {}\nsteps:\n  - wieght: 10\n    duration: 5\n  - weight: \"ten\"\nlimit: 2.5\n", []string{
			`stabel (line 1): unknown field "stabel"; did you mean stable?`,
			`steps[0].wieght (line 3): unknown field "wieght"; did you mean weight?`,
			`steps[0].duration (line 4): 5 has no unit; write a duration with its unit, e.g. 5s (seconds) or 5m (minutes)`,
			`steps[1].weight (line 5): "ten" is not a number; write a percentage, e.g. 2.5`,
			`limit (line 6): 2.5 is not a whole number; write a whole number, e.g. 3`,
		}},
		{"no close name", "zzz: 1\n", []string{`zzz (line 1): unknown field "zzz"; the fields here are limit, own, stable, steps, vars`}},
		{"case", "Steps: []\n", []string{`Steps (line 1): unknown field "Steps"; did you mean steps?`}},
		{"bad duration", "steps: [{duration: soon}]\n", []string{`steps[0].duration (line 1): "soon" is not a duration; write a number with a unit (ms, s, m, h), e.g. 30s, 5m or 1h30m`}},
		{"list expected", "steps: {weight: 1}\n", []string{`steps (line 1): a group of fields where a list is due; write each item on its own line starting with '- ', or [a, b]`}},
		{"group expected", "stable: http://x\n", []string{`stable (line 1): "http://x" where a group of fields is due; write the fields below stable, indented, one per line (addresses)`}},
		{"flag", "steps: [{approval: maybe}]\n", []string{`steps[0].approval (line 1): "maybe" is not true or false; write true or false`}},
		{"twice", "limit: 1\nlimit: 2\n", []string{"limit (line 2): given twice; keep one"}},
		{"alias and merge", "base: &b {weight: 1}\n", []string{`base (line 1): unknown field "base"; the fields here are limit, own, stable, steps, vars`}},
		{"not yaml", "steps: [\n", []string{"line 1: did not find expected node content; this is not valid YAML: check the indentation and the ':' after every field name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, p := range Check([]byte(tc.yaml), &checked{}, hint) {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			for _, g := range got {
				if strings.Contains(g, "time.Duration") || strings.Contains(g, "float64") || strings.Contains(g, "!!") {
					t.Errorf("a Go or YAML type name in %q", g)
				}
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	t.Parallel()
	known := []string{"alpha", "stable", "steps", "weight", "on"}
	for in, want := range map[string]string{"alfa": "alpha", "stabel": "stable", "wieght": "weight", "stepz": "steps", "ON": "on", "xyz": "", "of": "on"} {
		if got := suggest(in, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("stable: {addresses: [a]}\nsteps: [{weight: 1}]\n")
	f.Add("a: &x [1]\nb: *x\n<<: {limit: 1}\n")
	f.Fuzz(func(t *testing.T, src string) {
		for _, p := range Check([]byte(src), &checked{}, nil) {
			if p.Msg == "" {
				t.Fatalf("empty problem for %q", src)
			}
		}
	})
}
