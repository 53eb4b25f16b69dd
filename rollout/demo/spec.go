package demo

import _ "embed"

// Spec is the rollout spec of `canaryctl demo` (demo.yaml), embedded in the binary.
//
//go:embed demo.yaml
var Spec []byte

// SpecPath is where Spec lives in the source tree.
const SpecPath = "rollout/demo/demo.yaml"
