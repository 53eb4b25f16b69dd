//go:build !unix

package deploy

import (
	"os"
	"os/exec"
)

var (
	sigTerm = os.Kill
	sigKill = os.Kill
)

// Without process groups, teardown stops the process itself only.
func setProcessGroup(*exec.Cmd) {}

func signalGroup(pid int, sig os.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil
	}
	_ = p.Signal(sig)
	return nil
}

func running(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	_ = p.Release()
	return true
}

func startTime(int) string { return "" }

func groupAlive(int) bool { return false }
