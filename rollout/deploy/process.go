package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"time"
)

// proc is one running instance of a process target.
type proc struct {
	pid      int
	start    string // startTime(pid) when it was started
	log      string
	done     chan struct{} // closed once the process has exited; nil for an adopted process
	err      error         // the exit error, valid once done is closed
	stopping atomic.Bool
}

// exited reports whether the process is gone.
func (p *proc) exited() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
	return !p.same()
}

// same reports whether pid still names the process that was started (not a reused pid).
func (p *proc) same() bool {
	if !running(p.pid) {
		return false
	}
	return p.start == "" || p.start == startTime(p.pid)
}

// deployProcess starts the instances on free loopback ports and waits until all are ready. An
// earlier run's instances that are still alive and ready are adopted; dead or unready ones are
// stopped first.
func (u *unit) deployProcess(ctx context.Context) (addrs []string, err error) {
	if rec, err := u.readRecord(); err != nil {
		return nil, err
	} else if rec != nil {
		procs := adopt(rec)
		if u.adoptable(ctx, rec, procs) {
			u.procs = procs
			u.log().Info("adopted processes of an earlier run", "pids", pids(procs))
			return rec.Addresses, nil
		}
		u.log().Info("stopping processes of an earlier run", "pids", pids(procs))
		if err := u.stopProcs(ctx, procs); err != nil {
			return nil, err
		}
		if err := u.removeRecord(); err != nil {
			return nil, err
		}
	}

	n := max(u.target.Instances, 1)
	defer func() {
		if err == nil {
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.grace()+5*time.Second)
		defer cancel()
		if serr := u.stopProcs(sctx, u.procs); serr != nil {
			err = errors.Join(err, serr)
		} else if rerr := u.removeRecord(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		u.procs = nil
	}()
	exited := make(chan error, n)
	for i := range n {
		p, addr, err := u.startProcess(i, exited)
		if err != nil {
			return nil, err
		}
		u.procs = append(u.procs, p)
		addrs = append(addrs, addr)
	}
	rec := record{Type: Process, Addresses: addrs}
	for _, p := range u.procs {
		rec.Processes = append(rec.Processes, procRecord{PID: p.pid, Start: p.start, Log: p.log})
	}
	if err := u.writeRecord(rec); err != nil {
		return nil, err
	}
	if err := u.waitReady(ctx, addrs, exited); err != nil {
		return nil, err
	}
	return addrs, nil
}

// startProcess starts instance i; exited receives an error if it exits before it is stopped.
func (u *unit) startProcess(i int, exited chan<- error) (*proc, string, error) {
	var (
		port int
		err  error
		lf   *os.File // the listener handed to the instance (listenFD)
	)
	if u.target.ListenFD {
		l, p, err := listenLoopback()
		if err != nil {
			return nil, "", err
		}
		lf, err = l.File() // a duplicate: closing l keeps the socket bound through lf
		_ = l.Close()
		if err != nil {
			return nil, "", fmt.Errorf("hand the listener to instance %d: %w", i, err)
		}
		defer lf.Close() // the child has its own copy once started
		port = p
	} else if port, err = freePort(); err != nil {
		return nil, "", err
	}
	data := u.vars(port, i)
	path, err := render(u.target.Command, data)
	if err != nil {
		return nil, "", fmt.Errorf("command: %w", err)
	}
	args := make([]string, len(u.target.Args))
	for j, a := range u.target.Args {
		if args[j], err = render(a, data); err != nil {
			return nil, "", fmt.Errorf("args[%d]: %w", j, err)
		}
	}
	env, err := u.env(data)
	if err != nil {
		return nil, "", err
	}
	f, err := u.logFile("-" + strconv.Itoa(i))
	if err != nil {
		return nil, "", err
	}
	defer f.Close() // the child has its own copy
	cmd := exec.Command(path, args...)
	if lf != nil {
		// fd 3 in the child; LISTEN_PID must be the child's own pid, known only after the fork:
		// a shell sets it and execs the command (same pid).
		cmd = exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`, path}, args...)...)
		cmd.ExtraFiles = []*os.File{lf}
		env = append(env, "LISTEN_FDS=1", "LISTEN_FDNAMES=http", "CANARYCTL_LISTEN_FD=3")
	}
	cmd.Env = env
	cmd.Dir = u.target.Dir
	cmd.Stdout, cmd.Stderr = f, f
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", path, err)
	}
	p := &proc{pid: cmd.Process.Pid, log: f.Name(), done: make(chan struct{})}
	p.start = startTime(p.pid)
	log := u.log().With("instance", i, "pid", p.pid)
	go func() {
		p.err = cmd.Wait()
		if p.stopping.Load() {
			close(p.done)
			return
		}
		// Dead before done closes: whoever saw the process end (done) finds Alive reporting it.
		{
			err := fmt.Errorf("%w: instance %d (pid %d): %v; log %s: %s", ErrExited, i, p.pid, p.err, p.log, tail(p.log, 3))
			// A clean exit or a signal is most likely another canaryctl (a resumed run, an abort)
			// stopping it; a failure is worth a warning.
			level := slog.LevelInfo
			if ee := (*exec.ExitError)(nil); errors.As(p.err, &ee) && ee.ExitCode() > 0 {
				level = slog.LevelWarn
			}
			log.Log(context.Background(), level, "process exited", "err", p.err, "log", p.log)
			u.setDead(fmt.Errorf("%w: %w", ErrNotAlive, err))
			close(p.done)
			exited <- err
		}
	}()
	addr := "http://127.0.0.1:" + strconv.Itoa(port)
	log.Info("started process", "command", path, "args", args, "address", addr, "log", p.log)
	return p, addr, nil
}

// adopt turns a record of an earlier run into procs (not our children: no done channel).
func adopt(rec *record) []*proc {
	procs := make([]*proc, 0, len(rec.Processes))
	for _, r := range rec.Processes {
		procs = append(procs, &proc{pid: r.PID, start: r.Start, log: r.Log})
	}
	return procs
}

// adoptable reports whether recorded processes are all alive and answer their probe.
func (u *unit) adoptable(ctx context.Context, rec *record, procs []*proc) bool {
	if rec.Type != Process || len(procs) == 0 || len(rec.Addresses) != len(procs) {
		return false
	}
	for _, p := range procs {
		if !p.same() {
			return false
		}
	}
	pr := u.probe()
	for _, a := range rec.Addresses {
		if u.probeOnce(ctx, a, pr) != nil {
			return false
		}
	}
	return true
}

// teardownProcess stops the instances started by this run or recorded by an earlier one.
func (u *unit) teardownProcess(ctx context.Context) error {
	procs := u.procs
	if len(procs) == 0 {
		rec, err := u.readRecord()
		if err != nil {
			return err
		}
		if rec == nil {
			return nil
		}
		procs = adopt(rec)
	}
	if err := u.stopProcs(ctx, procs); err != nil {
		return err
	}
	u.procs = nil
	return u.removeRecord()
}

// stopProcs sends SIGTERM to every instance's process group, waits up to the grace period for the
// instances and everything they started, then sends SIGKILL to the groups and waits until they are
// empty. An instance that is gone may have left children in its group: the group is still signalled
// (Linux does not hand out a pid while a process group of that id exists, so while the group lives
// it is ours; once the pid runs again, it is someone else's and the group is gone).
func (u *unit) stopProcs(ctx context.Context, procs []*proc) error {
	var live []*proc
	for _, p := range procs {
		p.stopping.Store(true)
		if p.done == nil && !p.same() && running(p.pid) {
			continue // an earlier run's process that is gone, its pid someone else's now
		}
		live = append(live, p)
		if err := signalGroup(p.pid, sigTerm); err != nil {
			return fmt.Errorf("stop pid %d: %w", p.pid, err)
		}
	}
	waitGone(ctx, live, u.grace())
	for _, p := range live {
		if err := signalGroup(p.pid, sigKill); err != nil {
			return fmt.Errorf("kill pid %d: %w", p.pid, err)
		}
	}
	// Killing is quick; wait for it even when ctx has ended.
	waitGone(context.WithoutCancel(ctx), live, 10*time.Second)
	for _, p := range live {
		if !p.exited() {
			return fmt.Errorf("pid %d is still running after SIGKILL", p.pid)
		}
		if groupAlive(p.pid) {
			u.log().Warn("processes of the instance's group are still there after SIGKILL (not yet reaped?)", "pgid", p.pid)
		}
		u.log().Info("stopped process", "pid", p.pid)
	}
	return nil
}

// gone reports whether the instance and every process of its group have exited.
func (p *proc) gone() bool { return p.exited() && !groupAlive(p.pid) }

// waitGone waits until every process has exited, d has passed, or ctx ends.
func waitGone(ctx context.Context, procs []*proc, d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for _, p := range procs {
		for !p.gone() {
			select {
			case <-poll.C: // the group's other members can only be polled
			case <-deadline.C:
				return
			case <-ctx.Done():
				return
			}
		}
	}
}

func pids(procs []*proc) []int {
	out := make([]int, len(procs))
	for i, p := range procs {
		out[i] = p.pid
	}
	return out
}
