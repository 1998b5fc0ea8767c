package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/ingest"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// sorConfig joins two systems both ways. alpha owns the customer, beta
// mirrors it and owns its status field: a name changed in alpha is copied
// to beta, a status changed in beta is copied to alpha. Each system fires a
// webhook on every write, ours included: a loop unless echoes are stopped.
const sorConfig = `
version: 1
store: sqlite:sb.db
workers: 4
retry: { base: 10ms, cap: 1s, attempts: 3 }
loops: { suppress_echoes: %s, max_hops: 5 }
systems:
  alpha: { kind: http, base_url: "${ALPHA_URL}", timeout: 5s }
  beta: { kind: http, base_url: "${BETA_URL}", timeout: 5s }
entities:
  customer: { owner: alpha, mirrors: [beta], fields: { status: beta } }
sources:
  alpha_changed: { webhook: {}, key: .event_id, system: alpha, entity: customer, record_id: .id, record: .record }
  beta_changed: { webhook: {}, key: .event_id, system: beta, entity: customer, record_id: .id, record: .record }
flows:
  alpha_to_beta:
    on: alpha_changed
    steps:
      - id: put
        do: beta.request
        writes: customer
        record_id: .id
        fields: { name: .record.name }
        with: { method: '"PATCH"', path: '"/records/\(.id)"', body: '{name: .record.name}' }
  beta_to_alpha:
    on: beta_changed
    steps:
      - id: put
        do: alpha.request
        writes: customer
        record_id: .id
        fields: { status: .record.status }
        with: { method: '"PATCH"', path: '"/records/\(.id)"', body: '{status: .record.status}' }
alerts:
  notify:
    - slack: { webhook_url: "${SLACK_URL}" }
  rules:
    - dead_letter: any
`

// fakeSystem keeps records and fires a webhook to Switchboard on every
// change: a write through its API (ours) or a person's edit. The webhook
// goes out before the API call is answered, as some systems do, so an echo
// can arrive while our step is still waiting for its response.
type fakeSystem struct {
	name, source string

	mu      sync.Mutex // guards the fields below
	sb      string     // Switchboard's URL
	seq     int
	records map[string]map[string]any
	writes  []map[string]any // bodies of API writes, in order
	answers []ingest.Response
	// pace, when set, is called for the nth API write (from 1) before
	// its webhook (next "webhook") and again before its answer (next
	// "answer"): a test holds writes there to order them.
	pace func(n int, next string)
}

func newFakeSystem(t testing.TB, name string) (*fakeSystem, *httptest.Server) {
	f := &fakeSystem{name: name, source: name + "_changed", records: map[string]map[string]any{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := strings.CutPrefix(r.URL.Path, "/records/")
		var body map[string]any
		if !ok || r.Method != http.MethodPatch || json.NewDecoder(r.Body).Decode(&body) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.writes = append(f.writes, body)
		n, pace := len(f.writes), f.pace
		f.mu.Unlock()
		if pace == nil {
			pace = func(int, string) {}
		}
		pace(n, "webhook")
		rec := f.change(t, id, body)
		pace(n, "answer")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "record": rec})
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

// change merges fields into the record and fires the webhook.
func (f *fakeSystem) change(t testing.TB, id string, fields map[string]any) map[string]any {
	f.mu.Lock()
	rec := f.records[id]
	if rec == nil {
		rec = map[string]any{}
		f.records[id] = rec
	}
	maps.Copy(rec, fields)
	f.seq++
	// updated_at sits outside the record: it changes on every webhook.
	payload, _ := json.Marshal(map[string]any{
		"event_id": fmt.Sprintf("%s-%d", f.name, f.seq), "id": id, "record": rec,
		"updated_at": time.Now().Format(time.RFC3339Nano),
	})
	out := maps.Clone(rec)
	sb := f.sb
	f.mu.Unlock()

	resp, err := http.Post(sb+"/hooks/"+f.source, "application/json", bytes.NewReader(payload))
	if err != nil {
		t.Errorf("%s webhook: %v", f.name, err)
		return out
	}
	defer resp.Body.Close()
	var ans ingest.Response
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(body, &ans) != nil {
		t.Errorf("%s webhook: status %d: %s", f.name, resp.StatusCode, body)
	}
	f.mu.Lock()
	f.answers = append(f.answers, ans)
	f.mu.Unlock()
	return out
}

func (f *fakeSystem) writeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.writes)
}

