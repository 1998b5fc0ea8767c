package app_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/ingest"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/postgres"
	"github.com/switchboard-dev/switchboard/internal/store/storetest"
)

// Names used by every multi-node config (multiNodeConfig).
const (
	mnSource = "orders"
	mnFlow   = "deliver"
	mnStep   = "post"
	// leaderAcquired is the elector's log message when it starts a duty.
	leaderAcquired = "leadership acquired: running duty"
)

// multiNodeConfig is one unsigned source keyed by .id and a one-step flow
// posting {id} to sinkURL, on the PostgreSQL store dsn. lease 0 keeps the
// default.
func multiNodeConfig(dsn, sinkURL string, workers int, lease time.Duration) string {
	leaseLine := ""
	if lease > 0 {
		leaseLine = fmt.Sprintf("lease: %s\n", lease)
	}
	return fmt.Sprintf(`version: 1
store: %q
workers: %d
%sretry: { base: 10ms, cap: 1s, attempts: 30 }
systems:
  sink: { kind: http, base_url: %q, timeout: 20s }
sources:
  %s:
    webhook: {}
    key: .id
flows:
  %s:
    on: %s
    steps:
      - id: %s
        do: sink.request
        with:
          method: '"POST"'
          path: '"/orders"'
          body: '{id: .id}'
`, dsn, workers, leaseLine, sinkURL, mnSource, mnFlow, mnSource, mnStep)
}

// dedupeByKey answers like a downstream that honours Idempotency-Key: a
// repeat of a key already answered 2xx is answered 200 again but has no
// effect of its own.
func dedupeByKey(_ map[string]any, earlier []downstreamRequest) downstreamReply {
	for _, r := range earlier {
		if r.Status/100 == 2 {
			return downstreamReply{Status: http.StatusOK, Body: map[string]any{"duplicate": true}}
		}
	}
	return downstreamReply{Status: http.StatusOK, Body: map[string]any{"duplicate": false}}
}

// effects counts the keys the downstream answered 2xx at least once: the
// writes that took effect.
func effects(seen map[string][]downstreamRequest) int {
	n := 0
	for _, reqs := range seen {
		for _, r := range reqs {
			if r.Status/100 == 2 {
				n++
				break
			}
		}
	}
	return n
}

// node is one `switchboard serve` of a cluster.
type node struct {
	addr string
	log  string
	proc *serveProc
}

// startCluster writes cfg to a fresh directory and starts n nodes on it,
// each on its own port and with its own log.
func startCluster(t testing.TB, bin, cfg string, n int) []*node {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "switchboard.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	nodes := make([]*node, n)
	for i := range nodes {
		nd := &node{addr: freeAddr(t), log: filepath.Join(dir, fmt.Sprintf("node-%d.log", i))}
		nd.proc = startServe(t, bin, cfgPath, nd.addr, nd.log)
		nodes[i] = nd
	}
	return nodes
}

// stopServe sends SIGTERM and requires a clean exit within 30s.
func stopServe(t testing.TB, p *serveProc) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		require.FailNow(t, "serve did not stop within 30s of SIGTERM")
	}
	require.NoError(t, p.err, "serve exit after SIGTERM")
}

// killServe sends SIGKILL, waits for the process to die and returns the
// time the signal was sent.
func killServe(t testing.TB, p *serveProc) time.Time {
	t.Helper()
	require.NoError(t, p.cmd.Process.Kill())
	at := time.Now()
	<-p.exited
	var exitErr *exec.ExitError
	require.ErrorAs(t, p.err, &exitErr, "the node should have died of SIGKILL")
	return at
}

// hookAnswer is a node's answer to one webhook.
type hookAnswer struct {
	Node      int
	Status    int
	Duplicate bool // the Switchboard-Duplicate header
	Body      ingest.Response
}

