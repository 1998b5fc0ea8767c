package alert

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
)

func TestSendRetriesUntilTheReceiverAccepts(t *testing.T) {
	t.Parallel()

	b := setup(t, bundleOpts{
		rules:      []rule.Rule{{Kind: rule.DeadLetter}},
		hookScript: []int{http.StatusInternalServerError, http.StatusInternalServerError},
	})
	b.deliver(t, false)
	b.m.RunDead(t.Context(), deadRun("f", "run_1"))
	select {
	case msg := <-b.hook.arrived:
		require.Equal(t, "run_1", msg["run_id"])
	case <-time.After(5 * time.Second):
		t.Fatal("the message never arrived")
	}
	require.Equal(t, 3, b.hook.hitCount(), "two 500s, then the 200")
	require.Equal(t, 2, strings.Count(b.logs.String(), "alert notification failed, retrying"))
	require.Contains(t, b.logs.String(), `"status":500`)
}

// TestRetryInterruptedByShutdownIsFlushed: a notification waiting to be
// retried when the node stops is sent in the shutdown flush, not dropped
// without a trace (alert state lives in memory: it would not be announced
// again after the restart).
func TestRetryInterruptedByShutdownIsFlushed(t *testing.T) {
	t.Parallel()

	b := setup(t, bundleOpts{
		rules:      []rule.Rule{{Kind: rule.DeadLetter}},
		hookScript: []int{http.StatusServiceUnavailable},
		retryBase:  time.Minute,
	})
	stop := b.deliver(t, false)
	b.m.RunDead(t.Context(), deadRun("f", "run_1"))
	require.Eventually(t, func() bool { return strings.Contains(b.logs.String(), "alert notification failed, retrying") },
		5*time.Second, time.Millisecond, "the first try's 503")
	stop() // waiting a minute to retry
	select {
	case msg := <-b.hook.arrived:
		require.Equal(t, "run_1", msg["run_id"])
	default:
		t.Fatalf("the notification was dropped at shutdown; logs: %s", b.logs)
	}
	require.NotContains(t, b.logs.String(), "not sent at shutdown")
}

func TestSendGivesUpOnAPermanentStatus(t *testing.T) {
	t.Parallel()

	b := setup(t, bundleOpts{
		rules:      []rule.Rule{{Kind: rule.DeadLetter}},
		hookScript: []int{http.StatusNotFound},
	})
	b.m.RunDead(t.Context(), deadRun("f", "run_1"))
	b.flush(t)
	require.Empty(t, b.hook.take())
	require.Equal(t, 1, b.hook.hitCount(), "404 is not retried")
	require.Contains(t, b.logs.String(), `"msg":"alert notification failed"`)
}

func TestSendGivesUpAfterMaxTries(t *testing.T) {
	t.Parallel()

	b := setup(t, bundleOpts{
		rules:      []rule.Rule{{Kind: rule.DeadLetter}},
		hookScript: []int{503, 503, 503, 503, 503},
		maxTries:   3,
	})
	b.m.RunDead(t.Context(), deadRun("f", "run_1"))
	b.flush(t)
	require.Equal(t, 3, b.hook.hitCount())
	require.Empty(t, b.hook.take())
}

func TestRunDeadNeverBlocks(t *testing.T) {
	t.Parallel()

	block := make(chan struct{})
	b := setup(t, bundleOpts{rules: []rule.Rule{{Kind: rule.DeadLetter}}, hookBlock: block, queueSize: 4})
	t.Cleanup(func() { close(block) }) // runs after Deliver has stopped
	stop := b.deliver(t, false)

	var slowest time.Duration
	for i := range 200 {
		start := time.Now()
		b.m.RunDead(t.Context(), deadRun(fmt.Sprint("flow_", i), fmt.Sprint("run_", i)))
		slowest = max(slowest, time.Since(start))
	}
	require.Less(t, slowest, 100*time.Millisecond, "RunDead waited for the hanging receiver")
	require.Positive(t, b.m.Dropped(), "the hanging target's queue overflowed")
	require.Contains(t, b.logs.String(), "alert notification dropped: queue full")

	// The Slack target does not wait behind the hanging webhook.
	require.Eventually(t, func() bool { return b.slack.hitCount() >= 4 }, 5*time.Second, 10*time.Millisecond)
	stop()
}