func (f *fakeSystem) outcomes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.answers {
		out = append(out, a.Outcome)
	}
	return out
}

type sorBundle struct {
	ts          *testServer
	alpha, beta *fakeSystem
	alerts      *alertInbox
}

// alertInbox is a fake Slack webhook that keeps the alerts' texts.
type alertInbox struct {
	mu    sync.Mutex // guards texts
	texts []string
}

func (a *alertInbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var msg struct{ Text string }
	_ = json.NewDecoder(r.Body).Decode(&msg)
	a.mu.Lock()
	a.texts = append(a.texts, msg.Text)
	a.mu.Unlock()
	_, _ = w.Write([]byte("ok"))
}

func (a *alertInbox) all() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.texts...)
}

func startSOR(t *testing.T, suppress bool) sorBundle {
	t.Helper()
	alpha, alphaSrv := newFakeSystem(t, "alpha")
	beta, betaSrv := newFakeSystem(t, "beta")
	inbox := &alertInbox{}
	slack := httptest.NewServer(inbox)
	t.Cleanup(slack.Close)
	ts := startServer(t, fmt.Sprintf(sorConfig, fmt.Sprint(suppress)),
		map[string]string{"ALPHA_URL": alphaSrv.URL, "BETA_URL": betaSrv.URL, "SLACK_URL": slack.URL},
		app.Options{PollInterval: 20 * time.Millisecond})
	for _, f := range []*fakeSystem{alpha, beta} {
		f.mu.Lock()
		f.sb = ts.URL
		f.mu.Unlock()
	}
	return sorBundle{ts: ts, alpha: alpha, beta: beta, alerts: inbox}
}

// settled waits until every run is finished and the systems have seen the
// expected writes, then checks that nothing more happens.
func (b sorBundle) settled(t *testing.T, alphaWrites, betaWrites int) {
	t.Helper()
	done := func() bool {
		runs, err := b.ts.Server.Store.ListRuns(t.Context(), store.ListRunsParams{Limit: 1000})
		if err != nil {
			return false
		}
		for _, r := range runs {
			if r.State != store.RunSucceeded && r.State != store.RunDead {
				return false
			}
		}
		return b.alpha.writeCount() >= alphaWrites && b.beta.writeCount() >= betaWrites
	}
	require.Eventually(t, done, 20*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // time enough for a loop to show itself
	require.True(t, done())
	require.Equal(t, alphaWrites, b.alpha.writeCount(), "writes to alpha")
	require.Equal(t, betaWrites, b.beta.writeCount(), "writes to beta")
}

// TestLoopStoppedByHopLimit shows the loop two bidirectionally joined
// systems make when echoes are not suppressed: every write comes back as a
// webhook and is written to the other side again, until the chain reaches
// max_hops and the run dies with a dead letter and an alert naming it.
func TestLoopStoppedByHopLimit(t *testing.T) {
	t.Parallel()
	b := startSOR(t, false)
	b.alpha.change(t, "c1", map[string]any{"name": "Ann", "status": "new"})

	// Writes 1, 3, 5 of the chain go to beta, 2 and 4 to alpha; the 6th is
	// refused.
	b.settled(t, 2, 3)
	dead, err := b.ts.Server.Store.ListRuns(t.Context(), store.ListRunsParams{State: store.RunDead, Limit: 10})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Equal(t, "beta_to_alpha", dead[0].Flow)
	chain := "alpha_changed → beta customer c1 → beta_changed → alpha customer c1 → alpha_changed → beta customer c1 → beta_changed → " +
		"alpha customer c1 → alpha_changed → beta customer c1 → beta_changed → alpha"
	require.Contains(t, dead[0].LastError, "hop limit: writing customer to alpha would be write 6 of one causal chain (max_hops 5)")
	require.Contains(t, dead[0].LastError, chain)

	l, err := b.ts.Server.Store.GetLineage(t.Context(), dead[0].EventID)
	require.NoError(t, err)
	require.Equal(t, 5, l.Hop)
	require.Equal(t, store.EventProcessed, l.Outcome, "not suppressed, only counted")

	require.Eventually(t, func() bool { return len(b.alerts.all()) > 0 }, 10*time.Second, 10*time.Millisecond, "no alert")
	require.Contains(t, b.alerts.all()[0], "hop limit")
	require.Contains(t, b.alerts.all()[0], "beta_to_alpha")
}

// TestLoopStoppedByHopLimitWhenAnsweredLate is the same loop with beta
// answering our first write only after the chain has come back to it:
// beta's second write starts while the first is still in flight, and its
// webhook comes after the first was answered. The first write's
// fingerprint, completed at its answer, is still the older write: the
// second write's echo continues the chain at hop 3, not as a repeated
// echo of the first at hop 1 (which let the loop run two writes longer).
func TestLoopStoppedByHopLimitWhenAnsweredLate(t *testing.T) {
	t.Parallel()
	b := startSOR(t, false)
	second := make(chan struct{})
	firstDone := func() bool {
		runs, err := b.ts.Server.Store.ListRuns(t.Context(), store.ListRunsParams{Flow: "alpha_to_beta", State: store.RunSucceeded, Limit: 10})
		return err == nil && len(runs) > 0
	}
	b.beta.mu.Lock()
	b.beta.pace = func(n int, next string) {
		switch {
		case n == 1 && next == "answer":
			select { // the chain comes back to beta meanwhile
			case <-second:
			case <-time.After(10 * time.Second):
				t.Errorf("beta's second write did not come while the first was in flight")
			}
		case n == 2 && next == "webhook":
			close(second)
			for deadline := time.Now().Add(10 * time.Second); !firstDone(); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Errorf("the run of beta's first write did not finish")
					return
				}
			}
		}
	}
	b.beta.mu.Unlock()
	b.alpha.change(t, "c1", map[string]any{"name": "Ann", "status": "new"})

	b.settled(t, 2, 3)
	evs, err := b.ts.Server.Store.ListEvents(t.Context(), store.ListEventsParams{Source: "beta_changed", Limit: 10})
	require.NoError(t, err)
	var hops []int
	for i := len(evs) - 1; i >= 0; i-- { // oldest first
		l, err := b.ts.Server.Store.GetLineage(t.Context(), evs[i].ID)
		require.NoError(t, err)
		hops = append(hops, l.Hop)
	}
	require.Equal(t, []int{1, 3, 5}, hops, "each of beta's webhooks answers the latest write")
	dead, err := b.ts.Server.Store.ListRuns(t.Context(), store.ListRunsParams{State: store.RunDead, Limit: 10})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Contains(t, dead[0].LastError, "would be write 6 of one causal chain (max_hops 5)")
}

