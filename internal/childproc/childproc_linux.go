package childproc

import (
	"os/exec"
	"runtime"
	"syscall"
)

func setDeathSignal(cmd *exec.Cmd) bool {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if cmd.SysProcAttr.Pdeathsig == 0 {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	return true
}

// lockThread pins the forking goroutine to its thread for good: it never
// unlocks and never returns, so the thread lives as long as the process.
func lockThread() { runtime.LockOSThread() }
