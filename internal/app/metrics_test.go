package app_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// TestMetricsScenario runs a scripted scenario through a whole server on
// SQLite and reads GET /metrics as Prometheus would: every webhook answer
// counts one outcome, every run transition and attempt is counted once,
// histograms hold one sample per finished run and per call, and the
// sampled gauges read the drained queue as 0 and the dead run as 1.
func TestMetricsScenario(t *testing.T) {
	t.Parallel()

	down := newDownstream(t, 0, func(body map[string]any, earlier []downstreamRequest) downstreamReply {
		switch body["mode"] {
		case "bad":
			return downstreamReply{Status: http.StatusBadRequest, Body: map[string]any{"error": "no"}}
		case "flaky":
			if len(earlier) == 0 {
				return downstreamReply{Status: http.StatusServiceUnavailable}
			}
		}
		return downstreamReply{Status: http.StatusOK}
	})
	ts := startServer(t, deliverConfig, map[string]string{"DOWNSTREAM_URL": down.URL, "E2E_SECRET": e2eSecret},
		app.Options{PollInterval: 20 * time.Millisecond, MetricsEvery: 20 * time.Millisecond})

	// Five accepted events: three delivered at once, one dead on a 400,
	// one retried after a 503 and then delivered.
	for _, ev := range []struct{ id, mode string }{
		{"order-1", "ok"}, {"order-2", "ok"}, {"order-3", "ok"}, {"order-4", "bad"}, {"order-5", "flaky"},
	} {
		res := ts.post(t, "orders", fmt.Sprintf(`{"id":%q,"mode":%q}`, ev.id, ev.mode), true)
		require.Equal(t, http.StatusAccepted, res.Status, res.Raw)
	}
	dup := ts.post(t, "orders", `{"id":"order-1","mode":"ok"}`, true)
	require.Equal(t, http.StatusOK, dup.Status, dup.Raw)
	forged := ts.post(t, "orders", `{"id":"order-forged","mode":"ok"}`, false)
	require.Equal(t, http.StatusUnauthorized, forged.Status, forged.Raw)
	// Correctly signed, but not JSON: the signature is checked first.
	require.Equal(t, http.StatusBadRequest, ts.postRaw(t, "orders", "application/json", `{"id":`, true))
	require.Equal(t, http.StatusNotFound, ts.postRaw(t, "no-such-source", "application/json", `{"id":"x"}`, true))
	require.Equal(t, http.StatusUnsupportedMediaType, ts.postRaw(t, "orders", "text/plain", `{"id":"order-text"}`, true))

	// Wait until the store says every run is done and the sampler has seen
	// it; counters are updated after each commit, so read them after.
	require.Eventually(t, func() bool {
		runs, err := ts.Server.Store.ListRuns(t.Context(), store.ListRunsParams{Limit: 100})
		if err != nil || len(runs) != 5 {
			return false
		}
		for _, r := range runs {
			if r.State != store.RunSucceeded && r.State != store.RunDead {
				return false
			}
		}
		m, err := ts.tryScrape(t)
		// The sample must postdate the last run's end: the retried run
		// may still be waiting in an earlier one.
		return err == nil && m[`switchboard_dead_runs{flow="deliver"}`] == 1 && m[`switchboard_queue_depth{flow="deliver"}`] == 0 &&
			m[`switchboard_runs_total{flow="deliver",state="succeeded"}`]+m[`switchboard_runs_total{flow="deliver",state="dead"}`] == 5
	}, 20*time.Second, 20*time.Millisecond, "runs did not finish")

	m := ts.scrape(t)
	require.Equal(t, map[string]float64{
		`switchboard_events_received_total{outcome="accepted",source="orders"}`:              5,
		`switchboard_events_received_total{outcome="duplicate",source="orders"}`:             1,
		`switchboard_events_received_total{outcome="rejected_signature",source="orders"}`:    1,
		`switchboard_events_received_total{outcome="rejected_body",source="orders"}`:         1,
		`switchboard_events_received_total{outcome="rejected_content_type",source="orders"}`: 1,
		`switchboard_events_received_total{outcome="unknown_source",source="unknown"}`:       1,
	}, m.with("switchboard_events_received_total"))
	require.Equal(t, map[string]float64{
		`switchboard_runs_total{flow="deliver",state="created"}`:   5,
		`switchboard_runs_total{flow="deliver",state="retrying"}`:  1,
		`switchboard_runs_total{flow="deliver",state="succeeded"}`: 4,
		`switchboard_runs_total{flow="deliver",state="dead"}`:      1,
	}, m.with("switchboard_runs_total"))
	require.Equal(t, map[string]float64{
		`switchboard_step_attempts_total{flow="deliver",outcome="succeeded",step="post",system="downstream"}`: 4,
		`switchboard_step_attempts_total{flow="deliver",outcome="retry",step="post",system="downstream"}`:     1,
		`switchboard_step_attempts_total{flow="deliver",outcome="dead",step="post",system="downstream"}`:      1,
	}, m.with("switchboard_step_attempts_total"))

	// One lag sample per run done, one call duration per attempt.
	require.InDelta(t, 5, m[`switchboard_lag_seconds_count{flow="deliver"}`], 0)
	require.InDelta(t, 5, m[`switchboard_lag_seconds_bucket{flow="deliver",le="+Inf"}`], 0)
	require.Positive(t, m[`switchboard_lag_seconds_sum{flow="deliver"}`])
	require.InDelta(t, 6, m[`switchboard_step_duration_seconds_count{system="downstream"}`], 0)
	// HMAC signs no timestamp: no delivery delay to observe.
	require.Empty(t, m.with("switchboard_delivery_delay_seconds_count"))

	require.Equal(t, map[string]float64{
		`switchboard_queue_depth{flow="deliver"}`:            0,
		`switchboard_oldest_pending_seconds{flow="deliver"}`: 0,
		`switchboard_dead_runs{flow="deliver"}`:              1,
		`switchboard_commit_queue{queue="engine"}`:           0,
		`switchboard_commit_queue{queue="finisher"}`:         0,
	}, m.with("switchboard_queue_depth", "switchboard_oldest_pending_seconds", "switchboard_dead_runs", "switchboard_commit_queue"))

	// The runtime collectors are on the same registry, and the registry
	// is the server's own.
	require.Contains(t, m, "go_goroutines")
	families, err := ts.Server.Registry().Gather()
	require.NoError(t, err)
	require.NotEmpty(t, families)
}

