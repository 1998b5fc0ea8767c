package batch_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/batch"
)

func TestGroupsConcurrentSubmits(t *testing.T) {
	t.Parallel()
	var calls, maxSeen, firstLen atomic.Int64
	release := make(chan struct{})
	first := true // only the committer goroutine touches it
	c := batch.New(func(_ context.Context, items []int) ([]int, error) {
		if first {
			first = false
			firstLen.Store(int64(len(items)))
			<-release // hold the first commit so the others pile up
		}
		calls.Add(1)
		if n := int64(len(items)); n > maxSeen.Load() {
			maxSeen.Store(n)
		}
		out := make([]int, len(items))
		for i, v := range items {
			out[i] = v * 2
		}
		return out, nil
	}, batch.Options{MaxBatch: 64, Queue: 1000})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()

	var wg sync.WaitGroup
	results := make([]int, 101)
	wg.Go(func() { results[100], _ = c.Submit(t.Context(), 100) })
	for i := range 100 {
		wg.Go(func() {
			r, err := c.Submit(t.Context(), i)
			require.NoError(t, err)
			results[i] = r
		})
	}
	// Wait until every submission is either in the held commit or queued
	// behind it.
	require.Eventually(t, func() bool {
		return firstLen.Load() > 0 && int64(c.Pending())+firstLen.Load() == 101
	}, 10*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	for i := range 101 {
		require.Equal(t, i*2, results[i], "each submitter gets its own result")
	}
	require.Less(t, calls.Load(), int64(10), "101 items should share a few commits")
	require.LessOrEqual(t, maxSeen.Load(), int64(64), "batch size is capped")
	cancel()
	require.NoError(t, <-done)
	_, err := c.Submit(t.Context(), 1)
	require.ErrorIs(t, err, batch.ErrClosed)
}

func TestErrorFailsWholeBatch(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk full")
	c := batch.New(func(context.Context, []int) ([]int, error) { return nil, boom }, batch.Options{MaxBatch: 8, Queue: 8})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go c.Run(ctx)
	_, err := c.Submit(t.Context(), 1)
	require.ErrorIs(t, err, boom)
}

// errRefused stands for a database refusing one item's data.
var errRefused = errors.New("value refused")

// splitCase commits 0..n-1 plus one poison item (-1) in one batch behind a
// held first commit (item 100). fn fails any batch holding the poison with
// failWith. It returns each item's result and error, and the sizes of the
// batches fn was given after the held one.
func splitCase(t *testing.T, n int, failWith error, split func(error) bool) (map[int]int, map[int]error, []int) {
	t.Helper()
	held, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	first := true // only the committer goroutine touches it
	c := batch.New(func(_ context.Context, items []int) ([]int, error) {
		if first {
			first = false
			close(held)
			<-release
			return items, nil
		}
		mu.Lock()
		sizes = append(sizes, len(items))
		mu.Unlock()
		out := make([]int, len(items))
		for i, v := range items {
			if v < 0 {
				return nil, failWith
			}
			out[i] = v * 2
		}
		return out, nil
	}, batch.Options{MaxBatch: 64, Queue: 1000, Split: split})
	go c.Run(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.Submit(t.Context(), 100) })
	<-held
	results, errs := map[int]int{}, map[int]error{}
	for i := -1; i < n; i++ {
		wg.Go(func() {
			r, err := c.Submit(t.Context(), i)
			mu.Lock()
			defer mu.Unlock()
			results[i], errs[i] = r, err
		})
	}
	require.Eventually(t, func() bool { return c.Pending() == n+1 }, 10*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	return results, errs, sizes
}

func TestSplitIsolatesRefusedItem(t *testing.T) {
	t.Parallel()
	results, errs, sizes := splitCase(t, 10, errRefused, func(err error) bool { return errors.Is(err, errRefused) })
	require.ErrorIs(t, errs[-1], errRefused, "the refused item fails")
	for i := range 10 {
		require.NoError(t, errs[i], "item %d shared a batch with the refused one", i)
		require.Equal(t, i*2, results[i])
	}
	// The batch of 11 failed once, then each item was committed alone.
	require.Equal(t, append([]int{11}, slices.Repeat([]int{1}, 11)...), sizes)
}

// TestSplitStopsWhenTheDatabaseFails: a split that meets an error of
// another kind (the database went down meanwhile) fails the rest of the
// batch with it instead of calling the failing database once per item.
func TestSplitStopsWhenTheDatabaseFails(t *testing.T) {
	t.Parallel()
	down := errors.New("connection refused")
	var calls atomic.Int64
	c := batch.New(func(_ context.Context, items []int) ([]int, error) {
		switch calls.Add(1) {
		case 1:
			return nil, errRefused // the whole batch
		case 2:
			return items, nil // its first item alone
		default:
			return nil, down
		}
	}, batch.Options{MaxBatch: 64, Queue: 64, Split: func(err error) bool { return errors.Is(err, errRefused) }})
	items := make(chan int)
	ready := make(chan struct{})
	go func() {
		// Queue the batch before the committer runs, so it is one batch.
		for i := range 10 {
			go func() { _, _ = c.Submit(t.Context(), i); items <- i }()
		}
		close(ready)
	}()
	<-ready
	require.Eventually(t, func() bool { return c.Pending() == 10 }, 10*time.Second, time.Millisecond)
	go c.Run(t.Context())
	for range 10 {
		<-items
	}
	require.Equal(t, int64(3), calls.Load(), "the batch, one item that passed, one that met the outage; the rest failed without a call")
}

func TestNoSplitOnOtherErrors(t *testing.T) {
	t.Parallel()
	down := errors.New("connection refused")
	_, errs, sizes := splitCase(t, 10, down, func(err error) bool { return errors.Is(err, errRefused) })
	for i := -1; i < 10; i++ {
		require.ErrorIs(t, errs[i], down)
	}
	require.Equal(t, []int{11}, sizes, "a database that is down is not called once per item")

	// Without Split, a refused item fails its whole batch.
	_, errs, sizes = splitCase(t, 10, errRefused, nil)
	for i := -1; i < 10; i++ {
		require.ErrorIs(t, errs[i], errRefused)
	}
	require.Equal(t, []int{11}, sizes)
}

// TestTimeout: a commit that hangs (a database that stopped answering) is
// cut off after the timeout, its submitters get the error, and the next
// batch commits.
func TestTimeout(t *testing.T) {
	t.Parallel()
	var hang atomic.Bool
	hang.Store(true)
	c := batch.New(func(ctx context.Context, items []int) ([]int, error) {
		if hang.Swap(false) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return items, nil
	}, batch.Options{MaxBatch: 8, Queue: 8, Timeout: 50 * time.Millisecond})
	go c.Run(t.Context())
	_, err := c.Submit(t.Context(), 1)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	r, err := c.Submit(t.Context(), 2)
	require.NoError(t, err)
	require.Equal(t, 2, r)
}

func TestOverloaded(t *testing.T) {
	t.Parallel()
	c := batch.New(func(_ context.Context, items []int) ([]int, error) { return items, nil }, batch.Options{MaxBatch: 8, Queue: 1})
	// Not running: the first submit fills the queue, the second is refused.
	go c.Submit(t.Context(), 1)
	require.Eventually(t, func() bool { return c.Pending() == 1 }, 10*time.Second, time.Millisecond)
	_, err := c.Submit(t.Context(), 2)
	require.ErrorIs(t, err, batch.ErrOverloaded)
}

// BenchmarkCommitter measures the committer's own overhead per item under
// 64 concurrent submitters (the commit function does no work).
func BenchmarkCommitter(b *testing.B) {
	c := batch.New(func(_ context.Context, items []int) ([]int, error) { return items, nil }, batch.Options{MaxBatch: 256, Queue: 8192})
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	go c.Run(ctx)
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Submit(b.Context(), 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
