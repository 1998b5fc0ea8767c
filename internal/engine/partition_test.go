package engine_test

import (
	"context"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/connector/all"
	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/postgres"
	"github.com/switchboard-dev/switchboard/internal/store/storetest"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// blackHole is a TCP proxy to PostgreSQL that can cut the connections it
// holds without closing them: what a node sees when the database's address
// moves in a failover, or a partition drops its packets. Bytes sent on a
// cut connection vanish and nothing comes back, so only a timeout of the
// node's own ends the wait (TCP would, after many minutes). Connections
// made after the cut are forwarded: the database answers at its new place.
type blackHole struct {
	ln    net.Listener
	epoch atomic.Int64 // incremented by cut
	wg    sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
	once  sync.Once
}

func newBlackHole(t *testing.T, upstream string) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &blackHole{ln: ln}
	t.Cleanup(p.close)
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			born := p.epoch.Load()
			p.wg.Go(func() { p.pipe(up, c, born) })
			p.wg.Go(func() { p.pipe(c, up, born) })
		}
	})
	return p
}

// close stops the proxy and closes every connection (a cut one too, so
// the pool's close does not wait on it).
func (p *blackHole) close() {
	p.once.Do(func() {
		p.ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
}

// pipe copies src to dst until the connection is cut, then swallows src.
func (p *blackHole) pipe(dst, src net.Conn, born int64) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && p.epoch.Load() == born {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut black-holes every connection made so far.
func (p *blackHole) cut() { p.epoch.Add(1) }

// TestCommitTimeoutAfterPartition: when PostgreSQL stops answering on the
// connections a node holds, a group commit fails after the commit timeout
// (the webhook gets a 503 and is retried) instead of hanging the ingress
// until TCP gives up; the next commits go through new connections.
func TestCommitTimeoutAfterPartition(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	proxy := newBlackHole(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	st, err := postgres.Open(t.Context(), u.String(), postgres.Options{Migrate: true, MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	t.Cleanup(proxy.close) // first

	c, err := config.Parse("c.yaml", []byte(`
version: 1
systems: { crm: { kind: http, base_url: "http://127.0.0.1:9" } }
sources: { form: { webhook: {} } }
flows:
  f:
    on: form
    steps: [{ id: a, do: crm.request, with: { path: '"/x"' } }]
`), nil)
	require.NoError(t, err)
	plan, err := flow.Compile(c, all.Registry())
	require.NoError(t, err)
	const timeout = 300 * time.Millisecond
	eng := engine.New(engine.Config{Store: st, Plan: plan, CommitTimeout: timeout})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = eng.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	accept := func(key string) (engine.Accepted, error) {
		payload := []byte(`{"key":"` + key + `"}`)
		v, err := transform.Decode(payload)
		require.NoError(t, err)
		// Far longer than the commit timeout: the commit must end first.
		actx, acancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer acancel()
		acc, err := eng.Accept(actx, engine.Event{Source: "form", Key: key, Payload: payload, Value: v})
		require.NoError(t, actx.Err(), "the commit hung past the commit timeout")
		return acc, err
	}
	_, err = accept("before")
	require.NoError(t, err)

	proxy.cut()
	start := time.Now()
	_, err = accept("during")
	require.ErrorIs(t, err, context.DeadlineExceeded, "the commit on a cut connection times out")
	require.Less(t, time.Since(start), 10*timeout, "and not much later than the timeout")

	// The sender retries: it goes through on a new connection (the pool
	// may first try, and time out on, other connections it held).
	var acc engine.Accepted
	require.Eventually(t, func() bool {
		acc, err = accept("during")
		return err == nil
	}, 15*time.Second, 10*time.Millisecond, "no commit after the cut: %v", err)
	ev, err := st.GetEvent(t.Context(), acc.EventID)
	require.NoError(t, err)
	require.Equal(t, "during", ev.Key)
	runs, err := st.ListRuns(t.Context(), store.ListRunsParams{})
	require.NoError(t, err)
	require.Len(t, runs, 2, "one run per event, the timed-out attempt's included at most once")
}
