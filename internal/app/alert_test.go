package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/delivery"
)

// TestDeadLetterAlertWithinFiveSeconds runs a whole node whose downstream
// refuses an event with 400 and checks that the fake Slack webhook receives
// the dead-letter alert, naming the run, within 5 s of the run dying.
func TestDeadLetterAlertWithinFiveSeconds(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var messages []string
	var firstAt time.Time
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var msg struct{ Text string }
		_ = json.Unmarshal(body, &msg)
		mu.Lock()
		if firstAt.IsZero() {
			firstAt = time.Now()
		}
		messages = append(messages, msg.Text)
		mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	defer slack.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid email"}`))
	}))
	defer down.Close()

	var diedMu sync.Mutex
	var diedAt time.Time
	var deadRun string
	opts := app.Options{PollInterval: 20 * time.Millisecond}
	cfg := deliverConfig + `
alerts:
  evaluate_every: 1s
  notify:
    - slack: { webhook_url: "${SLACK_URL}" }
  rules:
    - dead_letter: any
`
	rec := &deadRecorderFunc{fn: func(runID string) {
		diedMu.Lock()
		diedAt, deadRun = time.Now(), runID
		diedMu.Unlock()
	}}
	opts.Notifier = rec
	ts := startServer(t, cfg, map[string]string{"DOWNSTREAM_URL": down.URL, "E2E_SECRET": e2eSecret, "SLACK_URL": slack.URL}, opts)
	res := ts.post(t, "orders", `{"id":"a1","mode":"bad"}`, true)
	require.Equal(t, http.StatusAccepted, res.Status)

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(messages) > 0
	}, 10*time.Second, 10*time.Millisecond, "no alert reached the Slack receiver")
	mu.Lock()
	defer mu.Unlock()
	diedMu.Lock()
	defer diedMu.Unlock()
	require.NotEmpty(t, deadRun)
	require.Less(t, firstAt.Sub(diedAt), 5*time.Second, "dead letter notified within 5 s")
	require.Contains(t, messages[0], deadRun)
	require.Contains(t, messages[0], "400")
}

type deadRecorderFunc struct{ fn func(runID string) }

func (d *deadRecorderFunc) RunDead(_ context.Context, r delivery.DeadRun) { d.fn(r.RunID) }
