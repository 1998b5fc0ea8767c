// Package batch implements group commit: many goroutines submit one item
// each, one goroutine hands everything waiting to a single call (one
// database transaction, one fsync), and each submitter gets its own result.
// Batches grow with load on their own: while one commit runs, the next
// batch accumulates.
package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrOverloaded is returned by Submit when the queue is full: the caller
// should shed load (HTTP 503 with Retry-After), never drop silently.
var ErrOverloaded = errors.New("commit queue full")

// ErrClosed is returned by Submit once the committer has stopped.
var ErrClosed = errors.New("committer stopped")

// Func commits a batch and returns one result per item, in order. If it
// returns an error, every item of the batch fails with it (unless the
// committer splits it: see Options.Split).
type Func[T, R any] func(ctx context.Context, items []T) ([]R, error)

// Options size a Committer and say how it treats failures.
type Options struct {
	// MaxBatch is the most items passed to the commit function at once.
	MaxBatch int
	// Queue is the most items waiting; Submit answers ErrOverloaded beyond.
	Queue int
	// Parallel is how many batches may commit at once: 1 for a
	// single-writer store (SQLite), a few for a server database, where
	// concurrent transactions overlap their round trips.
	Parallel int
	// Timeout, when set, bounds each call of the commit function. A
	// database that stops answering without closing the connection (a
	// failover that moved its address, a network partition) would
	// otherwise hold the committer, and every submitter behind it, for as
	// long as TCP takes to give up: many minutes. Whether a batch that
	// timed out committed is unknown; its submitters get the error.
	Timeout time.Duration
	// Split, when set, makes the committer retry a failed batch one item
	// at a time when Split(err) reports that the batch's error came from
	// one of its items (a value the database refuses), not from the
	// database being unreachable or busy. Without it, an item that is
	// refused every time fails every batch it joins, and the items that
	// happened to share them; with it, only that item fails, and the
	// others are committed alone (as many commits as items, once). Errors
	// it does not claim still fail the whole batch, and end a split that
	// meets one (the rest of the batch fails with it): retrying item by
	// item against a database that is down would only multiply the
	// failing calls, each up to the timeout.
	Split func(error) bool
}

// Committer groups submissions into batches. Create with New, then call Run.
type Committer[T, R any] struct {
	fn    Func[T, R]
	opts  Options
	queue chan *pending[T, R]

	mu     sync.RWMutex // guards closed; held shared while sending to queue
	closed bool
}

type pending[T, R any] struct {
	item T
	done chan outcome[R]
}

type outcome[R any] struct {
	res R
	err error
}

// New returns a committer that passes batches to fn.
func New[T, R any](fn Func[T, R], o Options) *Committer[T, R] {
	o.MaxBatch, o.Parallel = max(1, o.MaxBatch), max(1, o.Parallel)
	return &Committer[T, R]{fn: fn, opts: o, queue: make(chan *pending[T, R], o.Queue)}
}

// Submit queues item and waits for its batch to commit. It returns
// ErrOverloaded at once when the queue is full. If ctx ends first, Submit
// returns ctx's error; the item may still be committed.
func (c *Committer[T, R]) Submit(ctx context.Context, item T) (R, error) {
	p := &pending[T, R]{item: item, done: make(chan outcome[R], 1)}
	var zero R
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return zero, ErrClosed
	}
	select {
	case c.queue <- p:
		c.mu.RUnlock()
	default:
		c.mu.RUnlock()
		return zero, ErrOverloaded
	}
	select {
	case o := <-p.done:
		return o.res, o.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// Run commits batches until ctx ends, then commits what is already queued
// (with a context that is not cancelled, so accepted work is not failed
// needlessly), answers later submitters with ErrClosed and returns. The
// commit in flight when ctx ends is cancelled (its items fail), which keeps
// a hung database from holding Run for the whole Timeout; callers stop the
// committer only once its submitters have their results.
func (c *Committer[T, R]) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range c.opts.Parallel {
		wg.Go(func() { c.loop(ctx) })
	}
	wg.Wait()
	return nil
}

func (c *Committer[T, R]) loop(ctx context.Context) {
	batch := make([]*pending[T, R], 0, c.opts.MaxBatch)
	for {
		select {
		case p := <-c.queue:
			batch = c.fill(append(batch[:0], p))
			c.commit(ctx, batch)
		case <-ctx.Done():
			c.mu.Lock()
			c.closed = true
			c.mu.Unlock()
			for {
				batch = c.fill(batch[:0])
				if len(batch) == 0 {
					return
				}
				c.commit(context.WithoutCancel(ctx), batch)
			}
		}
	}
}

// fill adds whatever is already waiting, up to the batch limit.
func (c *Committer[T, R]) fill(batch []*pending[T, R]) []*pending[T, R] {
	for len(batch) < c.opts.MaxBatch {
		select {
		case p := <-c.queue:
			batch = append(batch, p)
		default:
			return batch
		}
	}
	return batch
}

func (c *Committer[T, R]) commit(ctx context.Context, batch []*pending[T, R]) {
	items := make([]T, len(batch))
	for i, p := range batch {
		items[i] = p.item
	}
	res, err := c.call(ctx, items)
	if err != nil && len(items) > 1 && c.opts.Split != nil && c.opts.Split(err) {
		var down error // an error of another kind: the rest fail with it
		for i, p := range batch {
			if down != nil {
				p.done <- outcome[R]{err: down}
				continue
			}
			r, err := c.call(ctx, items[i:i+1:i+1])
			if err != nil {
				if !c.opts.Split(err) {
					down = err
				}
				p.done <- outcome[R]{err: err}
				continue
			}
			p.done <- outcome[R]{res: r[0]}
		}
		return
	}
	for i, p := range batch {
		if err != nil {
			p.done <- outcome[R]{err: err}
			continue
		}
		p.done <- outcome[R]{res: res[i]}
	}
}

// call runs fn, within the timeout, and checks that it gave one result per
// item.
func (c *Committer[T, R]) call(ctx context.Context, items []T) ([]R, error) {
	if c.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	res, err := c.fn(ctx, items)
	if err == nil && len(res) != len(items) {
		err = fmt.Errorf("batch: commit returned %d results for %d items", len(res), len(items))
	}
	return res, err
}

// Pending returns how many items wait for a commit (a gauge for metrics).
func (c *Committer[T, R]) Pending() int { return len(c.queue) }
