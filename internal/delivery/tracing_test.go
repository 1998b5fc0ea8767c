package delivery_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/tracing"
)

const eventParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// traced sets up a bundle whose executor records its spans.
func traced(t *testing.T, yaml string) (*bundle, *tracetest.SpanRecorder) {
	t.Helper()
	b := setup(t, yaml)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	b.tracer = tracing.NewFromProvider(tp)
	return b, rec
}

func (b *bundle) insertTraced(t *testing.T, key, payload string) {
	t.Helper()
	now := time.Now()
	_, err := b.store.InsertEvents(t.Context(), []store.NewEvent{{
		ID: store.NewID("evt_", now), Source: "src", Key: key, ReceivedAt: now, Payload: []byte(payload),
		TraceParent: eventParent,
		Runs:        []store.NewRun{{ID: store.NewID("run_", now), Flow: "f", StepID: "one"}},
	}})
	require.NoError(t, err)
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	out := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value.String()
	}
	return out
}

func TestSpansPerExecutionAndAttempt(t *testing.T) {
	t.Parallel()
	b, rec := traced(t, twoSteps)
	b.sys["first"].do = func(n int, _ connector.Request) (connector.Result, error) {
		if n < 3 {
			return connector.Result{Status: 503}, errors.New("first: HTTP 503")
		}
		return connector.Result{Output: map[string]any{"id": 1}, Status: 200}, nil
	}
	b.sys["second"].do = ok(nil)
	b.insertTraced(t, "k1", `{"n": 1}`)
	runs := b.runUntil(t, allFinished)
	require.Equal(t, store.RunSucceeded, runs[0].State)

	var runSpans, attempts []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "run f":
			runSpans = append(runSpans, s)
		case "step f.one", "step f.two":
			attempts = append(attempts, s)
		}
	}
	require.Len(t, runSpans, 3, "two executions end waiting for a retry, the third finishes the run")
	require.Len(t, attempts, 4, "three attempts of one, one of two")
	states := map[string]int{}
	for _, r := range runSpans {
		require.Equal(t, "00f067aa0ba902b7", r.Parent().SpanID().String(), "every execution is a child of the event's span")
		require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", r.SpanContext().TraceID().String())
		states[spanAttrs(r)[tracing.KeyRunState]]++
	}
	require.Equal(t, map[string]int{"retrying": 2, "succeeded": 1}, states)

	runIDs := map[string]bool{}
	for _, r := range runSpans {
		runIDs[r.SpanContext().SpanID().String()] = true
	}
	var got []string
	for _, a := range attempts {
		require.True(t, runIDs[a.Parent().SpanID().String()], "an attempt is a child of a run execution")
		at := spanAttrs(a)
		got = append(got, at[tracing.KeyStep]+"/"+at[tracing.KeyAttempt]+"/"+at[tracing.KeyOutcome]+"/"+at[tracing.KeyHTTPStatus])
		if at[tracing.KeyOutcome] == "retry" {
			require.Equal(t, codes.Error, a.Status().Code)
			require.Equal(t, "first: HTTP 503", a.Status().Description)
		}
	}
	require.ElementsMatch(t, []string{"one/1/retry/503", "one/2/retry/503", "one/3/succeeded/200", "two/1/succeeded/200"}, got)

	// Each call was made inside its attempt's span: that is what the HTTP
	// connectors propagate as traceparent.
	calls := append(b.sys["first"].spans, b.sys["second"].spans...)
	require.Len(t, calls, 4)
	attemptIDs := map[string]bool{}
	for _, a := range attempts {
		attemptIDs[a.SpanContext().SpanID().String()] = true
	}
	for _, sc := range calls {
		require.True(t, attemptIDs[sc.SpanID().String()], "call made in span %s", sc.SpanID())
	}
}

func TestSpanOfARunThatFailsBeforeItsCall(t *testing.T) {
	t.Parallel()
	b, rec := traced(t, twoSteps)
	b.sys["first"].do = ok(map[string]any{"id": "not a number"})
	b.sys["second"].do = ok(nil)
	b.insertTraced(t, "k1", `{"n": 1}`)
	runs := b.runUntil(t, allFinished)
	require.Equal(t, store.RunDead, runs[0].State)

	var names []string
	var run sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
		if s.Name() == "run f" {
			run = s
		}
	}
	require.ElementsMatch(t, []string{"run f", "step f.one"}, names, "step two was never called: no span of its own")
	require.Equal(t, "dead", spanAttrs(run)[tracing.KeyRunState])
	require.Equal(t, codes.Error, run.Status().Code)
	require.Contains(t, run.Status().Description, "map inputs")
}
