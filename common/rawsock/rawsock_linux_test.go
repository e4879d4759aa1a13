package rawsock

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

func TestWrapTCP(t *testing.T) {
	client, server := pair(t)
	if _, ok := client.(*conn); !ok {
		t.Errorf("Wrap returned %T for a TCP connection", client)
	}
	if _, ok := server.(*conn); !ok {
		t.Errorf("Listener accepted %T", server)
	}
}

func TestPeerReset(t *testing.T) {
	client, server := pair(t)
	// Unread data at close makes the kernel reset the connection.
	client.Write([]byte("unread"))
	time.Sleep(20 * time.Millisecond)
	server.(*conn).SetLinger(0)
	server.Close()
	var err error
	for range 100 {
		if _, err = client.Write(make([]byte, 1024)); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes to a reset connection kept succeeding")
	}
	var se *os.SyscallError
	if !errors.As(err, &se) {
		t.Errorf("error %v, want the system call's", err)
	}
}

// A read or a write allocates nothing: relays make one per message.
func TestNoAllocations(t *testing.T) {
	client, server := pair(t)
	buf := make([]byte, 100)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := client.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(server, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per write and read, want 0", allocs)
	}
}
