//go:build unix

package procs

import (
	"syscall"
	"time"
)

// processCPU returns a function reading the process's user and system CPU
// time.
func processCPU() (func() time.Duration, bool) {
	read := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return nil, false
	}
	return read, true
}
