// Package e2e holds canaryctl's end-to-end tests: the real binary, built once, run as separate
// processes on loopback (demo scenarios, SIGKILL and run --resume, abort and pause/resume from a
// second process, an invalid spec). Run them with go test ./e2e; -short skips them.
package e2e
