package cmd

import (
	"context"
	"errors"
	"fmt"

	"github.com/canaryctl/canaryctl/judge"
	"github.com/canaryctl/canaryctl/rollout"
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

// quietError is an error whose message is already out (the command's result or final line): Run
// prints nothing, ExitCode maps the error it wraps.
type quietError struct{ err error }

func (e *quietError) Error() string { return e.err.Error() }
func (e *quietError) Unwrap() error { return e.err }

// quiet reports whether err's message must not be printed.
func quiet(err error) bool {
	var q *quietError
	var st *exitStatus
	return errors.As(err, &q) || errors.As(err, &st) && st.err == nil
}

// verdictError is a judgement other than Pass (canaryctl judge, analyze): the command's result,
// not a failure of the tool.
type verdictError struct{ verdict judge.Verdict }

func (e *verdictError) Error() string { return fmt.Sprintf("verdict %s", e.verdict) }

// verdictResult is the error of a command whose result is verdict v: nil for Pass, a quiet
// *verdictError otherwise.
func verdictResult(v judge.Verdict) error {
	if v == judge.VerdictPass {
		return nil
	}
	return &quietError{&verdictError{verdict: v}}
}

// rolloutEnd is a rollout that did not end promoted (run, demo, watch).
type rolloutEnd struct{ out rollout.Outcome }

func (e *rolloutEnd) Error() string {
	out := e.out
	switch {
	case out.Interrupted:
		return fmt.Sprintf("interrupted: %s", out.Reason)
	case out.NotStarted:
		return fmt.Sprintf("could not run the rollout (no traffic reached the canary): %s", out.Reason)
	case out.Phase == rollout.RolledBack:
		return fmt.Sprintf("rolled back: %s", out.Reason)
	case out.Phase == rollout.Paused:
		return fmt.Sprintf("paused: %s", out.Reason)
	case out.Phase == rollout.Failed:
		return fmt.Sprintf("FAILED: %s", out.Reason)
	}
	return fmt.Sprintf("rollout stopped in phase %s: %s", out.Phase, out.Reason)
}

// rolloutCode is the exit code of a rollout's end.
func rolloutCode(out rollout.Outcome) int {
	switch {
	case out.Phase == rollout.Promoted:
		return ExitOK
	case out.Interrupted:
		return ExitInterrupted
	case out.NotStarted:
		return ExitNotStarted
	case out.Phase == rollout.RolledBack:
		return ExitFail
	case out.Phase == rollout.Paused:
		return ExitMarginal
	}
	return ExitError
}

// verdictCode is the exit code of a judge verdict.
func verdictCode(v judge.Verdict) int {
	switch v {
	case judge.VerdictPass:
		return ExitOK
	case judge.VerdictMarginal:
		return ExitMarginal
	}
	return ExitFail
}

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
	var ve *verdictError
	if errors.As(err, &ve) {
		return verdictCode(ve.verdict)
	}
	var re *rolloutEnd
	if errors.As(err, &re) {
		return rolloutCode(re.out)
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
