// Package cmd holds canaryctl's cobra commands, output formatting and exit codes.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/canaryctl/canaryctl/rollout"
)

// Env is what every command gets injected: IO streams, environment, clock and logger, so tests run
// commands with buffers and fakes.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// StdoutIsTerminal selects human output by default.
	StdoutIsTerminal bool
	Getenv           func(string) string
	Now              func() time.Time
	Logger           *slog.Logger
}

// DefaultEnv is the process environment.
func DefaultEnv() *Env {
	return &Env{
		Stdin:            os.Stdin,
		Stdout:           os.Stdout,
		Stderr:           os.Stderr,
		StdoutIsTerminal: isatty.IsTerminal(os.Stdout.Fd()),
		Getenv:           os.Getenv,
		Now:              time.Now,
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

// commands lists the constructors of every subcommand; each lives in its own file.
var commands = []func(*Env) *cobra.Command{
	newVersionCmd,
	newSimulateCmd,
	newJudgeCmd,
	newRunCmd,
	newValidateCmd,
	newStatusCmd,
	newPauseCmd,
	newResumeCmd,
	newPromoteCmd,
	newAbortCmd,
	newAnalyzeCmd,
	newProxyCmd,
	newDemoServiceCmd,
	newDemoCmd,
	newWatchCmd,
	newCompletionCmd,
}

// NewRootCmd builds the command tree around env.
func NewRootCmd(env *Env) *cobra.Command {
	root := &cobra.Command{
		Use:           "canaryctl",
		Short:         "Ship a new version safely: canary analysis with Kayenta-style statistics",
		Long:          "canaryctl deploys a canary and a baseline beside stable, shifts traffic through a gateway in steps\nand judges every step by comparing canary with baseline; a bad canary goes back to stable, fast.",
		Example:       "  canaryctl demo\n  canaryctl run --spec rollout.yaml -o json --junit junit.xml\n  source <(canaryctl completion bash)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	for _, c := range commands {
		root.AddCommand(c(env))
	}
	usageArgs(root)
	return root
}

// usageArgs makes the argument checks of c's subcommands return usage errors (exit code 2); cobra
// reports a wrong number of arguments as a plain error.
func usageArgs(c *cobra.Command) {
	for _, sub := range c.Commands() {
		if check := sub.Args; check != nil {
			sub.Args = func(c *cobra.Command, args []string) error {
				if err := check(c, args); err != nil {
					return &usageError{err: err}
				}
				return nil
			}
		}
		usageArgs(sub)
	}
}

// Run executes the command line with env and returns the exit code; errors are printed on one line.
func Run(ctx context.Context, env *Env, args []string) int {
	root := NewRootCmd(env)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if _, _, ferr := root.Find(args); err != nil && ferr != nil {
		// cobra could not find the command (an unknown command, Find's only error): the
		// command line is wrong
		err = &usageError{err: err}
	}
	code := ExitCode(err)
	if err != nil {
		var se *specError
		switch {
		case errors.As(err, &se): // every problem of a spec on its own line
			for _, l := range se.lines() {
				fmt.Fprintf(env.Stderr, "canaryctl: %s\n", l)
			}
		case !quiet(err):
			fmt.Fprintf(env.Stderr, "canaryctl: %s\n", oneLine(err.Error()))
		}
	}
	return code
}

// Main runs canaryctl with the process environment; SIGINT/SIGTERM/SIGHUP cancel the context so
// commands can return traffic to stable before they exit. (SIGHUP is a closed terminal or an ended
// tmux or ssh session: by default it would end the process at once, leaving the split on the canary
// and, in the demo, its child processes running.)
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	return Run(ctx, DefaultEnv(), args)
}

var oneLine = rollout.OneLine
