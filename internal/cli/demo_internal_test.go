package cli

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/signature"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// On a busy machine a run can be delivered before its webhook's answer
// reaches the demo: the outcome is still printed with its lead, after the
// RECEIVED line, and still counts towards settling.
func TestDemoPrinterReportBeforeAnswer(t *testing.T) {
	t.Parallel()
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"event_id":"evt_1"}`))
	}))
	defer hooks.Close()
	var out bytes.Buffer
	p := &demoPrinter{w: &out, start: time.Now(), settled: make(chan struct{}), want: 1}

	p.report(delivery.Report{EventID: "evt_1", Flow: "lead_capture", Step: "ack", System: "sms",
		Outcome: store.AttemptSucceeded, Status: 200, Attempt: 1, Done: true})
	require.Empty(t, out.String(), "printed before its lead is known")
	require.NoError(t, p.post(t.Context(), hooks.URL, signature.HMAC{Header: "X-Signature", Secret: []byte("s")}, "first", `{"email":"ann@example.com"}`))

	require.Regexp(t, `RECEIVED   ann@example.com .*\n.*DELIVERED  ann@example.com    lead_capture/ack → sms, HTTP 200 \(attempt 1\)\n$`, out.String())
	select {
	case <-p.settled:
	default:
		t.Fatal("the early report did not count towards settling")
	}
}
