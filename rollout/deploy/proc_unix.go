//go:build unix

package deploy

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

var (
	sigTerm = syscall.SIGTERM
	sigKill = syscall.SIGKILL
)

// setProcessGroup starts cmd in a process group of its own, so that teardown can signal the
// process and everything it started, and a Ctrl-C at the terminal reaches canaryctl only (which
// then returns traffic to stable before stopping the deployments).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup signals the process group led by pid; a group that is gone is not an error.
func signalGroup(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return nil
	}
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no /proc (macOS): trust kill(0)
	}
	f := statFields(string(b))
	return len(f) < 1 || f[0] != "Z"
}

// startTime returns the start time of pid as /proc reports it (clock ticks since boot), or "" where
// there is no /proc. Together with the pid it identifies a process across runs.
func startTime(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	f := statFields(string(b))
	if len(f) < 20 {
		return ""
	}
	return f[19] // field 22 of stat; statFields starts at field 3
}

// statFields returns the fields of /proc/PID/stat after the command name (field 3 onwards).
func statFields(s string) []string {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// groupAlive reports whether the process group pgid has a member we may signal.
func groupAlive(pgid int) bool {
	return pgid > 0 && syscall.Kill(-pgid, 0) == nil
}
