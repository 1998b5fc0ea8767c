package leader_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/leader"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "test.db"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// TestOneHolderAtATime runs three electors for one duty and checks that the
// duty never runs on two of them at once, and that stopping the holder
// hands the duty to another.
func TestOneHolderAtATime(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	var running, maxRunning atomic.Int32
	holders := make(chan string, 10)
	duty := func(node string) leader.Duty {
		return leader.Duty{Name: "retention", Run: func(ctx context.Context) {
			n := running.Add(1)
			if n > maxRunning.Load() {
				maxRunning.Store(n)
			}
			holders <- node
			<-ctx.Done()
			running.Add(-1)
		}}
	}
	cancels := map[string]context.CancelFunc{}
	var wg sync.WaitGroup
	for _, node := range []string{"a", "b", "c"} {
		ctx, cancel := context.WithCancel(t.Context())
		cancels[node] = cancel
		e := leader.New(leader.Config{Store: st, Node: node, TTL: 300 * time.Millisecond})
		wg.Go(func() { require.NoError(t, e.Run(ctx, duty(node))) })
	}
	first := <-holders
	time.Sleep(time.Second) // three lease periods: nobody else may start
	require.Empty(t, holders, "a second node ran the duty while %s held it", first)

	cancels[first]() // stop the holder: it releases the lease
	select {
	case second := <-holders:
		require.NotEqual(t, first, second)
	case <-time.After(5 * time.Second):
		t.Fatal("no node took the duty over")
	}
	for _, c := range cancels {
		c()
	}
	wg.Wait()
	require.Equal(t, int32(1), maxRunning.Load(), "the duty ran on two nodes at once")
}

// TestTakeOverExpiredLease: a holder that died (stopped renewing without
// releasing) loses the duty once its lease expires.
func TestTakeOverExpiredLease(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	now := time.Now()
	ok, err := st.AcquireLease(t.Context(), store.LeaseParams{Name: "retention", Holder: "dead-node", Now: now, Until: now.Add(time.Second)})
	require.NoError(t, err)
	require.True(t, ok)

	started := make(chan time.Time, 1)
	ctx, cancel := context.WithCancel(t.Context())
	e := leader.New(leader.Config{Store: st, Node: "live", TTL: 300 * time.Millisecond})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Run(ctx, leader.Duty{Name: "retention", Run: func(ctx context.Context) { started <- time.Now(); <-ctx.Done() }})
	}()
	select {
	case at := <-started:
		require.False(t, at.Before(now.Add(time.Second)), "took over before the dead node's lease expired")
	case <-time.After(5 * time.Second):
		t.Fatal("the expired lease was never taken over")
	}
	cancel()
	<-done
}

// stallingLeaser grants the lease once, then hangs on every renewal.
type stallingLeaser struct{ calls atomic.Int32 }

func (s *stallingLeaser) AcquireLease(ctx context.Context, _ store.LeaseParams) (bool, error) {
	if s.calls.Add(1) == 1 {
		return true, nil
	}
	<-ctx.Done()
	return false, ctx.Err()
}

func (s *stallingLeaser) ReleaseLease(context.Context, string, string) error { return nil }

// TestStalledRenewalStopsTheDuty: a renewal that hangs must not keep the
// duty running past the lease another node may take meanwhile.
func TestStalledRenewalStopsTheDuty(t *testing.T) {
	t.Parallel()
	stopped := make(chan time.Time, 1)
	e := leader.New(leader.Config{Store: &stallingLeaser{}, Node: "a", TTL: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		_ = e.Run(ctx, leader.Duty{Name: "retention", Run: func(ctx context.Context) { <-ctx.Done(); stopped <- time.Now() }})
	}()
	select {
	case <-stopped:
		// Before the fix the renewal hung forever and the duty never stopped.
	case <-time.After(5 * time.Second):
		t.Fatal("a hung renewal never stopped the duty")
	}
}

// hangingReleaser grants every lease and hangs on its release until the
// release's context ends: a store that stopped answering.
type hangingReleaser struct{}

func (hangingReleaser) AcquireLease(context.Context, store.LeaseParams) (bool, error) {
	return true, nil
}

func (hangingReleaser) ReleaseLease(ctx context.Context, _, _ string) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestReleaseDoesNotHoldUpShutdown: the release at shutdown is bounded, so
// an unreachable store cannot keep the node from stopping; the lease then
// expires on its own.
func TestReleaseDoesNotHoldUpShutdown(t *testing.T) {
	t.Parallel()
	e := leader.New(leader.Config{Store: hangingReleaser{}, Node: "a", TTL: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	running := make(chan struct{})
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		_ = e.Run(ctx, leader.Duty{Name: "retention", Run: func(ctx context.Context) { close(running); <-ctx.Done() }})
	}()
	<-running
	cancel()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Run still waiting for the lease's release")
	}
}

// failingLeaser fails every call: a store that cannot write (a full disk).
type failingLeaser struct{ calls atomic.Int32 }

func (f *failingLeaser) AcquireLease(context.Context, store.LeaseParams) (bool, error) {
	f.calls.Add(1)
	return false, errors.New("database or disk is full")
}

func (f *failingLeaser) ReleaseLease(context.Context, string, string) error {
	f.calls.Add(1)
	return errors.New("database or disk is full")
}

// TestExclusiveDutyNeedsNoLease: on a store only this node can use (SQLite,
// held by its lock file), a duty runs without a lease, so a store that
// refuses writes (a full disk) does not stop the alert rules, which only
// read; it stops when the context ends.
func TestExclusiveDutyNeedsNoLease(t *testing.T) {
	t.Parallel()
	st := &failingLeaser{}
	e := leader.New(leader.Config{Store: st, Node: "a", TTL: 30 * time.Millisecond, Exclusive: true})
	ctx, cancel := context.WithCancel(t.Context())
	running, returned := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(returned)
		_ = e.Run(ctx, leader.Duty{Name: "alerts", Run: func(ctx context.Context) { close(running); <-ctx.Done() }})
	}()
	select {
	case <-running:
	case <-time.After(5 * time.Second):
		t.Fatal("the duty never ran: it waited for a lease the store cannot write")
	}
	cancel()
	<-returned
	require.Zero(t, st.calls.Load(), "no lease asked for")
}
