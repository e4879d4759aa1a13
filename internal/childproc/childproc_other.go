//go:build !linux

package childproc

import "os/exec"

func setDeathSignal(*exec.Cmd) bool { return false }

func lockThread() {}
