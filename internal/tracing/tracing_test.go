package tracing_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-dev/switchboard/internal/logtest"
	"github.com/switchboard-dev/switchboard/internal/tracing"
)

const inbound = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func recorder(t testing.TB) (*tracing.Tracer, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tracing.NewFromProvider(tp), rec
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

// TestOffCostsNothing is not parallel: testing.AllocsPerRun refuses to run
// in a parallel test.
func TestOffCostsNothing(t *testing.T) {
	var tr *tracing.Tracer
	ctx := t.Context()
	h := http.Header{"Traceparent": {inbound}}
	allocs := testing.AllocsPerRun(100, func() {
		ectx, span := tr.StartEvent(ctx, h, "src")
		if tracing.TraceParent(ectx) != "" {
			t.Fatal("traceparent without tracing")
		}
		span.End(tracing.EventEnd{Status: 202, Outcome: "accepted", EventID: "evt_1"})
		rctx := tr.StartRun(ctx, tracing.Run{TraceParent: inbound, Flow: "f", RunID: "run_1"})
		actx := tr.StartAttempt(rctx, tracing.Attempt{Flow: "f", Step: "s", Number: 1})
		tracing.EndAttempt(actx, tracing.AttemptEnd{Outcome: "succeeded", Status: 200, RunState: "succeeded"})
		tracing.Held(actx, "x")
		tracing.EndRun(rctx)
	})
	require.Zero(t, allocs, "a nil tracer must not allocate")
	require.NoError(t, tr.Shutdown(ctx))
}

func TestEventRunAttemptNest(t *testing.T) {
	t.Parallel()
	tr, rec := recorder(t)
	ctx := t.Context()

	ectx, es := tr.StartEvent(ctx, http.Header{"Traceparent": {inbound}}, "web_form")
	parent := tracing.TraceParent(ectx)
	es.End(tracing.EventEnd{Status: 202, Outcome: "accepted", EventID: "evt_1", Runs: 1})
	require.Regexp(t, `^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$`, parent)

	// The run executes later: only the stored traceparent links it.
	rctx := tr.StartRun(context.Background(), tracing.Run{
		TraceParent: parent, Flow: "lead", RunID: "run_1", EventID: "evt_1", Source: "web_form", Step: "contact",
	})
	first := tr.StartAttempt(rctx, tracing.Attempt{Flow: "lead", Step: "contact", System: "crm", Number: 1})
	tracing.EndAttempt(first, tracing.AttemptEnd{Outcome: "retry", Status: 503, Err: errors.New("crm: HTTP 503"),
		RetryIn: 1500 * time.Millisecond, RunState: "retrying"})
	tracing.EndRun(rctx)

	spans := rec.Ended()
	require.Len(t, spans, 3)
	event, attempt, run := spans[0], spans[1], spans[2]

	require.Equal(t, "ingest web_form", event.Name())
	require.Equal(t, trace.SpanKindServer, event.SpanKind())
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", event.SpanContext().TraceID().String())
	require.Equal(t, "00f067aa0ba902b7", event.Parent().SpanID().String(), "the inbound traceparent is the parent")
	require.True(t, event.Parent().IsRemote())
	ea := attrs(event)
	require.Equal(t, "evt_1", ea[tracing.KeyEventID].AsString())
	require.Equal(t, "accepted", ea[tracing.KeyOutcome].AsString())
	require.Equal(t, int64(202), ea[tracing.KeyHTTPStatus].AsInt64())
	require.Equal(t, codes.Unset, event.Status().Code)

	require.Equal(t, "run lead", run.Name())
	require.Equal(t, event.SpanContext().TraceID(), run.SpanContext().TraceID())
	require.Equal(t, event.SpanContext().SpanID(), run.Parent().SpanID(), "the run is a child of its event")
	ra := attrs(run)
	require.Equal(t, "run_1", ra[tracing.KeyRunID].AsString())
	require.Equal(t, "evt_1", ra[tracing.KeyEventID].AsString())
	require.Equal(t, "retrying", ra[tracing.KeyRunState].AsString())

	require.Equal(t, "step lead.contact", attempt.Name())
	require.Equal(t, trace.SpanKindClient, attempt.SpanKind())
	require.Equal(t, run.SpanContext().SpanID(), attempt.Parent().SpanID())
	aa := attrs(attempt)
	require.Equal(t, "crm", aa[tracing.KeySystem].AsString())
	require.Equal(t, int64(1), aa[tracing.KeyAttempt].AsInt64())
	require.Equal(t, "retry", aa[tracing.KeyOutcome].AsString())
	require.Equal(t, int64(503), aa[tracing.KeyHTTPStatus].AsInt64())
	require.InDelta(t, 1500.0, aa[tracing.KeyRetryIn].AsFloat64(), 0.001)
	require.Equal(t, codes.Error, attempt.Status().Code)
	require.Equal(t, "crm: HTTP 503", attempt.Status().Description)
}

func TestFailureBeforeAnyCallMarksTheRun(t *testing.T) {
	t.Parallel()
	tr, rec := recorder(t)
	rctx := tr.StartRun(t.Context(), tracing.Run{Flow: "lead", RunID: "run_1"})
	tracing.EndAttempt(rctx, tracing.AttemptEnd{Outcome: "dead", Err: errors.New("map inputs: .email is null"), RunState: "dead"})
	tracing.EndRun(rctx)

	spans := rec.Ended()
	require.Len(t, spans, 1)
	require.False(t, spans[0].Parent().IsValid(), "no stored traceparent: a new trace")
	require.Equal(t, codes.Error, spans[0].Status().Code)
	require.Equal(t, "map inputs: .email is null", spans[0].Status().Description)
	require.Equal(t, "dead", attrs(spans[0])[tracing.KeyRunState].AsString())
}

func TestHeldEndsTheAttempt(t *testing.T) {
	t.Parallel()
	tr, rec := recorder(t)
	rctx := tr.StartRun(t.Context(), tracing.Run{Flow: "lead", RunID: "run_1"})
	actx := tr.StartAttempt(rctx, tracing.Attempt{Flow: "lead", Step: "contact", Number: 2})
	tracing.Held(actx, "interrupted by shutdown")
	tracing.EndRun(rctx)

	spans := rec.Ended()
	require.Len(t, spans, 2)
	require.Equal(t, "interrupted", attrs(spans[0])[tracing.KeyOutcome].AsString())
	ra := attrs(spans[1])
	require.Equal(t, "retrying", ra[tracing.KeyRunState].AsString())
	require.Equal(t, "interrupted by shutdown", ra[tracing.KeyHeld].AsString())
}

func TestServerErrorMarksTheEvent(t *testing.T) {
	t.Parallel()
	tr, rec := recorder(t)
	_, es := tr.StartEvent(t.Context(), http.Header{}, "web_form")
	es.End(tracing.EventEnd{Status: 503, Outcome: "unavailable", Public: "event not stored; retry later", Err: errors.New("store: disk full")})
	_, es = tr.StartEvent(t.Context(), http.Header{}, "web_form")
	es.End(tracing.EventEnd{Status: 401, Outcome: "rejected_signature", Public: "signature verification failed"})

	spans := rec.Ended()
	require.Len(t, spans, 2)
	require.Equal(t, codes.Error, spans[0].Status().Code)
	require.Equal(t, "event not stored; retry later: store: disk full", spans[0].Status().Description)
	require.False(t, spans[0].Parent().IsValid(), "no inbound traceparent: a new trace")
	require.Equal(t, codes.Unset, spans[1].Status().Code, "a 4xx is the sender's problem")
	require.Equal(t, "rejected_signature", attrs(spans[1])[tracing.KeyOutcome].AsString())
}

func TestMalformedParentStartsANewTrace(t *testing.T) {
	t.Parallel()
	tr, rec := recorder(t)
	ctx, es := tr.StartEvent(t.Context(), http.Header{"Traceparent": {"00-zzz-yyy-01"}}, "src")
	es.End(tracing.EventEnd{Status: 202})
	require.NotEmpty(t, tracing.TraceParent(ctx))
	rctx := tr.StartRun(t.Context(), tracing.Run{TraceParent: "garbage", Flow: "f"})
	tracing.EndRun(rctx)
	require.Len(t, rec.Ended(), 2, "the event span and the run span")
	for _, s := range rec.Ended() {
		require.False(t, s.Parent().IsValid(), s.Name())
	}
}

// otlpReceiver is a loopback OTLP/HTTP collector: it decodes every
// ExportTraceServiceRequest it is sent.
type otlpReceiver struct {
	mu       sync.Mutex // guards the fields below
	requests []*collectorpb.ExportTraceServiceRequest
	headers  []http.Header
	paths    []string
}

func newReceiver(t testing.TB) (*otlpReceiver, *httptest.Server) {
	t.Helper()
	rcv := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req collectorpb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rcv.mu.Lock()
		rcv.requests = append(rcv.requests, &req)
		rcv.headers = append(rcv.headers, r.Header.Clone())
		rcv.paths = append(rcv.paths, r.URL.Path)
		rcv.mu.Unlock()
		out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return rcv, srv
}

func (r *otlpReceiver) spans() (map[string]*tracepb.Span, map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	spans := map[string]*tracepb.Span{}
	resource := map[string]string{}
	for _, req := range r.requests {
		for _, rs := range req.ResourceSpans {
			for _, kv := range rs.Resource.Attributes {
				resource[kv.Key] = kv.Value.GetStringValue()
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					spans[s.Name] = s
				}
			}
		}
	}
	return spans, resource
}