// TestEchoSuppression joins the same systems with echo suppression on:
// each change a person makes propagates exactly once, its echo is recorded
// with outcome echo and starts no runs, and the exchange stops.
func TestEchoSuppression(t *testing.T) {
	t.Parallel()
	b := startSOR(t, true)

	// A person renames the customer in alpha: beta gets the name once, and
	// beta's webhook about our write is an echo.
	b.alpha.change(t, "c1", map[string]any{"name": "Ann", "status": "new"})
	b.settled(t, 0, 1)
	require.Equal(t, []string{"", "echo"}, append(b.alpha.outcomes(), b.beta.outcomes()...))

	// A person changes the status in beta within the echo window: a real
	// change, although the name we wrote is unchanged. alpha gets it once.
	b.beta.change(t, "c1", map[string]any{"status": "scheduled"})
	b.settled(t, 1, 1)
	require.Equal(t, []string{"", "echo"}, b.alpha.outcomes())
	require.Equal(t, []string{"echo", ""}, b.beta.outcomes())

	// A person renames again in alpha, then sets the status in beta back
	// to what alpha already has: both propagate.
	b.alpha.change(t, "c1", map[string]any{"name": "Ann Lee"})
	b.settled(t, 1, 2)
	b.beta.change(t, "c1", map[string]any{"status": "done"})
	b.settled(t, 2, 2)
	require.Equal(t, map[string]any{"name": "Ann Lee", "status": "done"}, b.alpha.records["c1"])
	require.Equal(t, map[string]any{"name": "Ann Lee", "status": "done"}, b.beta.records["c1"])

	dead, err := b.ts.Server.Store.ListRuns(t.Context(), store.ListRunsParams{State: store.RunDead, Limit: 10})
	require.NoError(t, err)
	require.Empty(t, dead)
	// Every echo is an event with no runs, counted as such. Each continues
	// the chain of the write it answers; each person's change here comes
	// within the window of our last write of the record, so it is counted
	// as a hop of that write's chain (it could be a second webhook about
	// it), and the chain grows by one write per change.
	echoes := 0
	hops := map[string][]int{}
	for _, f := range []*fakeSystem{b.alpha, b.beta} {
		for i, o := range f.outcomes() {
			if o != "echo" {
				continue
			}
			echoes++
			evs, err := b.ts.Server.Store.ListEvents(t.Context(), store.ListEventsParams{Source: f.source, Limit: 100})
			require.NoError(t, err)
			ev := evs[len(evs)-1-i] // newest first
			l, err := b.ts.Server.Store.GetLineage(t.Context(), ev.ID)
			require.NoError(t, err)
			require.Equal(t, store.EventEcho, l.Outcome)
			hops[f.name] = append(hops[f.name], l.Hop)
			runs, err := b.ts.Server.Store.ListRuns(t.Context(), store.ListRunsParams{EventID: ev.ID})
			require.NoError(t, err)
			require.Empty(t, runs)
		}
	}
	require.Equal(t, 4, echoes)
	require.Equal(t, map[string][]int{"beta": {1, 3}, "alpha": {2, 4}}, hops, "an echo has the hop of the write it answers")
	m := b.ts.scrape(t).with("switchboard_events_received_total")
	require.Equal(t, 2.0, m[`switchboard_events_received_total{outcome="echo",source="alpha_changed"}`], m)
	require.Equal(t, 2.0, m[`switchboard_events_received_total{outcome="echo",source="beta_changed"}`], m)
	require.Equal(t, 2.0, m[`switchboard_events_received_total{outcome="accepted",source="alpha_changed"}`], m)
}

