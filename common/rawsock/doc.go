// Package rawsock reads and writes TCP sockets without the Go runtime's
// system-call bookkeeping.
//
// A Go read or write on a socket enters the runtime's system-call state
// (entersyscall). When every thread of the process was idle, that entry
// also wakes the runtime's monitor thread (sysmon) from its deep sleep,
// with a futex call made by the goroutine before its own system call, and
// the monitor then polls every 20 µs while the process stays busy. A relay
// hop that wakes for each message pays this on every message: the chain's
// echo round trip woke the monitors about 2.5 times, and on a machine
// running many clients the monitors took a tenth of all CPU time.
//
// The sockets here are non-blocking, so a read or write never waits in
// the kernel: when the socket is not ready, the goroutine waits in the
// runtime's network poller as usual (with its deadlines). Making the call
// directly (RawSyscall) therefore costs nothing but the call itself.
// Wrap applies this to TCP connections on Linux; anything else is returned
// unchanged.
package rawsock