func TestExportsOverOTLPHTTP(t *testing.T) {
	t.Parallel()
	rcv, srv := newReceiver(t)
	tr, err := tracing.New(t.Context(), tracing.Config{
		Endpoint: srv.URL, Headers: map[string]string{"X-Api-Key": "k3y"}, SampleRatio: 1,
		ServiceName: "switchboard-test", Node: "node-1",
	})
	require.NoError(t, err)

	ectx, es := tr.StartEvent(t.Context(), http.Header{"Traceparent": {inbound}}, "web_form")
	es.End(tracing.EventEnd{Status: 202, Outcome: "accepted", EventID: "evt_1", Runs: 1})
	rctx := tr.StartRun(t.Context(), tracing.Run{TraceParent: tracing.TraceParent(ectx), Flow: "lead", RunID: "run_1"})
	actx := tr.StartAttempt(rctx, tracing.Attempt{Flow: "lead", Step: "contact", System: "crm", Number: 1})
	tracing.EndAttempt(actx, tracing.AttemptEnd{Outcome: "succeeded", Status: 200, RunState: "succeeded"})
	tracing.EndRun(rctx)
	require.NoError(t, tr.Shutdown(t.Context()), "shutdown flushes the batch")

	spans, resource := rcv.spans()
	require.Equal(t, "switchboard-test", resource["service.name"])
	require.Equal(t, "node-1", resource["service.instance.id"])
	rcv.mu.Lock()
	require.Equal(t, "/v1/traces", rcv.paths[0])
	require.Equal(t, "k3y", rcv.headers[0].Get("X-Api-Key"))
	require.Equal(t, "application/x-protobuf", rcv.headers[0].Get("Content-Type"))
	rcv.mu.Unlock()

	event, run, attempt := spans["ingest web_form"], spans["run lead"], spans["step lead.contact"]
	require.NotNil(t, event)
	require.NotNil(t, run)
	require.NotNil(t, attempt)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", trace.TraceID(event.TraceId).String())
	require.Equal(t, "00f067aa0ba902b7", trace.SpanID(event.ParentSpanId).String())
	require.Equal(t, event.SpanId, run.ParentSpanId)
	require.Equal(t, run.SpanId, attempt.ParentSpanId)
	require.Equal(t, event.TraceId, attempt.TraceId)
	require.Equal(t, tracepb.Status_STATUS_CODE_UNSET, attempt.Status.GetCode())
}

