// Package sqstest runs a local SQS-compatible server (the npm package
// local-aws-sqs, pinned by package.json and package-lock.json in this
// directory) for tests of the SQS rendezvous. It speaks both the JSON and the
// query protocol of the current AWS SDKs and keeps real queue timestamps,
// which the broker's stale-queue cleanup depends on.
//
// scripts/install-npm-deps.sh (run by `make test`) installs the package.
package sqstest

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// Region is the region the server reports; any static credentials are
// accepted.
const Region = "us-east-1"

// AccountID is the account number in the server's queue URLs.
const AccountID = "123456789012"

// Start starts a server listening on 127.0.0.1 for the duration of the test
// and returns its endpoint, e.g. "http://127.0.0.1:PORT", for the SDK's
// BaseEndpoint. It skips the test (or fails it under
// SNOWFLAKE_REQUIRE_TOOLS) when node or the npm package is missing.
func Start(t testing.TB) (endpoint string) {
	t.Helper()
	node := testenv.LookPath(t, "node")
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("sqstest: cannot locate source directory")
	}
	dir := filepath.Dir(file)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "local-aws-sqs")); err != nil {
		testenv.Missing(t, "sqstest: local-aws-sqs not installed (run scripts/install-npm-deps.sh)")
	}
	p := testenv.Start(t, "local-aws-sqs", nil, node, filepath.Join(dir, "server.js"))
	line := p.WaitFor(t, "local-aws-sqs listening on ", 30*time.Second)
	_, endpoint, _ = strings.Cut(line, "listening on ")
	return strings.TrimSpace(endpoint)
}
