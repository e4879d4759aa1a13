// Package childproc starts the helper processes of tests and benchmarks so
// that they die with the process that started them.
//
// go test kills a test binary that runs past its -timeout; the servers,
// brokers and tor processes it started would live on (a server and broker
// once ran for an hour after such a kill, holding ports and CPU). Linux can
// send a child a signal when its parent dies (PR_SET_PDEATHSIG), but the
// "parent" is the thread that forked it, not the process, and the Go
// runtime ends threads during a run: a goroutine that exits while locked
// to its thread (as namespace-switching code must) takes the thread with
// it, and that killed children mid-test. So every child is forked by one
// goroutine that stays locked to its thread for the life of the process.
package childproc

import (
	"os/exec"
	"sync"
)

type request struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	startOnce sync.Once
	requests  chan request
)

// Start starts cmd like cmd.Start, with the child set to be killed when
// this process exits (on Linux; elsewhere it is cmd.Start): by SIGKILL,
// unless cmd's SysProcAttr names another signal. It keeps the other
// SysProcAttr fields cmd has.
func Start(cmd *exec.Cmd) error {
	if !setDeathSignal(cmd) {
		return cmd.Start()
	}
	startOnce.Do(func() {
		requests = make(chan request)
		go forker(requests)
	})
	done := make(chan error, 1)
	requests <- request{cmd, done}
	return <-done
}

func forker(reqs <-chan request) {
	lockThread()
	for r := range reqs {
		r.done <- r.cmd.Start()
	}
}
