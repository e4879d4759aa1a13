package closegroup

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestStopTurnsAway(t *testing.T) {
	var g Group
	if !g.Enter() {
		t.Fatal("Enter before Stop refused")
	}
	g.Stop()
	if g.Enter() {
		t.Error("Enter after Stop accepted")
	}
	if g.Go(func() { t.Error("f ran after Stop") }) {
		t.Error("Go after Stop reported true")
	}
	// A member may still start helpers that Wait covers.
	var joined atomic.Bool
	g.Join()
	go func() {
		defer g.Leave()
		time.Sleep(20 * time.Millisecond)
		joined.Store(true)
	}()
	g.Leave()
	g.Wait()
	if !joined.Load() {
		t.Error("Wait returned before the joined member left")
	}
}

func TestWaitWaitsForGo(t *testing.T) {
	var g Group
	release := make(chan struct{})
	var done atomic.Int32
	for range 3 {
		if !g.Go(func() { <-release; done.Add(1) }) {
			t.Fatal("Go refused before Stop")
		}
	}
	g.Stop()
	waited := make(chan struct{})
	go func() { g.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned with members running")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-waited
	if n := done.Load(); n != 3 {
		t.Fatalf("%d members finished before Wait returned, want 3", n)
	}
}

// TestEnterRacesStop: members entering while the group stops and waits are
// either turned away or waited for, never left running after Wait (run it
// with -race: the WaitGroup's own checks catch an Add racing with Wait).
func TestEnterRacesStop(t *testing.T) {
	for range 50 {
		var g Group
		var running atomic.Int32
		start := make(chan struct{})
		for range 4 {
			go func() {
				<-start
				for g.Go(func() {
					running.Add(1)
					time.Sleep(10 * time.Microsecond)
					running.Add(-1)
				}) {
				}
			}()
		}
		close(start)
		time.Sleep(50 * time.Microsecond)
		g.Stop()
		g.Wait()
		if n := running.Load(); n != 0 {
			t.Fatalf("%d members running after Wait", n)
		}
	}
}