// TestMetricsQueueGaugesWhileWaiting checks the sampled gauges of a queue
// that does not drain: an ingest-only node stores runs that nobody executes.
func TestMetricsQueueGaugesWhileWaiting(t *testing.T) {
	t.Parallel()
	ts := startServer(t, deliverConfig, map[string]string{"DOWNSTREAM_URL": "http://127.0.0.1:9", "E2E_SECRET": e2eSecret},
		app.Options{NoExecutor: true, MetricsEvery: 20 * time.Millisecond})
	for i := range 3 {
		res := ts.post(t, "orders", fmt.Sprintf(`{"id":"order-%d","mode":"ok"}`, i), true)
		require.Equal(t, http.StatusAccepted, res.Status, res.Raw)
	}
	require.Eventually(t, func() bool {
		m, err := ts.tryScrape(t)
		return err == nil && m[`switchboard_queue_depth{flow="deliver"}`] == 3 && m[`switchboard_oldest_pending_seconds{flow="deliver"}`] > 0
	}, 20*time.Second, 20*time.Millisecond, "the sampler did not report the waiting runs")
	m := ts.scrape(t)
	require.InDelta(t, 0, m[`switchboard_dead_runs{flow="deliver"}`], 0)
	require.Equal(t, map[string]float64{`switchboard_runs_total{flow="deliver",state="created"}`: 3}, m.with("switchboard_runs_total"))
}

// postRaw posts body to source with contentType, signed correctly or with
// the wrong secret, and returns the status.
func (s *testServer) postRaw(t testing.TB, source, contentType, body string, sign bool) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+"/hooks/"+source, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	sig := signer
	if !sign {
		sig.Secret = []byte("not-the-secret")
	}
	req.Header.Set(sig.Header, sig.Sign([]byte(body)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	return resp.StatusCode
}

// scraped is a /metrics page: value by series, written as the text format
// writes it (name{label="value",...}, labels in name order).
type scraped map[string]float64

// with returns the series of the named metrics.
func (m scraped) with(names ...string) map[string]float64 {
	out := map[string]float64{}
	for series, v := range m {
		name, _, _ := strings.Cut(series, "{")
		for _, n := range names {
			if name == n {
				out[series] = v
			}
		}
	}
	return out
}

// scrape reads GET /metrics over HTTP in the Prometheus text format.
func (s *testServer) scrape(t testing.TB) scraped {
	t.Helper()
	m, err := s.tryScrape(t)
	require.NoError(t, err)
	return m
}

// tryScrape is scrape for a require.Eventually condition, which must not
// fail the test from its goroutine.
func (s *testServer) tryScrape(t testing.TB) (scraped, error) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/plain") {
		return nil, fmt.Errorf("GET /metrics: status %d, content type %q", resp.StatusCode, ct)
	}
	out := scraped{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			return nil, fmt.Errorf("line %q: no value", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}