func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()

	b := setup(t, bundleOpts{
		rules:    []rule.Rule{{Kind: rule.DeadLetter}},
		maxTries: 2,
	})
	// Slack answers 500; the webhook's server is gone (a transport error,
	// whose text names the request URL).
	b.slack.mu.Lock()
	b.slack.script = []int{500, 500}
	b.slack.mu.Unlock()
	b.hook.srv.Close()

	b.m.RunDead(t.Context(), deadRun("f", "run_1"))
	b.flush(t)
	logs := b.logs.String()
	require.Contains(t, logs, `"notifier":"slack"`)
	require.Contains(t, logs, `"status":500`)
	require.Contains(t, logs, `"notifier":"webhook"`)
	require.Contains(t, logs, `"status":0`)
	for _, s := range []string{slackSecretPath, "slackS3cretPath", hookSecretQuery, "hookS3cretQuery", hookSecretAuth, "hookS3cretHeader"} {
		require.NotContains(t, logs, s)
	}
	require.NotContains(t, fmt.Sprintf("%v %+v", b.m.set, b.m.set), "S3cret", "a printed rule set redacts its targets")
}

func TestMessageFormats(t *testing.T) {
	t.Parallel()

	b := setup(t, bundleOpts{rules: []rule.Rule{{Kind: rule.DeadLetter}}})
	b.m.RunDead(t.Context(), deadRun("lead_capture", "run_1"))
	b.flush(t)

	hook := b.hook.take()[0]
	for _, k := range []string{"status", "rule", "subject", "summary", "details", "console_url", "started_at", "run_id", "event_id"} {
		require.Contains(t, hook, k)
	}
	b.hook.mu.Lock()
	req := b.hook.requests[0]
	b.hook.mu.Unlock()
	require.Equal(t, hookSecretAuth, req.Header.Get("Authorization"))
	require.Equal(t, "application/json", req.Header.Get("Content-Type"))
	require.Equal(t, "/hook", req.URL.Path)
	require.Equal(t, hookSecretQuery, req.URL.RawQuery)

	slack := b.slack.take()[0]
	require.Equal(t, "[FIRING] dead_letter · lead_capture: run run_1 of flow lead_capture is dead after 8 attempts at step contact (system crm): HTTP 422: email is invalid &lt;run_1&gt;", slack["text"])
	blocks, ok := slack["blocks"].([]any)
	require.True(t, ok, "blocks is a list")
	var all strings.Builder
	for _, bl := range blocks {
		fmt.Fprint(&all, bl)
	}
	require.Contains(t, all.String(), "email is invalid &lt;run_1&gt;", "mrkdwn is escaped")
	require.Contains(t, all.String(), "<https://switchboard.example.com/console/runs/run_1|Open in console>")
	require.Contains(t, all.String(), "*Event*\nev_run_1")
}

func TestFormat(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		got  string
		want string
	}{
		{name: "small int", got: fmtInt(12), want: "12"},
		{name: "thousands", got: fmtInt(1532), want: "1,532"},
		{name: "millions", got: fmtInt(-1234567), want: "-1,234,567"},
		{name: "minutes", got: fmtDuration(5 * time.Minute), want: "5m"},
		{name: "hours", got: fmtDuration(2 * time.Hour), want: "2h"},
		{name: "hours and minutes", got: fmtDuration(134*time.Minute + 7*time.Second), want: "2h14m"},
		{name: "minutes and seconds", got: fmtDuration(192500 * time.Millisecond), want: "3m13s"},
		{name: "sub-second", got: fmtDuration(850 * time.Millisecond), want: "850ms"},
		{name: "percent", got: fmtPercent(1.0 / 3), want: "33.3%"},
		{name: "whole percent", got: fmtPercent(0.2), want: "20%"},
		{name: "truncate on a rune", got: truncate("héllo", 2), want: "h…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.got)
		})
	}
}
