package judge

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Sources of a ConfigError.
const (
	SourceConfig     = "canary config"
	SourcePairs      = "metric set pairs"
	SourceThresholds = "score thresholds"
)

// ErrUnknownMetric: a metric set pair names a metric the canary config does not define. It is wrapped
// in a *ConfigError; match it with errors.Is.
var ErrUnknownMetric = errors.New("no metric config for metric set pair")

// ConfigError reports invalid judge input — the canary config, the metric set pairs or the score
// thresholds — with the JSON path of the offending value, the value and what is allowed. Kayenta
// crashes or silently falls back to defaults on such input; canaryctl rejects it before judging.
// It implements InvalidInput so that the command line maps it to exit code 2.
type ConfigError struct {
	Source  string // SourceConfig, SourcePairs or SourceThresholds
	Path    string // e.g. "metrics[2].analysisConfigurations.canary.direction"; "" for the whole document
	Problem string // what is wrong, the bad value and what is allowed
	Err     error  // optional wrapped sentinel (ErrUnknownMetric)
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Path != "" {
		b.WriteString(": ")
		b.WriteString(e.Path)
	}
	b.WriteString(": ")
	b.WriteString(e.Problem)
	return b.String()
}

// Unwrap returns the wrapped sentinel, if any.
func (e *ConfigError) Unwrap() error { return e.Err }

// InvalidInput marks the error as the user's input being wrong (exit code 2).
func (e *ConfigError) InvalidInput() bool { return true }

// describe renders a decoded JSON value for an error message: short, and saying what kind it is.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("%t (a boolean)", x)
	case json.Number:
		return string(x) + " (a number)"
	case string:
		return fmt.Sprintf("%s (a string)", clip(quote(x)))
	case []any:
		b, _ := json.Marshal(x)
		return "a list " + clip(string(b))
	case map[string]any:
		b, _ := json.Marshal(x)
		return "an object " + clip(string(b))
	default:
		return fmt.Sprintf("%v", x)
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func clip(s string) string {
	const max = 60
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// pathKey appends an object key to a JSON path.
func pathKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// pathIndex appends a list index to a JSON path.
func pathIndex(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }
