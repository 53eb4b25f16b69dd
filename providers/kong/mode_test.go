package kong

import (
	"slices"
	"testing"
)

// TestModeTypes: every mode users can name has its type (validation, capabilities, router) and no
// type is unreachable.
func TestModeTypes(t *testing.T) {
	t.Parallel()
	for _, m := range Modes {
		mt, ok := modeTypes[m]
		if !ok {
			t.Errorf("mode %s has no modeType", m)
			continue
		}
		if mt.caps == nil || mt.router == nil {
			t.Errorf("mode %s: caps or router missing", m)
		}
	}
	for m := range modeTypes {
		if !slices.Contains(Modes, m) {
			t.Errorf("modeType %s is not in Modes", m)
		}
	}
}
