package batch_test

import (
	"context"
	"errors"
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
	}, 64, 1000, 1)
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
	c := batch.New(func(context.Context, []int) ([]int, error) { return nil, boom }, 8, 8, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go c.Run(ctx)
	_, err := c.Submit(t.Context(), 1)
	require.ErrorIs(t, err, boom)
}

func TestOverloaded(t *testing.T) {
	t.Parallel()
	c := batch.New(func(_ context.Context, items []int) ([]int, error) { return items, nil }, 8, 1, 1)
	// Not running: the first submit fills the queue, the second is refused.
	go c.Submit(t.Context(), 1)
	require.Eventually(t, func() bool { return c.Pending() == 1 }, 10*time.Second, time.Millisecond)
	_, err := c.Submit(t.Context(), 2)
	require.ErrorIs(t, err, batch.ErrOverloaded)
}

// BenchmarkCommitter measures the committer's own overhead per item under
// 64 concurrent submitters (the commit function does no work).
func BenchmarkCommitter(b *testing.B) {
	c := batch.New(func(_ context.Context, items []int) ([]int, error) { return items, nil }, 256, 8192, 1)
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
