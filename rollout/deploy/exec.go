package deploy

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"
)

// deployExec runs the deploy command, renders the addresses and waits for readiness. The record
// (with the port) is written before the command runs, so that a teardown after a crash renders the
// same values. On failure the teardown command is always attempted.
func (u *unit) deployExec(ctx context.Context) (addrs []string, err error) {
	port := u.target.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	u.port = port
	data := u.vars(port, 0)
	if err := u.writeRecord(record{Type: Exec, Port: port}); err != nil {
		return nil, err
	}
	defer func() {
		if err == nil {
			return
		}
		// Tear down with a context of its own: ctx may be the reason we are here.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.timeout())
		defer cancel()
		if terr := u.teardownExec(tctx); terr != nil {
			err = errors.Join(err, terr)
		}
	}()
	if err := u.runShell(ctx, "deploy", u.target.Command, data); err != nil {
		return nil, err
	}
	for _, a := range u.target.Addresses {
		s, err := render(a, data)
		if err != nil {
			return nil, fmt.Errorf("address: %w", err)
		}
		if err := checkURL(s); err != nil {
			return nil, fmt.Errorf("address: %w", err)
		}
		addrs = append(addrs, s)
	}
	if u.target.Readiness != nil {
		if err := u.waitReady(ctx, addrs, nil); err != nil {
			return nil, err
		}
	}
	if err := u.writeRecord(record{Type: Exec, Port: port, Addresses: addrs}); err != nil {
		return nil, err
	}
	return addrs, nil
}

// teardownExec runs the teardown command if this run or an earlier one deployed (or began to
// deploy) the cohort, as told by memory or the record.
func (u *unit) teardownExec(ctx context.Context) error {
	port := u.port
	if port == 0 {
		rec, err := u.readRecord()
		if err != nil {
			return err
		}
		if rec == nil {
			return nil // nothing was deployed
		}
		port = rec.Port
	}
	ctx, cancel := context.WithTimeout(ctx, u.timeout())
	defer cancel()
	if err := u.runShell(ctx, "teardown", u.target.Teardown, u.vars(port, 0)); err != nil {
		return err
	}
	u.port = 0
	return u.removeRecord()
}

func (u *unit) timeout() time.Duration {
	if u.target.Timeout > 0 {
		return u.target.Timeout
	}
	return DefaultTimeout
}

func (u *unit) grace() time.Duration {
	if u.target.GracePeriod > 0 {
		return u.target.GracePeriod
	}
	return DefaultGracePeriod
}

// runShell renders a command template and runs it with sh -c in its own process group, output
// appended to the cohort's exec log. When ctx ends the group gets SIGTERM, then SIGKILL after the
// grace period.
func (u *unit) runShell(ctx context.Context, what, tmpl string, data map[string]any) error {
	line, err := render(tmpl, data)
	if err != nil {
		return fmt.Errorf("%s command: %w", what, err)
	}
	env, err := u.env(data)
	if err != nil {
		return fmt.Errorf("%s command: %w", what, err)
	}
	f, err := u.logFile("-exec")
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "### %s %s: %s\n", time.Now().UTC().Format(time.RFC3339), what, line)
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Env = env
	cmd.Dir = u.target.Dir
	cmd.Stdout, cmd.Stderr = f, f
	setProcessGroup(cmd)
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, sigTerm) }
	cmd.WaitDelay = u.grace()
	u.log().Info("running "+what+" command", "command", line, "log", f.Name())
	start := time.Now()
	err = cmd.Run()
	if ctx.Err() != nil && cmd.Process != nil {
		_ = signalGroup(cmd.Process.Pid, sigKill) // leftovers of a cancelled command
	}
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = fmt.Errorf("%w (%v)", cause, err)
		}
		if t := tail(f.Name(), 3); t != "" {
			return fmt.Errorf("%s command %q: %w; output: %s", what, line, err, t)
		}
		return fmt.Errorf("%s command %q: %w", what, line, err)
	}
	u.log().Debug(what+" command done", "took", time.Since(start).Round(time.Millisecond))
	return nil
}
