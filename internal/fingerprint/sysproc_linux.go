package fingerprint

import "syscall"

// captureProcAttr puts dumpcap in its own process group, so a Ctrl-C or a
// signal to our group does not stop it before Stop has let it read the
// last packets (libpcap hands packets over in blocks, with a delay), and
// has the kernel stop it if we die without calling Close.
func captureProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
