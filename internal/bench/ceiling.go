package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The ceilings (`bench --ceilings`) are two servers that do the least a
// durable acknowledgment and an end-to-end delivery can do, measured under
// the same load as the baseline: they show how far this machine lets the
// node's ratios go before any store work.
//
//   - append: each request's body is appended to one file and acknowledged
//     after it is synced, with a group commit (one write and one sync for
//     all the requests that arrived during the previous one). No index, no
//     dedupe, no run: the floor of "durable before acknowledged". The file
//     is written in place, over a region allocated before the phase, and
//     synced with fdatasync where there is one, so a sync flushes the data
//     and no size or time: cheaper than SQLite's sync of its log (modernc's
//     build calls fsync), so that the floor is one.
//   - relay: each request is acknowledged at once and its body posted to
//     the sink by cfg.Workers goroutines, nothing stored: the floor of
//     "one HTTP exchange in, one out".

// runCeilings measures both ceilings, in this process.
func runCeilings(ctx context.Context, cfg Config, rep *Report, body bodyFunc, progress io.Writer) error {
	ap, err := measure(ctx, "append", func(ctx context.Context) (*Phase, error) {
		dir, err := os.MkdirTemp("", "switchboard-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		log, err := newAppendLog(filepath.Join(dir, "append.log"))
		if err != nil {
			return nil, err
		}
		defer log.close()
		url, stop, err := serveHandler(log)
		if err != nil {
			return nil, err
		}
		defer stop()
		m := startMeter(&node{url: url, stop: stop})
		res, err := runLoad(ctx, cfg.load(url, body))
		p := phaseOf("append", res)
		m.done(p)
		return p, err
	})
	if err != nil {
		return err
	}
	rep.add(ap, progress)

	rl, err := measure(ctx, "relay", func(ctx context.Context) (*Phase, error) {
		sk := newSink(cfg.FailPercent)
		sinkURL, stopSink, err := serveHandler(sk)
		if err != nil {
			return nil, err
		}
		defer stopSink()
		r := newRelay(ctx, sinkURL, cfg.Workers)
		defer r.close()
		url, stop, err := serveHandler(r)
		if err != nil {
			return nil, err
		}
		defer stop()
		m := startMeter(&node{url: url, stop: stop})
		start := time.Now()
		res, err := runLoad(ctx, cfg.load(url, body))
		if err != nil {
			return nil, err
		}
		cfg.drain(ctx, func() bool { return r.pending.Load() == 0 })
		p := phaseOf("relay", res)
		// The relay does not dedupe: a re-sent event is posted again, under
		// a key of its own.
		sk.report(p, res.AckedIDs, 1, start)
		m.done(p)
		return p, nil
	})
	if err != nil {
		return err
	}
	rep.add(rl, progress)
	return nil
}

// appendLog is the append ceiling's server: a group commit to one file,
// written round a region of appendRegion bytes.
type appendLog struct {
	f       *os.File
	off     int64 // where the next batch goes
	commits chan appendReq
	quit    chan struct{} // closed by close: handlers and run stop
	done    chan struct{} // closed when run has returned
}

// appendRegion is the append log's size: a batch wraps round to its start.
const appendRegion = 64 << 20

type appendReq struct {
	body   []byte
	synced chan error
}

func newAppendLog(path string) (*appendLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < appendRegion && err == nil; off += int64(len(zeros)) {
		_, err = f.WriteAt(zeros, off)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("allocate the append log: %w", err)
	}
	l := &appendLog{f: f, commits: make(chan appendReq, 1024), quit: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l, nil
}

// run writes and syncs, once per batch, everything that arrived while the
// previous batch was syncing.
func (l *appendLog) run() {
	defer close(l.done)
	var buf []byte
	var waiting []chan error
	for {
		var r appendReq
		select {
		case r = <-l.commits:
		case <-l.quit:
			return
		}
		buf = append(buf[:0], r.body...)
		waiting = append(waiting[:0], r.synced)
	batch:
		for {
			select {
			case r := <-l.commits:
				buf = append(buf, r.body...)
				waiting = append(waiting, r.synced)
			default:
				break batch
			}
		}
		err := l.write(buf)
		if err == nil {
			err = datasync(l.f)
		}
		for _, w := range waiting {
			w <- err
		}
	}
}

// write writes b at the log's offset, wrapping round the region.
func (l *appendLog) write(b []byte) error {
	for len(b) > 0 {
		n := min(int64(len(b)), appendRegion-l.off)
		if _, err := l.f.WriteAt(b[:n], l.off); err != nil {
			return err
		}
		b, l.off = b[n:], (l.off+n)%appendRegion
	}
	return nil
}

func (l *appendLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// A server stopped without waiting for its handlers (its shutdown
	// timed out) leaves them to find the log closed: they answer 503.
	synced := make(chan error, 1)
	select {
	case l.commits <- appendReq{body: append(body, '\n'), synced: synced}:
	case <-l.quit:
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return
	}
	select {
	case err := <-synced:
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	case <-l.done:
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (l *appendLog) close() {
	close(l.quit)
	<-l.done
	l.f.Close()
}

// relay is the relay ceiling's server: acknowledge, then post to the sink.
type relay struct {
	sinkURL string
	client  *http.Client
	queue   chan []byte
	pending atomic.Int64 // acknowledged, not yet delivered
	seq     atomic.Int64
	wg      sync.WaitGroup
	quit    chan struct{}      // closed by close: handlers stop queueing
	cancel  context.CancelFunc // stops the workers (see close)
}

func newRelay(ctx context.Context, sinkURL string, workers int) *relay {
	ctx, cancel := context.WithCancel(ctx)
	r := &relay{
		sinkURL: sinkURL,
		client:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, DisableCompression: true}},
		// Bounded: a full queue holds the sender back rather than
		// growing without end.
		queue:  make(chan []byte, 4*workers),
		quit:   make(chan struct{}),
		cancel: cancel,
	}
	for range workers {
		r.wg.Go(func() { r.work(ctx) })
	}
	return r
}

func (r *relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// See appendLog.ServeHTTP. Closed is checked first: the queue may
	// have room, but no worker will take from it.
	closed := func() { http.Error(w, "closed", http.StatusServiceUnavailable) }
	select {
	case <-r.quit:
		closed()
		return
	default:
	}
	r.pending.Add(1)
	select {
	case r.queue <- body:
	case <-r.quit:
		r.pending.Add(-1)
		closed()
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// work posts each body until the sink answers 2xx (a 503 is retried at
// once: the ceiling has no back-off to wait out).
func (r *relay) work(ctx context.Context) {
	for {
		var body []byte
		select {
		case body = <-r.queue:
		case <-ctx.Done():
			return
		}
		key := "relay_" + strconv.FormatInt(r.seq.Add(1), 10)
		for ctx.Err() == nil && r.post(ctx, key, body) != nil {
		}
		r.pending.Add(-1)
	}
}

func (r *relay) post(ctx context.Context, key string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.sinkURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("sink answered %d", resp.StatusCode)
	}
	return nil
}

// close stops the workers: what is still queued (the drain gave up on it)
// is dropped.
func (r *relay) close() {
	close(r.quit)
	r.cancel()
	r.wg.Wait()
	r.client.CloseIdleConnections()
}
