package cmd

import (
	"context"
	"errors"
	"fmt"
)

// Exit codes, decided in one place (ExitCode) and documented in README.md.
const (
	ExitOK          = 0   // pass, promoted
	ExitError       = 1   // any other error
	ExitUsage       = 2   // bad flags, invalid config, spec or input
	ExitFail        = 3   // judge verdict Fail, rollout rolled back
	ExitMarginal    = 4   // judge verdict Marginal, rollout paused awaiting approval
	ExitNotStarted  = 5   // the rollout could not run (deploy, gateway, metrics, state dir) before any traffic moved
	ExitInterrupted = 130 // SIGINT/SIGTERM/SIGHUP (after traffic went back to stable)
)

// invalidInput is implemented by errors that mean "the user's input is wrong" (judge.ConfigError,
// rollout.SpecError, ...). Packages mark their errors with it and need not import cmd.
type invalidInput interface{ InvalidInput() bool }

// exitStatus carries an explicit exit code, e.g. for a verdict that is not an error of the tool.
type exitStatus struct {
	code int
	err  error
}

func (e *exitStatus) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitStatus) Unwrap() error { return e.err }

// withExitCode wraps err (which may be nil for a silent verdict) with an explicit exit code.
func withExitCode(code int, err error) error { return &exitStatus{code: code, err: err} }

// notStartedError: the rollout could not run (a deployment, the gateway, the metrics source or the
// state directory failed) and no traffic moved to the canary — a broken pipeline, not a bad canary.
type notStartedError struct{ err error }

func (e *notStartedError) Error() string { return e.err.Error() }
func (e *notStartedError) Unwrap() error { return e.err }

// usageError marks a command-line mistake.
type usageError struct{ err error }

func (e *usageError) Error() string      { return e.err.Error() }
func (e *usageError) Unwrap() error      { return e.err }
func (e *usageError) InvalidInput() bool { return true }

// usageErrorf builds a usage error (exit code 2).
func usageErrorf(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// ExitCode maps an error returned by a command to the process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var st *exitStatus
	if errors.As(err, &st) {
		return st.code
	}
	var inv invalidInput
	if errors.As(err, &inv) && inv.InvalidInput() {
		return ExitUsage
	}
	if errors.Is(err, context.Canceled) {
		return ExitInterrupted
	}
	var ns *notStartedError
	if errors.As(err, &ns) {
		return ExitNotStarted
	}
	return ExitError
}
