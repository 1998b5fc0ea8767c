package ingest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/ingest"
	"github.com/switchboard-dev/switchboard/internal/tracing"
)

// acceptAll is an engine that accepts every event at once, remembering the
// last one: the handler's own cost, without a store.
type acceptAll struct{ last engine.Event }

func (a *acceptAll) Accept(_ context.Context, ev engine.Event) (engine.Accepted, error) {
	a.last = ev
	return engine.Accepted{EventID: "evt_1", Runs: 1}, nil
}

func tracedHandler(tb testing.TB, tr *tracing.Tracer) (*ingest.Handler, *acceptAll) {
	tb.Helper()
	acc := &acceptAll{}
	return ingest.New(ingest.Config{Plan: compilePlan(tb), Engine: acc, Tracer: tr}), acc
}

func serveOne(h http.Handler, source, body string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/hooks/"+source, strings.NewReader(body))
	req.SetPathValue("source", source)
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestIngestSpans(t *testing.T) {
	t.Parallel()
	const inbound = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	for _, tc := range []struct {
		name, source, body string
		header             http.Header
		status             int
		outcome            string
		stored             bool // the engine got the event with a traceparent
	}{
		{name: "accepted, joining the sender's trace", source: "plain", body: `{}`,
			header: http.Header{"Traceparent": {inbound}}, status: http.StatusAccepted, outcome: "accepted", stored: true},
		{name: "bad signature", source: "hmac_hex", body: `{}`, header: http.Header{"X-Signature": {"00"}},
			status: http.StatusUnauthorized, outcome: "rejected_signature"},
		{name: "unknown source", source: "nope", body: `{}`, status: http.StatusNotFound, outcome: "unknown_source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			h, acc := tracedHandler(t, tracing.NewFromProvider(tp))
			w := serveOne(h, tc.source, tc.body, tc.header)
			require.Equal(t, tc.status, w.Code, w.Body.String())

			spans := rec.Ended()
			require.Len(t, spans, 1)
			s := spans[0]
			got := map[attribute.Key]string{}
			for _, kv := range s.Attributes() {
				got[kv.Key] = kv.Value.String()
			}
			require.Equal(t, tc.outcome, got[tracing.KeyOutcome])
			if !tc.stored {
				require.Empty(t, got[tracing.KeyEventID])
				require.Empty(t, acc.last.TraceParent)
				return
			}
			require.Equal(t, "evt_1", got[tracing.KeyEventID])
			require.Equal(t, "1", got[tracing.KeyRuns])
			require.Equal(t, "00f067aa0ba902b7", s.Parent().SpanID().String())
			require.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-"+s.SpanContext().SpanID().String()+"-01", acc.last.TraceParent,
				"the event is stored with the ingest span as its parent")
		})
	}
}

// BenchmarkServeHTTP measures the handler's cost per accepted webhook with
// tracing off and on (every request sampled, spans batched to an exporter
// that drops them), without a store.
func BenchmarkServeHTTP(b *testing.B) {
	header := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	for _, bc := range []struct {
		name   string
		tracer func(b *testing.B) *tracing.Tracer
	}{
		{name: "off", tracer: func(*testing.B) *tracing.Tracer { return nil }},
		{name: "on", tracer: func(b *testing.B) *tracing.Tracer {
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			return tracing.NewFromProvider(tp)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h, _ := tracedHandler(b, bc.tracer(b))
			b.ReportAllocs()
			for b.Loop() {
				if w := serveOne(h, "keyed", `{"id":"a"}`, header); w.Code != http.StatusAccepted {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
