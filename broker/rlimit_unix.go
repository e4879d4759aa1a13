//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// raiseFileLimit raises the soft open-file limit to the hard limit: every
// waiting proxy holds a connection, and the usual soft limit of 1024 would
// cap the broker at about a thousand proxies. It returns the new limit.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("open-file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("open-file limit: %w", err)
		}
	}
	return uint64(lim.Cur), nil
}
