// Package conformance holds the differential conformance suite of the built-in gateway: a
// corpus of raw requests and raw upstream answers (testdata/corpus.yaml) run against
// `canaryctl proxy` on both fronts (the HTTP/1.1 loop and netHTTPOnly) and against nginx on
// loopback, asserting the same class of outcome. See conformance_test.go.
package conformance