// postHook posts body to source on the node at addr. An error means no
// HTTP answer (connection refused or reset).
func postHook(t testing.TB, client *http.Client, addr, body string) (hookAnswer, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/hooks/"+mnSource, strings.NewReader(body))
	if err != nil {
		return hookAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return hookAnswer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return hookAnswer{}, err
	}
	a := hookAnswer{Status: resp.StatusCode, Duplicate: resp.Header.Get("Switchboard-Duplicate") == "true"}
	if resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, &a.Body); err != nil {
			return hookAnswer{}, fmt.Errorf("answer %d %q: %w", resp.StatusCode, raw, err)
		}
	}
	return a, nil
}

// newHookClient is an HTTP client that keeps up to conns idle connections
// per node.
func newHookClient(t testing.TB, conns int) *http.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conns
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// responseGate stalls the downstream's answers (not its effects) while
// held: a request is recorded, and takes effect, when it arrives; only
// writing its response waits. Holding it until every worker of the
// cluster is waiting guarantees that a node killed at that moment has
// exactly `workers` steps whose effect happened but whose result it never
// received, let alone committed.
type responseGate struct {
	mu      sync.Mutex
	release chan struct{} // nil when not held
	held    atomic.Int64  // answers waiting since the last hold
}

func (g *responseGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.release == nil {
		g.release = make(chan struct{})
		g.held.Store(0)
	}
}

// open releases the waiting answers; it may be called any number of times.
func (g *responseGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.release != nil {
		close(g.release)
		g.release = nil
	}
}

