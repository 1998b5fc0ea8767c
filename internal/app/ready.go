package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// GET /readyz answers from a probe of the store: that it can commit (on
// SQLite a write and an fsync through the one writer connection that ingest
// needs). The endpoint is on the webhook listener, open to whoever reaches
// it, and load balancers probe every second or faster; a probe per request
// would let a burst of them queue commits ahead of the group commit. So
// requests share probes: those arriving while one runs wait for its result,
// and a result serves every request for readyFresh after it. A store that
// fails is then seen at most that much later.
const readyFresh = time.Second

// readyProbeTimeout bounds a probe, which no request's end cuts short
// (others may be waiting on it): a store that cannot commit within it is
// not ready. The probe's context alone does not bound it: SQLite's store
// runs a transaction's statements and its commit without one (see
// sqlite.Store.tx), so a commit stuck in an fsync on a stalled disk would
// hold every /readyz request, and log nothing, for as long as it lasts.
const readyProbeTimeout = 10 * time.Second

// unreadyReminder is how often a spell of failed probes is logged again.
const unreadyReminder = time.Minute

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	if err := s.ready.check(r.Context()); err != nil {
		http.Error(w, "store cannot take writes (see the server log)", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// readiness shares the store's probes among /readyz requests and logs a
// spell of failed probes: its start, a reminder a minute, and its end (a
// line per probe would bury the cause).
type readiness struct {
	probe func(context.Context) error
	log   *slog.Logger
	group singleflight.Group
	// probes counts the probes in flight. A probe outlives the requests
	// that wait for it; close waits for it, so that Server.Close does not
	// close the store under it (a false "cannot take writes" in the log of
	// every such shutdown, or a commit after the store's lock is let go).
	probes sync.WaitGroup

	mu       sync.Mutex // guards the fields below
	closed   bool       // no probe starts once set
	at       time.Time  // when the last probe ended (zero: none yet)
	err      error      // its result
	since    time.Time  // start of the current spell of failures; zero while ready
	lastLog  time.Time
	failures int
}

// check returns the result of a probe that ended less than readyFresh ago,
// or of the next one.
func (rd *readiness) check(ctx context.Context) error {
	if err, ok := rd.fresh(); ok {
		return err
	}
	done := rd.group.DoChan("", func() (any, error) {
		// Again: a probe may have ended between the look above and
		// this call, and a second one would be a commit for nothing.
		if err, ok := rd.fresh(); ok {
			return nil, err
		}
		rd.mu.Lock()
		if rd.closed {
			rd.mu.Unlock()
			return nil, errReadinessClosed
		}
		rd.probes.Add(1) // under mu: never after close's Wait has begun
		rd.mu.Unlock()
		defer rd.probes.Done()
		err := rd.run(ctx)
		rd.record(err)
		return nil, err
	})
	select {
	case res := <-done:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fresh returns the last probe's result if it ended less than readyFresh
// ago.
func (rd *readiness) fresh() (error, bool) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if rd.at.IsZero() || time.Since(rd.at) >= readyFresh {
		return nil, false
	}
	return rd.err, true
}

// run probes the store, and gives up on the probe after readyProbeTimeout
// whether or not it returns by then. (One that does not return, a commit
// stuck in the kernel, keeps its goroutine and the store's writer until it
// does; the next probe waits for the writer, and times out, with its
// context.)
func (rd *readiness) run(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readyProbeTimeout)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- rd.probe(pctx) }()
	select {
	case err := <-res:
		return err
	case <-pctx.Done():
		return fmt.Errorf("the store did not commit within %s", readyProbeTimeout)
	}
}

var errReadinessClosed = errors.New("the node is shutting down")

// close waits for the probe in flight, if any (at most readyProbeTimeout),
// and starts no other: the store is closed next.
func (rd *readiness) close() {
	rd.mu.Lock()
	rd.closed = true
	rd.mu.Unlock()
	rd.probes.Wait()
}

func (rd *readiness) record(err error) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	now := time.Now()
	rd.at, rd.err = now, err
	switch {
	case err == nil && !rd.since.IsZero():
		rd.log.Info("readiness: the store takes writes again", "failed_probes", rd.failures,
			"unready_for", now.Sub(rd.since).Round(time.Second).String())
		rd.since, rd.failures = time.Time{}, 0
	case err == nil:
	case rd.since.IsZero():
		rd.since, rd.lastLog, rd.failures = now, now, 1
		rd.log.Error("readiness: the store cannot take writes; /readyz answers 503", "error", err)
	default:
		rd.failures++
		if now.Sub(rd.lastLog) >= unreadyReminder {
			rd.lastLog = now
			rd.log.Error("readiness: the store still cannot take writes", "error", err,
				"failed_probes", rd.failures, "unready_for", now.Sub(rd.since).Round(time.Second).String())
		}
	}
}
