//go:build !linux

package server

import "syscall"

// bindNoPort is a Linux-only optimisation; elsewhere the kernel's default
// applies.
func bindNoPort(network, address string, c syscall.RawConn) error { return nil }