func (g *responseGate) wait() {
	g.mu.Lock()
	ch := g.release
	if ch != nil {
		g.held.Add(1)
	}
	g.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// gatedWriter makes WriteHeader wait at the gate.
type gatedWriter struct {
	http.ResponseWriter
	gate *responseGate
}

func (w gatedWriter) WriteHeader(code int) {
	w.gate.wait()
	w.ResponseWriter.WriteHeader(code)
}

func (w gatedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// newGatedDownstream is newDownstream whose answers wait at gate.
func newGatedDownstream(t testing.TB, delay time.Duration, gate *responseGate,
	respond func(map[string]any, []downstreamRequest) downstreamReply,
) *downstream {
	t.Helper()
	d := &downstream{delay: delay, respond: respond, byKey: map[string][]downstreamRequest{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.ServeHTTP(gatedWriter{ResponseWriter: w, gate: gate}, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(gate.open) // runs before srv.Close: never leave handlers waiting
	d.URL = srv.URL
	return d
}

// TestMultiNodeFailover runs three nodes on one PostgreSQL schema under a
// load of distinct webhooks spread across them, some posted to two nodes,
// kills one node with SIGKILL while every worker of the cluster has a step
// in flight, and checks what the downstream saw and what the store holds:
//
//	(a) Durable before acknowledged, across nodes: every event that got a
//	    2xx from any node was delivered. Clients re-post what was not
//	    acknowledged to another live node, as a sender behind a load
//	    balancer does, so every event ends up acknowledged.
//	(b) One stored event per key, whichever node answered: all 2xx answers
//	    for an event carry the same event_id, at most one of them is a 202
//	    (the others are duplicates), and an event posted to a second node
//	    after its first 2xx is always answered as a duplicate.
//	(c) Failover with idempotent delivery: the killed node's in-flight runs
//	    are claimed by the survivors once their leases expire and their
//	    step is resent with the SAME Idempotency-Key. The downstream stalls
//	    its answers at the kill until all 3*workers steps of the cluster
//	    wait on it, so the killed node had exactly `workers` steps whose
//	    effect happened and whose result was lost: exactly `workers` keys
//	    repeat, each once before the kill and once after, effects equal the
//	    number of events, and no other key is ever sent twice.
//	(d) The store holds each event once with exactly one run, all
//	    succeeded; every run has exactly one recorded attempt (the killed
//	    node never recorded its in-flight ones), and the runs whose attempt
//	    number is 2, i.e. claimed a second time, are exactly the runs of the
//	    repeated keys, started after the kill by a survivor. The survivors
//	    stop cleanly on SIGTERM.
func TestMultiNodeFailover(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs three nodes under load and kills one; skipped with -short")
	}
	dsn := storetest.PostgresDSN(t)
	const (
		events    = 5000
		producers = 48
		killAfter = 2000 // acknowledged events before the kill
		workers   = 8
		nodeCount = 3
		victim    = 1
		dupEvery  = 20 // every 20th event is also posted to another node: 5%
	)

	bin := buildSwitchboard(t)
	gate := &responseGate{}
	down := newGatedDownstream(t, 2*time.Millisecond, gate, dedupeByKey)
	nodes := startCluster(t, bin, multiNodeConfig(dsn, down.URL, workers, 3*time.Second), nodeCount)

	ids := make([]string, events)
	for i := range ids {
		ids[i] = fmt.Sprintf("mn-%04d", i)
	}
	client := newHookClient(t, producers)
	var live [nodeCount]atomic.Bool // what the load balancer knows
	for i := range live {
		live[i].Store(true)
	}

	var (
		mu       sync.Mutex
		answers  = make([][]hookAnswer, events) // the 2xx answers per event
		acked    = make([]atomic.Bool, events)
		acks     atomic.Int64
		reposts  atomic.Int64
		failed   atomic.Int64
		killNow  = make(chan struct{})
		killOnce sync.Once
	)
	deadline := time.Now().Add(90 * time.Second)
	// deliver posts event i to node first, then to the next live nodes in
	// turn, until one answers 2xx.
	deliver := func(i, first int) {
		body := fmt.Sprintf(`{"id":%q,"n":%d}`, ids[i], i)
		n := first
		for try := 0; ; try++ {
			if !live[n].Load() {
				n = (n + 1) % nodeCount
				continue
			}
			a, err := postHook(t, client, nodes[n].addr, body)
			if err == nil && a.Status/100 == 2 {
				a.Node = n
				mu.Lock()
				answers[i] = append(answers[i], a)
				mu.Unlock()
				if acked[i].CompareAndSwap(false, true) && acks.Add(1) == killAfter {
					killOnce.Do(func() { close(killNow) })
				}
				return
			}
			if t.Context().Err() != nil || time.Now().After(deadline) {
				failed.Add(1)
				return
			}
			reposts.Add(1)
			n = (n + 1) % nodeCount
			if try%nodeCount == nodeCount-1 {
				time.Sleep(20 * time.Millisecond) // a client's backoff
			}
		}
	}

	jobs := make(chan int)
	var wg sync.WaitGroup
	loadStart := time.Now()
	for range producers {
		wg.Go(func() {
			for i := range jobs {
				deliver(i, i%nodeCount)
				if i%dupEvery == 0 {
					deliver(i, (i+1)%nodeCount)
				}
			}
		})
	}
	go func() {
		defer close(jobs)
		for i := range events {
			select {
			case jobs <- i:
			case <-t.Context().Done():
				return
			}
		}
	}()
	loadDone := make(chan struct{})
	go func() { wg.Wait(); close(loadDone) }()

	// The kill, while the load goes on: stall the downstream's answers
	// until every worker of the cluster waits on one, then kill.
	select {
	case <-killNow:
	case <-loadDone:
		require.FailNow(t, "the load ended before the kill", "%d of %d events acknowledged", acks.Load(), events)
	}
	killTriggered := time.Now()
	gate.hold()
	for gate.held.Load() < nodeCount*workers {
		if time.Since(killTriggered) > 15*time.Second {
			gate.open()
			require.FailNow(t, "not every worker had a step in flight", "%d of %d waiting", gate.held.Load(), nodeCount*workers)
		}
		time.Sleep(time.Millisecond)
	}
	live[victim].Store(false)
	killAt := killServe(t, nodes[victim].proc)
	gate.open()
	ackedAtKill := acks.Load()

	select {
	case <-loadDone:
	case <-time.After(time.Until(deadline) + 30*time.Second):
		require.FailNow(t, "clients did not finish")
	}
	loadTime := time.Since(loadStart)
	require.Zero(t, failed.Load(), "events never acknowledged by any node")

	// Wait until the downstream saw every event and the store has every run
	// succeeded. Operator commands read the store beside running nodes;
	// so does this.
	live2, err := postgres.Open(t.Context(), dsn, postgres.Options{})
	require.NoError(t, err)
	defer live2.Close() // closing twice is harmless
	require.Eventually(t, func() bool {
		if effects(down.snapshot()) < events {
			return false
		}
		runs, err := live2.ListRuns(t.Context(), store.ListRunsParams{State: store.RunSucceeded, Limit: 2 * events})
		return err == nil && len(runs) == events
	}, 120*time.Second, 200*time.Millisecond, "not every event was delivered")
	require.NoError(t, live2.Close())
	for i, nd := range nodes {
		if i != victim {
			stopServe(t, nd.proc)
		}
	}

	// (a) and (b): the answers.
	zero202 := 0
	for i, as := range answers {
		require.NotEmpty(t, as, "event %s was never acknowledged", ids[i])
		fresh := 0
		for _, a := range as {
			require.Equal(t, as[0].Body.EventID, a.Body.EventID, "event %s: two nodes answered different event ids", ids[i])
			require.Equal(t, a.Status == http.StatusOK, a.Duplicate, "event %s: status and duplicate header disagree", ids[i])
			require.Equal(t, a.Duplicate, a.Body.Duplicate, "event %s", ids[i])
			if !a.Duplicate {
				require.Equal(t, http.StatusAccepted, a.Status)
				fresh++
			}
		}
		require.LessOrEqual(t, fresh, 1, "event %s was stored as new by more than one post", ids[i])
		if i%dupEvery == 0 {
			require.Len(t, as, 2, "event %s was posted to two nodes", ids[i])
			require.True(t, as[1].Duplicate, "event %s: the post to a second node after a 2xx must be a duplicate", ids[i])
		}
		if fresh == 0 {
			// Stored by a post whose answer was lost (the node died after
			// the commit): every 2xx the client saw was a duplicate.
			zero202++
		}
	}
	require.LessOrEqual(t, zero202, producers, "only posts in flight at the kill can lose their 202")

	// (c): what the downstream saw.
	seen := down.snapshot()
	keyOf := make(map[string]int, events) // Idempotency-Key -> event index
	for i, id := range ids {
		keyOf[delivery.IdempotencyKey(mnSource, id, mnFlow, mnStep, 0)] = i
	}
	require.Len(t, keyOf, events, "two events share a key")
	for key := range seen {
		_, ok := keyOf[key]
		require.True(t, ok, "the downstream saw an unexpected Idempotency-Key %q", key)
	}
	repeated := map[string]bool{} // event ids whose key was sent twice
	// A survivor starved of CPU long enough (CI runs many test binaries at
	// once) can miss its lease renewal: another node then takes the run
	// over and resends its step with the same key, and the starved node's
	// late result is refused (it logs "lease lost"). Those keys repeat by
	// design, at any time; every other repeat must be one of the killed
	// node's in-flight steps.
	leaseLost := leaseLostEvents(t, nodes, victim)
	eventIDOf := func(i int) string { return answers[i][0].Body.EventID }
	var lastDelivery, firstResend, lastResend time.Time
	for key, i := range keyOf {
		reqs := seen[key]
		require.NotEmpty(t, reqs, "event %s was acknowledged but never delivered", ids[i])
		ok := 0
		for _, r := range reqs {
			require.Equal(t, ids[i], r.Body["id"], "a request under %s's key carried another event", ids[i])
			if r.Status/100 == 2 {
				ok++
			}
			if r.At.After(lastDelivery) {
				lastDelivery = r.At
			}
		}
		require.Positive(t, ok, "event %s was acknowledged but never delivered", ids[i])
		if len(reqs) == 1 {
			continue
		}
		repeated[ids[i]] = true
		if leaseLost[eventIDOf(i)] {
			continue
		}
		require.Len(t, reqs, 2, "event %s: a key may be sent once more, by the node that took its run over", ids[i])
		require.True(t, reqs[0].At.Before(killAt) && reqs[1].At.After(killAt),
			"event %s: a key may repeat only as one request in flight at the kill and one resend after it (requests at %s and %s, kill at %s; no survivor logged a lost lease for it)",
			ids[i], reqs[0].At.Format("15:04:05.000"), reqs[1].At.Format("15:04:05.000"), killAt.Format("15:04:05.000"))
		if reqs[1].At.After(lastResend) {
			lastResend = reqs[1].At
		}
		if firstResend.IsZero() || reqs[1].At.Before(firstResend) {
			firstResend = reqs[1].At
		}
	}
	require.Equal(t, events, effects(seen))
	fromVictim := 0
	for i, id := range ids {
		if repeated[id] && !leaseLost[eventIDOf(i)] {
			fromVictim++
		}
	}
	require.Equal(t, workers, fromVictim, "exactly the killed node's in-flight steps are resent (besides %d runs whose lease a starved survivor lost)", len(repeated)-fromVictim)

	// (d): what the store holds, read after the shutdown.
	st, err := postgres.Open(t.Context(), dsn, postgres.Options{})
	require.NoError(t, err)
	defer st.Close()
	stored, err := st.ListEvents(t.Context(), store.ListEventsParams{Limit: 2 * events})
	require.NoError(t, err)
	require.Len(t, stored, events)
	index := make(map[string]int, events)
	for i, id := range ids {
		index[id] = i
	}
	eventKey := map[string]string{} // stored event id -> key
	for _, e := range stored {
		i, ok := index[e.Key]
		require.True(t, ok, "unexpected stored event %q", e.Key)
		_, dup := eventKey[e.ID]
		require.False(t, dup, "event id %s stored twice", e.ID)
		eventKey[e.ID] = e.Key
		require.Equal(t, answers[i][0].Body.EventID, e.ID, "event %s: the answered event_id is not the stored one", e.Key)
	}
	require.Len(t, eventKey, events, "an event key is stored twice")
	runs, err := st.ListRuns(t.Context(), store.ListRunsParams{Limit: 2 * events})
	require.NoError(t, err)
	require.Len(t, runs, events)
	runsOf := map[string]int{}
	for _, r := range runs {
		require.Equal(t, store.RunSucceeded, r.State, "run %s: %s", r.ID, r.LastError)
		_, ok := eventKey[r.EventID]
		require.True(t, ok, "run %s belongs to an unknown event %s", r.ID, r.EventID)
		runsOf[r.EventID]++
	}
	require.Len(t, runsOf, events, "not exactly one run per event")

	conn, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	rows, err := conn.Query(t.Context(), `SELECT e.key, a.number, a.outcome, a.started_at
		FROM attempts a JOIN runs r ON r.id = a.run_id JOIN events e ON e.id = r.event_id`)
	require.NoError(t, err)
	type attemptRow struct {
		key     string
		number  int
		outcome string
		started time.Time
	}
	attempts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (attemptRow, error) {
		var a attemptRow
		err := r.Scan(&a.key, &a.number, &a.outcome, &a.started)
		return a, err
	})
	require.NoError(t, err)
	// A starved survivor's refused result is still recorded: its run has
	// two attempts.
	require.Len(t, attempts, events+len(repeated)-fromVictim, "one recorded attempt per run, plus the refused ones")
	takenOver := map[string]bool{}
	for _, a := range attempts {
		require.Equal(t, string(store.AttemptSucceeded), a.outcome, "event %s", a.key)
		switch a.number {
		case 1:
		case 2:
			takenOver[a.key] = true
			require.True(t, a.started.After(killAt) || len(repeated) > fromVictim, "event %s: claimed a second time before the kill", a.key)
		default:
			require.Failf(t, "unexpected attempt number", "event %s: attempt %d", a.key, a.number)
		}
	}
	require.Equal(t, repeated, takenOver, "the runs claimed twice are exactly those whose key was resent")

	t.Logf("cluster: %d nodes x %d workers, lease 3s; %d events (%d also posted to a second node) by %d clients",
		nodeCount, workers, events, events/dupEvery, producers)
	t.Logf("acknowledged: %.0f events/s across the cluster over the whole load (%.0f/s before the kill); %d acknowledged at the kill; %d re-posts; %d events stored by a post whose answer was lost",
		float64(events)/loadTime.Seconds(), float64(killAfter)/killTriggered.Sub(loadStart).Seconds(), ackedAtKill, reposts.Load(), zero202)
	t.Logf("kill to last delivery: %s; kill to resends of the taken-over steps: first %s, last %s; repeated keys: %d (the killed node's %d workers)",
		lastDelivery.Sub(killAt).Round(time.Millisecond), firstResend.Sub(killAt).Round(time.Millisecond),
		lastResend.Sub(killAt).Round(time.Millisecond), len(repeated), workers)
}

// TestCrossNodeDuplicates posts each event to two nodes at the same instant
// and checks that exactly one of them stores it: one answer 202, the other
// 200 with Switchboard-Duplicate: true, both with the same event_id, one
// event and one run in the store, one delivery downstream.
func TestCrossNodeDuplicates(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs two nodes; skipped with -short")
	}
	dsn := storetest.PostgresDSN(t)
	const events = 200

	bin := buildSwitchboard(t)
	down := newDownstream(t, 0, dedupeByKey)
	nodes := startCluster(t, bin, multiNodeConfig(dsn, down.URL, 2, 0), 2)
	client := newHookClient(t, 2)

	type pair [2]struct {
		answer hookAnswer
		err    error
	}
	results := make([]pair, events)
	ids := make([]string, events)
	for i := range events {
		ids[i] = fmt.Sprintf("dup-%03d", i)
		body := fmt.Sprintf(`{"id":%q}`, ids[i])
		start := make(chan struct{})
		var wg sync.WaitGroup
		for n := range nodes {
			wg.Go(func() {
				<-start
				results[i][n].answer, results[i][n].err = postHook(t, client, nodes[n].addr, body)
				results[i][n].answer.Node = n
			})
		}
		close(start)
		wg.Wait()
	}

	wonBy := [2]int{}
	eventIDs := map[string]string{} // key -> answered event id
	for i, r := range results {
		require.NoError(t, r[0].err, ids[i])
		require.NoError(t, r[1].err, ids[i])
		a, b := r[0].answer, r[1].answer
		require.Equal(t, a.Body.EventID, b.Body.EventID, "%s: two event ids", ids[i])
		require.NotEmpty(t, a.Body.EventID)
		statuses := []int{a.Status, b.Status}
		require.ElementsMatch(t, []int{http.StatusAccepted, http.StatusOK}, statuses, "%s: answers", ids[i])
		for _, x := range []hookAnswer{a, b} {
			require.Equal(t, x.Status == http.StatusOK, x.Duplicate, "%s: node %d: Switchboard-Duplicate header", ids[i], x.Node)
			require.Equal(t, x.Duplicate, x.Body.Duplicate, "%s: node %d: body", ids[i], x.Node)
			if !x.Duplicate {
				wonBy[x.Node]++
			}
		}
		eventIDs[ids[i]] = a.Body.EventID
	}

	st, err := postgres.Open(t.Context(), dsn, postgres.Options{})
	require.NoError(t, err)
	defer st.Close()
	require.Eventually(t, func() bool {
		runs, err := st.ListRuns(t.Context(), store.ListRunsParams{State: store.RunSucceeded, Limit: 2 * events})
		return err == nil && len(runs) == events
	}, 60*time.Second, 50*time.Millisecond, "not every run succeeded")
	for _, nd := range nodes {
		stopServe(t, nd.proc)
	}

	stored, err := st.ListEvents(t.Context(), store.ListEventsParams{Limit: 2 * events})
	require.NoError(t, err)
	require.Len(t, stored, events)
	for _, e := range stored {
		require.Equal(t, eventIDs[e.Key], e.ID, "event %s: stored id", e.Key)
	}
	runs, err := st.ListRuns(t.Context(), store.ListRunsParams{Limit: 2 * events})
	require.NoError(t, err)
	require.Len(t, runs, events)
	runsOf := map[string]int{}
	for _, r := range runs {
		require.Equal(t, store.RunSucceeded, r.State, "run %s: %s", r.ID, r.LastError)
		runsOf[r.EventID]++
	}
	require.Len(t, runsOf, events, "not exactly one run per event")

	// One delivery per event: nothing was killed, so no key is resent.
	seen := down.snapshot()
	require.Len(t, seen, events)
	for _, id := range ids {
		require.Len(t, seen[delivery.IdempotencyKey(mnSource, id, mnFlow, mnStep, 0)], 1, "event %s", id)
	}
	t.Logf("%d events posted to both nodes at once: node 0 stored %d, node 1 stored %d", events, wonBy[0], wonBy[1])
}

// leaderLine is one "leadership acquired" log line of the retention duty.
type leaderLine struct {
	Node string
	At   time.Time
}

// logLines returns the JSON log lines of path whose msg is msg and whose
// duty is "retention".
func logLines(t testing.TB, path, msg string) []leaderLine {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []leaderLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
			Duty string    `json:"duty"`
			Node string    `json:"node"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != msg || l.Duty != "retention" {
			continue
		}
		out = append(out, leaderLine{Node: l.Node, At: l.Time})
	}
	require.NoError(t, sc.Err())
	return out
}

// retentionLease reads the holder and expiry of the retention lease; ok is
// false when there is no such lease.
func retentionLease(t testing.TB, conn *pgx.Conn) (holder string, expires time.Time, ok bool) {
	t.Helper()
	err := conn.QueryRow(t.Context(), `SELECT holder, expires_at FROM leases WHERE name = 'retention'`).Scan(&holder, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", time.Time{}, false
	}
	require.NoError(t, err)
	return holder, expires, true
}

// TestSingletonLeadership runs three nodes and checks that the retention
// duty runs on exactly one of them, that the lease names that node, that
// after a SIGKILL another node takes the duty over only once the dead
// holder's lease has expired, and that a holder stopped with SIGTERM
// releases the lease so the last node takes over at once.
func TestSingletonLeadership(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs three nodes and kills one; skipped with -short")
	}
	dsn := storetest.PostgresDSN(t)
	const lease = 2 * time.Second

	bin := buildSwitchboard(t)
	// No events are posted: the sink is never called.
	nodes := startCluster(t, bin, multiNodeConfig(dsn, "http://127.0.0.1:9", 2, lease), 3)
	conn, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	defer conn.Close(t.Context())

	// acquired returns, per node, its "leadership acquired" lines.
	acquired := func() [][]leaderLine {
		out := make([][]leaderLine, len(nodes))
		for i, nd := range nodes {
			out[i] = logLines(t, nd.log, leaderAcquired)
		}
		return out
	}
	// holderOf finds the only node that acquired the lease among alive,
	// requiring that no other node of alive did.
	holderOf := func(lines [][]leaderLine, alive ...int) (int, leaderLine) {
		h := -1
		for _, i := range alive {
			if len(lines[i]) == 0 {
				continue
			}
			require.Equal(t, -1, h, "nodes %d and %d both acquired the retention lease", h, i)
			require.Len(t, lines[i], 1, "node %d acquired the lease more than once", i)
			h = i
		}
		require.NotEqual(t, -1, h)
		return h, lines[h][0]
	}
	anyAcquired := func(alive ...int) func() bool {
		return func() bool {
			lines := acquired()
			for _, i := range alive {
				if len(lines[i]) > 0 {
					return true
				}
			}
			return false
		}
	}
	// requireHolder checks that the lease table names node i.
	requireHolder := func(i int, line leaderLine) time.Time {
		holder, expires, ok := retentionLease(t, conn)
		require.True(t, ok, "no retention lease")
		require.Equal(t, line.Node, holder, "the lease's holder is not the node that logged the acquisition")
		require.Contains(t, holder, fmt.Sprintf("/%d/", nodes[i].proc.cmd.Process.Pid), "the holder is not node %d's process", i)
		return expires
	}

	// One leader, and it stays the only one for two lease periods.
	require.Eventually(t, anyAcquired(0, 1, 2), 5*time.Second, 20*time.Millisecond, "no node acquired the retention lease")
	first, firstLine := holderOf(acquired(), 0, 1, 2)
	firstExpiry := requireHolder(first, firstLine)
	watchUntil := time.Now().Add(2 * lease)
	lastExpiry := firstExpiry
	for time.Now().Before(watchUntil) {
		lines := acquired()
		h, line := holderOf(lines, 0, 1, 2)
		require.Equal(t, first, h)
		require.Equal(t, firstLine, line)
		lastExpiry = requireHolder(first, firstLine)
		time.Sleep(100 * time.Millisecond)
	}
	require.True(t, lastExpiry.After(firstExpiry), "the holder did not renew its lease")

	// SIGKILL the holder: its lease stays until it expires, then exactly
	// one survivor takes it, and not before the expiry.
	var survivors []int
	for i := range nodes {
		if i != first {
			survivors = append(survivors, i)
		}
	}
	_, expiryAtKill, ok := retentionLease(t, conn)
	require.True(t, ok)
	killAt := killServe(t, nodes[first].proc)
	require.Eventually(t, anyAcquired(survivors...), 3*lease+time.Second, 20*time.Millisecond,
		"no survivor took the retention lease over within three lease periods")
	second, secondLine := holderOf(acquired(), survivors...)
	requireHolder(second, secondLine)
	require.True(t, secondLine.At.After(killAt), "the takeover was logged before the kill")
	// Log times have millisecond precision.
	require.False(t, secondLine.At.Before(expiryAtKill.Truncate(time.Millisecond)),
		"node %d took the lease at %s, before the killed holder's lease expired at %s",
		second, secondLine.At.Format(time.RFC3339Nano), expiryAtKill.Format(time.RFC3339Nano))
	takeover := secondLine.At.Sub(killAt)

	// SIGTERM the new holder: it releases the lease on the way out, so the
	// last node takes it at its next campaign tick, before the lease would
	// have expired.
	last := survivors[0]
	if last == second {
		last = survivors[1]
	}
	_, expiryAtStop, ok := retentionLease(t, conn)
	require.True(t, ok)
	stopAt := time.Now()
	stopServe(t, nodes[second].proc)
	require.NotEmpty(t, logLines(t, nodes[second].log, "leadership released"), "the stopped holder did not release the lease")
	require.Eventually(t, anyAcquired(last), lease+time.Second, 20*time.Millisecond, "the last node did not take the released lease")
	_, lastLine := holderOf(acquired(), last)
	requireHolder(last, lastLine)
	require.True(t, lastLine.At.After(stopAt.Truncate(time.Millisecond)))
	require.True(t, lastLine.At.Before(expiryAtStop),
		"the last node took the lease at %s, only after it expired at %s: it was not released",
		lastLine.At.Format(time.RFC3339Nano), expiryAtStop.Format(time.RFC3339Nano))
	handover := lastLine.At.Sub(stopAt)

	stopServe(t, nodes[last].proc)
	_, _, ok = retentionLease(t, conn)
	require.False(t, ok, "the last holder did not release the lease on shutdown")
	for i, nd := range nodes {
		require.Empty(t, logLines(t, nd.log, "leadership lost: duty stopped"), "node %d lost the lease while alive", i)
	}
	t.Logf("lease %s: takeover %s after SIGKILL of the holder; handover %s after SIGTERM of the next one",
		lease, takeover.Round(time.Millisecond), handover.Round(time.Millisecond))
}

// leaseLostEvents returns the event ids whose attempt result a surviving
// node dropped because its lease had lapsed, from the nodes' JSON logs.
func leaseLostEvents(t testing.TB, nodes []*node, victim int) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for i, nd := range nodes {
		if i == victim {
			continue
		}
		data, err := os.ReadFile(nd.log)
		require.NoError(t, err)
		for _, line := range strings.Split(string(data), "\n") {
			if !strings.Contains(line, "lease lost") {
				continue
			}
			var rec struct {
				EventID string `json:"event_id"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.EventID != "" {
				out[rec.EventID] = true
			}
		}
	}
	return out
}