func TestSampleRatioZeroKeepsTheTraceparent(t *testing.T) {
	t.Parallel()
	rcv, srv := newReceiver(t)
	tr, err := tracing.New(t.Context(), tracing.Config{Endpoint: srv.URL + "/v1/traces", SampleRatio: 0})
	require.NoError(t, err)
	ctx, es := tr.StartEvent(t.Context(), http.Header{}, "src")
	es.End(tracing.EventEnd{Status: 202})
	// Not recorded, but still propagated (with the sampled flag off), so
	// downstream services agree not to record it either.
	require.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-00$`, tracing.TraceParent(ctx))
	require.NoError(t, tr.Shutdown(t.Context()))
	spans, _ := rcv.spans()
	require.Empty(t, spans)
}

func TestBadEndpoint(t *testing.T) {
	t.Parallel()
	for name, endpoint := range map[string]string{
		"no scheme":  "collector:4318",
		"other":      "grpc://collector:4317",
		"not a host": "http://",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := tracing.New(t.Context(), tracing.Config{Endpoint: endpoint})
			require.ErrorContains(t, err, "otlp_endpoint must be an absolute http or https URL")
		})
	}
}

func TestExportFailuresAreLogged(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusBadRequest) // permanent: not retried
	}))
	t.Cleanup(srv.Close)
	var logs logtest.Buffer
	tr, err := tracing.New(t.Context(), tracing.Config{
		Endpoint: srv.URL, SampleRatio: 1, Headers: map[string]string{"Authorization": "Bearer s3cret-t0ken"},
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	require.NoError(t, err)
	_, es := tr.StartEvent(t.Context(), http.Header{}, "src")
	es.End(tracing.EventEnd{Status: 202})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_ = tr.Shutdown(ctx)
	require.Contains(t, logs.String(), "tracing: spans not exported")
	require.NotContains(t, logs.String(), "s3cret-t0ken")
}
