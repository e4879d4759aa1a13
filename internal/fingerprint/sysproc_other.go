//go:build !linux

package fingerprint

import "syscall"

// captureProcAttr: only Linux can tie dumpcap's life to ours; elsewhere it
// shares our process group and signals.
func captureProcAttr() *syscall.SysProcAttr { return nil }
