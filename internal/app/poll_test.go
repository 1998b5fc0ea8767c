package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/metrics/metricstest"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
)

// fieldApp stands in for a field-service app: GET /api/jobs?since= lists
// the jobs updated at or after since, four per page with a next token.
type fieldApp struct {
	mu   sync.Mutex
	jobs map[int]map[string]any
}

func (f *fieldApp) put(id int, status, updated string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := map[string]any{"id": id, "status": status, "updated_at": updated}
	f.jobs[id] = j
	return j
}

func (f *fieldApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	since := r.URL.Query().Get("since")
	var list []map[string]any
	for _, j := range f.jobs {
		if j["updated_at"].(string) >= since {
			list = append(list, j)
		}
	}
	slices.SortFunc(list, func(a, b map[string]any) int {
		if a["updated_at"].(string) != b["updated_at"].(string) {
			if a["updated_at"].(string) < b["updated_at"].(string) {
				return -1
			}
			return 1
		}
		return a["id"].(int) - b["id"].(int)
	})
	from, _ := strconv.Atoi(r.URL.Query().Get("page_token"))
	page := map[string]any{"jobs": list[min(from, len(list)):min(from+4, len(list))], "next": nil}
	if from+4 < len(list) {
		page["next"] = strconv.Itoa(from + 4)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(page)
}

// TestBackstopPollEndToEnd: job changes reach the CRM by webhook; the
// webhooks of some are lost, and the backstop poll finds exactly those.
// Every job version reaches the CRM once, whichever path brought it.
func TestBackstopPollEndToEnd(t *testing.T) {
	field := &fieldApp{jobs: map[int]map[string]any{}}
	fieldSrv := httptest.NewServer(field)
	t.Cleanup(fieldSrv.Close)
	crm := newDownstream(t, 0, func(map[string]any, []downstreamRequest) downstreamReply {
		return downstreamReply{Status: http.StatusOK, Body: map[string]any{"ok": true}}
	})
	srv := startServer(t, fmt.Sprintf(`version: 1
systems:
  field: { kind: http, base_url: %s/api }
  crm: { kind: http, base_url: %s }
sources:
  job_events:
    webhook: {}
    record_id: .id
    version: .updated_at
  job_backstop:
    poll:
      system: field
      every: 1s
      path: /jobs
      query: { since: $cursor }
      items: .jobs[]
      id: .id
      version: .updated_at
      cursor: .updated_at
      start: "2026-01-01T00:00:00Z"
      paginate: { next: .next, param: page_token }
      backstop_for: job_events
flows:
  job_to_crm:
    on: job_events
    steps:
      - id: stage
        do: crm.request
        with: { method: '"PATCH"', path: '"/deals/\(.id)"', body: '{stage: .status, job: .id}' }
`, fieldSrv.URL, crm.URL), nil, app.Options{PollInterval: 50 * time.Millisecond})

	// 12 jobs change; the webhooks of jobs 3, 7 and 8 are lost. A webhook
	// may also arrive after the poll found its change (a duplicate then).
	lost := map[int]bool{3: true, 7: true, 8: true}
	byWebhook := 0
	send := func(j map[string]any) {
		body, _ := json.Marshal(j)
		res := srv.post(t, "job_events", string(body), true)
		require.Contains(t, []int{http.StatusAccepted, http.StatusOK}, res.Status, res.Raw)
		if res.Status == http.StatusAccepted {
			byWebhook++
		}
	}
	for i := 1; i <= 12; i++ {
		j := field.put(i, "scheduled", fmt.Sprintf("2026-02-01T10:00:%02dZ", i/2))
		if !lost[i] {
			send(j)
		}
	}
	require.Eventually(t, func() bool { return len(crm.keys()) == 12 }, 20*time.Second, 50*time.Millisecond)

	// Later: job 5 is completed and its webhook arrives; job 9's is lost.
	j5 := field.put(5, "completed", "2026-02-01T11:00:00Z")
	field.put(9, "completed", "2026-02-01T11:00:01Z")
	send(j5)
	require.Eventually(t, func() bool { return len(crm.keys()) == 14 }, 20*time.Second, 50*time.Millisecond)

	// A webhook that arrives after the poll found its record is a duplicate.
	late := srv.post(t, "job_events", `{"id":9,"status":"completed","updated_at":"2026-02-01T11:00:01Z"}`, true)
	require.Equal(t, http.StatusOK, late.Status)
	require.True(t, late.Body.Duplicate)

	time.Sleep(1500 * time.Millisecond) // at least one more poll: nothing new
	snap := crm.snapshot()
	require.Len(t, snap, 14, "12 first versions and 2 changes, each once")
	for key, reqs := range snap {
		require.Len(t, reqs, 1, "key %s delivered once", key)
	}
	got, err := metricstest.Series(srv.Server.Registry(), "switchboard_backstop_found_total")
	require.NoError(t, err)
	require.Equal(t, float64(14-byWebhook), got[`switchboard_backstop_found_total{source="job_events"}`],
		"the poll stored exactly the versions no webhook had delivered (at least jobs 3, 7, 8 and 9's change)")
	require.LessOrEqual(t, byWebhook, 10)
}

// TestPausedSystemNotPolledAfterStart: a node's gates start unpaused, and
// a node without an executor (serve --no-executor) did not read the
// store's pauses at all, though its timed sources call systems. A system an
// operator paused is not polled from a node's first moment, with or
// without an executor, and a pause applied while an ingest-only node runs
// reaches its polls too.
func TestPausedSystemNotPolledAfterStart(t *testing.T) {
	for _, noExecutor := range []bool{false, true} {
		t.Run(fmt.Sprintf("no-executor=%v", noExecutor), func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int64
			field := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				calls.Add(1)
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"jobs": []}`))
			}))
			t.Cleanup(field.Close)
			path := filepath.Join(t.TempDir(), "sb.db")
			yamlText := fmt.Sprintf(`version: 1
store: sqlite:%s
systems:
  field: { kind: http, base_url: %s }
sources:
  jobs:
    poll:
      system: field
      every: 1s
      path: /jobs
      items: .jobs[]
      id: .id
      version: .updated_at
flows:
  noop:
    on: jobs
    steps:
      - { id: look, do: field.request, with: { method: '"GET"', path: '"/jobs"' } }
`, path, field.URL)
			// Paused before the node starts, as by `switchboard systems pause`.
			st, err := sqlite.Open(t.Context(), path)
			require.NoError(t, err)
			_, err = st.PauseSystem(t.Context(), store.PauseParams{System: "field", Reason: store.OperatorPause, Now: time.Now()})
			require.NoError(t, err)
			require.NoError(t, st.Close())
			srv := startServer(t, yamlText, nil, app.Options{NoExecutor: noExecutor, PollInterval: 20 * time.Millisecond}).Server

			require.Never(t, func() bool { return calls.Load() > 0 }, 2500*time.Millisecond, 50*time.Millisecond,
				"a paused system polled after the node started")
			if !noExecutor {
				return
			}
			_, err = srv.Store.ResumeSystem(t.Context(), "field")
			require.NoError(t, err)
			require.Eventually(t, func() bool { return calls.Load() > 0 }, 10*time.Second, 50*time.Millisecond, "polled once resumed")
			_, err = srv.Store.PauseSystem(t.Context(), store.PauseParams{System: "field", Reason: store.OperatorPause, Now: time.Now()})
			require.NoError(t, err)
			time.Sleep(2500 * time.Millisecond) // the node's next read of the pauses, and a poll in flight ending
			n := calls.Load()
			require.Never(t, func() bool { return calls.Load() > n }, 2500*time.Millisecond, 50*time.Millisecond,
				"polled after a pause applied while the node ran")
		})
	}
}