// conflictConfig has the scheduler, a mirror of the customer, send changes
// that a flow would write back over the CRM, the owner.
const conflictConfig = `
version: 1
store: sqlite:sb.db
systems:
  crm: { kind: http, base_url: "${CRM_URL}" }
  sched: { kind: http, base_url: "${CRM_URL}" }
entities:
  customer: { owner: crm, mirrors: [sched], on_conflict: %s }
sources:
  sched_changed: { webhook: {}, key: .event_id, system: sched, entity: customer, record_id: .id }
flows:
  sched_to_crm:
    on: sched_changed
    steps:
      - { id: put, do: crm.request, writes: customer, with: { method: '"PUT"', path: '"/customers/\(.id)"', body: '{name: .name}' } }
  propose:
    steps:
      - { id: task, do: crm.request, with: { path: '"/tasks"', body: '{title: "Scheduler changed customer \(.id) to \(.name)"}' } }
`

// TestConflicts checks both conflict policies: a mirror's change is never
// written over the owner; it is dropped (the event's outcome is conflict)
// or handed to the flow that proposes it to the owner.
func TestConflicts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		policy  string
		outcome store.EventOutcome
		flows   []string
		paths   []string
	}{
		{policy: "drop", outcome: store.EventConflict},
		{policy: "propose", outcome: store.EventProcessed, flows: []string{"propose"}, paths: []string{"/tasks"}},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var paths []string
			crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				paths = append(paths, r.URL.Path)
				mu.Unlock()
				_, _ = w.Write([]byte(`{"ok":true}`))
			}))
			t.Cleanup(crm.Close)
			cfg := fmt.Sprintf(conflictConfig, tt.policy)
			if tt.policy == "drop" { // a flow nothing starts is a mistake
				cfg, _, _ = strings.Cut(cfg, "  propose:")
			}
			ts := startServer(t, cfg, map[string]string{"CRM_URL": crm.URL},
				app.Options{PollInterval: 20 * time.Millisecond})
			res := ts.post(t, "sched_changed", `{"event_id":"e1","id":"c1","name":"Bob"}`, true)
			require.Equal(t, http.StatusAccepted, res.Status, res.Raw)
			require.Equal(t, string(tt.outcome), res.Body.Outcome)

			runs, err := ts.Server.Store.ListRuns(t.Context(), store.ListRunsParams{EventID: res.Body.EventID})
			require.NoError(t, err)
			var flows []string
			for _, r := range runs {
				flows = append(flows, r.Flow)
			}
			require.Equal(t, tt.flows, flows)
			l, err := ts.Server.Store.GetLineage(t.Context(), res.Body.EventID)
			require.NoError(t, err)
			require.Equal(t, tt.outcome, l.Outcome)
			require.Eventually(t, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(paths) == len(tt.paths)
			}, 10*time.Second, 10*time.Millisecond)
			time.Sleep(100 * time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, tt.paths, paths, "nothing is written over the owner")
		})
	}
}
