package alert

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
	"github.com/switchboard-dev/switchboard/internal/logtest"
	"github.com/switchboard-dev/switchboard/internal/secret"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// Secrets the test targets carry. No log line may contain them.
const (
	slackSecretPath = "/services/T0001/B0001/slackS3cretPath"
	hookSecretQuery = "token=hookS3cretQuery"
	hookSecretAuth  = "Bearer hookS3cretHeader"
)

// t0 is the fake clock's start.
var t0 = time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeStats is a Stats whose answers the test sets.
type fakeStats struct {
	mu       sync.Mutex // guards the fields below
	queues   []store.FlowStats
	last     map[string]time.Time
	attempts []store.AttemptCount
	since    []time.Time // AttemptStats arguments
	polls    map[string]store.PollState
	err      error
}

func (f *fakeStats) ListPollStates(context.Context) ([]store.PollState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.PollState
	for _, p := range f.polls {
		out = append(out, p)
	}
	return out, f.err
}

// setPoll replaces the state of one timed source.
func (f *fakeStats) setPoll(p store.PollState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.polls == nil {
		f.polls = map[string]store.PollState{}
	}
	f.polls[p.Source] = p
}

func (f *fakeStats) QueueStats(context.Context) ([]store.FlowStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return slices.Clone(f.queues), nil
}

func (f *fakeStats) LastEventAt(_ context.Context, source string) (time.Time, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	at, ok := f.last[source]
	return at, ok, f.err
}

func (f *fakeStats) AttemptStats(_ context.Context, since time.Time) ([]store.AttemptCount, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.since = append(f.since, since)
	return slices.Clone(f.attempts), f.err
}

// setQueue replaces the queue statistics of one flow (waiting < 0 removes
// the flow, as QueueStats leaves out flows with nothing queued).
func (f *fakeStats) setQueue(q store.FlowStats) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queues = slices.DeleteFunc(f.queues, func(x store.FlowStats) bool { return x.Flow == q.Flow })
	if q.Waiting >= 0 {
		f.queues = append(f.queues, q)
	}
}

func (f *fakeStats) setLast(source string, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last == nil {
		f.last = map[string]time.Time{}
	}
	f.last[source] = at
}

func (f *fakeStats) setAttempts(system string, succeeded, failed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts = []store.AttemptCount{
		{System: system, Outcome: store.AttemptSucceeded, Count: succeeded},
		{System: system, Outcome: store.AttemptRetry, Count: failed},
	}
}

// receiver is a fake notification endpoint (Slack or webhook).
type receiver struct {
	srv *httptest.Server
	// arrived gets one value per accepted message.
	arrived chan map[string]any

	mu       sync.Mutex // guards the fields below
	script   []int      // statuses to answer, in order, before 200s
	block    chan struct{}
	hits     int
	got      []map[string]any
	requests []*http.Request
}

// newReceiver starts a receiver answering script's statuses first, then
// 200. With block non-nil every request waits until it is closed.
func newReceiver(tb testing.TB, script []int, block chan struct{}) *receiver {
	tb.Helper()
	r := &receiver{arrived: make(chan map[string]any, 1000), script: script, block: block}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if r.block != nil {
			select {
			case <-r.block:
			case <-req.Context().Done():
				return
			}
		}
		r.mu.Lock()
		r.hits++
		r.requests = append(r.requests, req)
		status := http.StatusOK
		if len(r.script) > 0 {
			status, r.script = r.script[0], r.script[1:]
		}
		var msg map[string]any
		if status == http.StatusOK {
			if err := json.Unmarshal(body, &msg); err != nil {
				status = http.StatusBadRequest
			} else {
				r.got = append(r.got, msg)
			}
		}
		r.mu.Unlock()
		w.WriteHeader(status)
		if msg != nil {
			r.arrived <- msg
		}
	}))
	tb.Cleanup(r.srv.Close)
	return r
}

// take returns the messages received since the last take.
func (r *receiver) take() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

func (r *receiver) hitCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits
}

// testBundle is a Manager on a fake clock and fake statistics, sending to
// a Slack and a webhook receiver.
type testBundle struct {
	m     *Manager
	clock *fakeClock
	stats *fakeStats
	slack *receiver
	hook  *receiver
	logs  *logtest.Buffer
}

type bundleOpts struct {
	rules      []rule.Rule
	hookScript []int
	hookBlock  chan struct{}
	queueSize  int
	maxTries   int
	retryBase  time.Duration    // default 5 ms
	now        func() time.Time // default: the fake clock
	// targets replace the Slack and webhook receivers' targets.
	targets []rule.Target
}

func setup(tb testing.TB, o bundleOpts) *testBundle {
	tb.Helper()
	b := &testBundle{
		clock: &fakeClock{now: t0},
		stats: &fakeStats{},
		slack: newReceiver(tb, nil, nil),
		hook:  newReceiver(tb, o.hookScript, o.hookBlock),
		logs:  &logtest.Buffer{},
	}
	set := &rule.Set{
		ConsoleURL:    "https://switchboard.example.com",
		EvaluateEvery: 15 * time.Second,
		RemindEvery:   time.Hour,
		Rules:         o.rules,
		Targets: []rule.Target{
			{Kind: rule.Slack, URL: secret.Value(b.slack.srv.URL + slackSecretPath)},
			{Kind: rule.Webhook, URL: secret.Value(b.hook.srv.URL + "/hook?" + hookSecretQuery),
				Headers: map[string]secret.Value{"Authorization": hookSecretAuth}},
		},
	}
	if o.targets != nil {
		set.Targets = o.targets
	}
	now := o.now
	if now == nil {
		now = b.clock.Now
	}
	m, err := New(Config{
		Alerts:    set,
		Stats:     b.stats,
		Logger:    slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		NowFunc:   now,
		QueueSize: o.queueSize,
		RetryBase: cmp.Or(o.retryBase, 5*time.Millisecond),
		MaxTries:  o.maxTries,
	})
	require.NoError(tb, err)
	b.m = m
	return b
}

// evaluate runs one evaluation and sends what it queued before returning.
func (b *testBundle) evaluate(tb testing.TB) {
	tb.Helper()
	require.NoError(tb, b.m.Evaluate(tb.Context()))
	b.flush(tb)
}

// flush sends every queued notification synchronously, so a test can
// assert what was (and was not) sent without sleeping.
func (b *testBundle) flush(tb testing.TB) {
	tb.Helper()
	for _, s := range b.m.senders {
		for drained := false; !drained; {
			select {
			case n := <-s.queue:
				b.m.send(context.Background(), s, n)
			default:
				drained = true
			}
		}
	}
}

// deliver runs Deliver (and Run, with run) until the test ends.
func (b *testBundle) deliver(tb testing.TB, run bool) context.CancelFunc {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = b.m.Deliver(ctx) })
	if run {
		wg.Go(func() { _ = b.m.Run(ctx) })
	}
	stop := func() {
		cancel()
		wg.Wait()
	}
	tb.Cleanup(stop)
	return stop
}

// one requires exactly one message at each receiver and returns the
// webhook's.
func (b *testBundle) one(tb testing.TB) map[string]any {
	tb.Helper()
	slack, hook := b.slack.take(), b.hook.take()
	require.Len(tb, slack, 1, "slack messages")
	require.Len(tb, hook, 1, "webhook messages")
	return hook[0]
}

// none requires that nothing was sent.
func (b *testBundle) none(tb testing.TB) {
	tb.Helper()
	require.Empty(tb, b.slack.take(), "slack messages")
	require.Empty(tb, b.hook.take(), "webhook messages")
}
