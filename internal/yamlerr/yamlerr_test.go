package yamlerr

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type doc struct {
	Split struct {
		CanaryPercent float64 `yaml:"canaryPercent"`
	} `yaml:"split"`
	Rules []struct {
		Cohort string `yaml:"cohort"`
		Match  struct {
			Equals []int `yaml:"equals"`
		} `yaml:"match"`
	} `yaml:"rules"`
	On bool `yaml:"on"`
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, yaml, want string }{
		{"top-level type", "on: maybe\n", "on (line 1): cannot unmarshal !!str `maybe` into bool"},
		{"nested type", "split:\n  canaryPercent: lots\n", "split.canaryPercent (line 2): cannot unmarshal !!str `lots` into float64"},
		{"in a list", "rules:\n- cohort: canary\n  match: {equals: [1, x]}\n",
			"rules[0].match.equals (line 3): cannot unmarshal !!str `x` into int"},
		{"flow list item", "rules: [{cohort: canary, match: {equals: [x, 1]}}]\n",
			"rules[0] (line 1): cannot unmarshal !!str `x` into int"},
		{"block list item", "rules:\n- cohort: canary\n  match:\n    equals: [1]\n- cohort: 5\n  match: {equals: [x]}\n",
			"rules[1].match.equals[0] (line 6): cannot unmarshal !!str `x` into int"},
		{"first key of a list item", "rules:\n- match: {equals: [x]}\n", "rules[0].match.equals[0] (line 2): cannot unmarshal !!str `x` into int"},
		{"several fields on one line", "split: {canaryPercent: 1}\nrules:\n- {cohort: canary, match: {equals: [1, x]}}\n",
			"rules[0] (line 3): cannot unmarshal !!str `x` into int"},
		{"two problems", "on: maybe\nsplit: {canaryPercent: lots}\n",
			"on (line 1): cannot unmarshal !!str `maybe` into bool; split.canaryPercent (line 2): cannot unmarshal !!str `lots` into float64"},
		{"unknown field", "split:\n  canary: 5\n", "split.canary (line 2): field canary not found in type struct { CanaryPercent float64 \"yaml:\\\"canaryPercent\\\"\" }"},
		{"syntax error keeps its line", "split: [\n", "line 1: did not find expected node content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var d doc
			dec := yaml.NewDecoder(strings.NewReader(tc.yaml))
			dec.KnownFields(true)
			err := dec.Decode(&d)
			if err == nil {
				t.Fatal("no error")
			}
			if got := Describe([]byte(tc.yaml), err); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
