package sim

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseScenario: any input either parses into a scenario whose model validates and whose spec
// builds, or fails with an error; never a panic.
func FuzzParseScenario(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(library, "*.yaml"))
	files = append(files, "testdata/full.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("expect: promote\nrate: {rps: 1e300}\nlatency: {median: 1ns}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseScenario(data, "fuzz")
		if err != nil {
			return
		}
		if err := s.Model.Validate(); err != nil {
			t.Fatalf("parsed scenario with an invalid model: %v", err)
		}
		if _, err := s.Spec(); err != nil {
			t.Fatalf("parsed scenario whose spec does not build: %v", err)
		}
	})
}
