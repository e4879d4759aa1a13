package childproc

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const parentEnv = "CHILDPROC_TEST_PARENT"

// TestMain lets the test binary play the parent process.
func TestMain(m *testing.M) {
	if os.Getenv(parentEnv) == "1" {
		parent()
		return
	}
	os.Exit(m.Run())
}

// parent starts a child from a goroutine whose thread the runtime then
// discards, churns more such threads, reports the child's PID and waits
// to be killed.
func parent() {
	pidc := make(chan int)
	go func() {
		runtime.LockOSThread() // exits locked: the thread goes away
		cmd := exec.Command("sleep", "60")
		if err := Start(cmd); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		pidc <- cmd.Process.Pid
	}()
	pid := <-pidc
	for range 20 {
		done := make(chan struct{})
		go func() { runtime.LockOSThread(); close(done) }()
		<-done
	}
	fmt.Println("child", pid)
	// A sleep, not an empty select: with every goroutine blocked on
	// channels the runtime would abort the parent as deadlocked.
	time.Sleep(time.Hour)
}

// alive reports whether pid runs (a zombie, killed and not yet reaped,
// does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func TestChildDiesWithParent(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("no sleep(1)")
	}
	parent := exec.Command(os.Args[0], "-test.run=^$")
	parent.Env = append(os.Environ(), parentEnv+"=1")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		parent.Process.Kill()
		t.Fatalf("parent: %q, %v", line, err)
	}
	pidText, ok := strings.CutPrefix(strings.TrimSpace(line), "child ")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil {
		parent.Process.Kill()
		t.Fatalf("parent said %q", line)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })

	// The forking goroutine's thread and twenty others have ended; the
	// child must not have been killed with them.
	time.Sleep(200 * time.Millisecond)
	if !alive(pid) {
		t.Fatal("child died while its parent was running")
	}

	parent.Process.Kill()
	parent.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatal("child still running 5 s after its parent was killed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Start keeps the caller's process attributes.
func TestStartKeepsAttributes(t *testing.T) {
	cmd := exec.Command("true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !cmd.SysProcAttr.Setpgid || cmd.SysProcAttr.Pdeathsig != syscall.SIGKILL {
		t.Errorf("SysProcAttr %+v", cmd.SysProcAttr)
	}
}
