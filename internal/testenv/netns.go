package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/snowflake-go/snowflake/internal/childproc"
)

// netnsMarker is set in the environment of a test process that runs inside a
// network namespace created by [IsolateNetwork].
const netnsMarker = "SNOWFLAKE_TEST_NETNS"

// InIsolatedNetwork reports whether this process runs in a namespace made by
// [IsolateNetwork].
func InIsolatedNetwork() bool { return os.Getenv(netnsMarker) == "1" }

// IsolateNetwork runs the calling top-level test again, in a child test
// process inside a fresh network namespace that has only the loopback
// interface. Upstream Snowflake binaries fall back to public hosts (the 2.5.1
// proxy always contacts a public NAT-probe host), so every test that starts
// one must call this first:
//
//	if testenv.IsolateNetwork(t) {
//		return // the test ran, and passed or failed, in the child
//	}
//
// In the child it returns false and the test body runs. Needs root and
// unshare(1); without them the test is skipped (or fails under
// SNOWFLAKE_REQUIRE_TOOLS).
func IsolateNetwork(t *testing.T) bool {
	t.Helper()
	if InIsolatedNetwork() {
		return false
	}
	if strings.Contains(t.Name(), "/") {
		t.Fatal("testenv: IsolateNetwork must be called from a top-level test")
	}
	unshare := LookPath(t, "unshare")
	ip := LookPath(t, "ip")
	if os.Geteuid() != 0 {
		Missing(t, "network namespaces need root")
	}
	args := []string{"--net", "--", "sh", "-c", ip + ` link set lo up && exec "$0" "$@"`,
		os.Args[0], "-test.run", "^" + regexp.QuoteMeta(t.Name()) + "$", "-test.v"}
	for _, a := range os.Args[1:] {
		// Carry over the flags that shape the run (timeout, cpu, ...) but
		// not the selection or output flags set above, nor -test.count:
		// this process already runs the test count times, and each child
		// runs it once in its own fresh namespace (a second run in the
		// same namespace would find the first one's addresses).
		if strings.HasPrefix(a, "-test.run") || strings.HasPrefix(a, "-test.v") ||
			strings.HasPrefix(a, "-test.count") ||
			strings.HasPrefix(a, "-test.bench") || strings.HasPrefix(a, "-test.fuzz") ||
			strings.HasPrefix(a, "-test.paniconexit0") || strings.HasPrefix(a, "-test.testlogfile") {
			continue
		}
		args = append(args, a)
	}
	cmd := exec.Command(unshare, args...)
	// Binaries built before this call are reused by the child.
	cmd.Env = append(os.Environ(), netnsMarker+"=1", binariesEnv+"="+builtBinaries())
	// The child is started to die with this process: when go test kills
	// this one at its -test.timeout, the child (which got the same
	// timeout, but later) would otherwise live on with its chain of
	// processes while the next packages' tests run.
	var outBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	err := childproc.Start(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	out := outBuf.Bytes()
	t.Logf("isolated run of %s:\n%s", t.Name(), out)
	if err != nil {
		t.Fatalf("%s failed inside its network namespace: %v", t.Name(), err)
	}
	if strings.Contains(string(out), "--- SKIP: "+t.Name()) {
		t.Skipf("%s skipped inside its network namespace", t.Name())
	}
	return true
}
