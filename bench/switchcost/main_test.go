package main

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as a ring member, as the command
// does when it re-executes itself.
func TestMain(m *testing.M) {
	if os.Getenv(memberEnv) == "1" {
		if err := member(); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		bad  bool
	}{
		{in: "2", want: []int{2}},
		{in: "2, 13,53", want: []int{2, 13, 53}},
		{in: "1", bad: true},
		{in: "501", bad: true},
		{in: "2,,3", bad: true},
		{in: "x", bad: true},
		{in: "", bad: true},
	} {
		got, err := parseSizes(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseSizes(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseSizes(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestRelayPassesEveryByteUntilEOF(t *testing.T) {
	var out bytes.Buffer
	if err := relay(strings.NewReader("ring"), &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "ring" {
		t.Fatalf("relayed %q, want %q", out.String(), "ring")
	}
}

// TestRingOfProcesses runs a ring of three processes (this one and two
// re-executed members) and checks that the byte goes round and the time
// per hop is plausible: more than nothing, less than the test's patience.
func TestRingOfProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// This pins the test process to one CPU, as it does the command.
	per, err := measureRing(ctx, self, 3, 300)
	if err != nil {
		t.Fatal(err)
	}
	if per <= 0 || per > time.Second {
		t.Fatalf("%v per hop", per)
	}
}

// TestRingWithDeadMemberFails checks that a member that exits ends the
// measurement with an error instead of leaving it waiting.
func TestRingWithDeadMemberFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := measureRing(ctx, "/bin/true", 3, 300); err == nil {
		t.Fatal("a ring of processes that exit at once measured without an error")
	}
}
