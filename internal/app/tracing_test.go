package app_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/tracing"
)

// collector is a loopback OTLP/HTTP receiver: it decodes every
// ExportTraceServiceRequest the real exporter sends it.
type collector struct {
	mu      sync.Mutex // guards the fields below
	spans   []*tracepb.Span
	service string
	auth    string
}

func newCollector(t testing.TB) (*collector, string) {
	t.Helper()
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req collectorpb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil || r.URL.Path != "/v1/traces" {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.auth = r.Header.Get("Authorization")
		for _, rs := range req.ResourceSpans {
			for _, kv := range rs.Resource.Attributes {
				if kv.Key == "service.name" {
					c.service = kv.Value.GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				c.spans = append(c.spans, ss.Spans...)
			}
		}
		c.mu.Unlock()
		out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

// find returns the spans named name (a prefix) whose attribute key is val.
func (c *collector) find(name, key, val string) []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range c.spans {
		if strings.HasPrefix(s.Name, name) && spanAttr(s, key) == val {
			out = append(out, s)
		}
	}
	return out
}

// spanAttr returns a span's attribute as text ("" when absent).
func spanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key != key {
			continue
		}
		switch v := kv.Value.Value.(type) {
		case *commonpb.AnyValue_StringValue:
			return v.StringValue
		case *commonpb.AnyValue_IntValue:
			return strconv.FormatInt(v.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			return strconv.FormatBool(v.BoolValue)
		}
	}
	return ""
}

// tracedDownstream answers by mode ("flaky": 503 once, then 200; "bad":
// 400; else 200) and records each request's traceparent by event id.
type tracedDownstream struct {
	mu      sync.Mutex // guards the field below
	parents map[string][]string
}

func (d *tracedDownstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct{ ID, Mode string }
	_ = json.NewDecoder(r.Body).Decode(&body)
	d.mu.Lock()
	d.parents[body.ID] = append(d.parents[body.ID], r.Header.Get("Traceparent"))
	n := len(d.parents[body.ID])
	d.mu.Unlock()
	switch {
	case body.Mode == "flaky" && n == 1:
		w.WriteHeader(http.StatusServiceUnavailable)
	case body.Mode == "bad":
		w.WriteHeader(http.StatusBadRequest)
	}
	_, _ = w.Write([]byte(`{}`))
}

func (d *tracedDownstream) got(id string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.parents[id]...)
}

// serveUntil starts a node like startServer, but returns a stop function
// that shuts it down and waits: spans are flushed by then.
// The config (and so its SQLite file) lives in dir; "" means a new one.
func serveUntil(t *testing.T, dir, yamlText string, env map[string]string, opts app.Options) (url string, srv *app.Server, stop func()) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg, err := config.Parse(filepath.Join(dir, "switchboard.yaml"), []byte(yamlText), func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	require.NoError(t, err)
	plan, err := app.Compile(cfg)
	require.NoError(t, err)
	srv, err = app.NewServer(t.Context(), plan, opts)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err, "server shutdown")
			case <-time.After(30 * time.Second):
				require.FailNow(t, "server did not shut down within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), srv, stop
}

// postTraced posts a signed webhook, with a traceparent header unless it is "".
func postTraced(t *testing.T, url, body, traceparent string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/hooks/orders", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(signer.Header, signer.Sign([]byte(body)))
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	var res struct {
		EventID string `json:"event_id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&res))
	return res.EventID
}

func waitRuns(t *testing.T, srv *app.Server, n int) map[string]store.Run {
	t.Helper()
	byEvent := map[string]store.Run{}
	require.Eventually(t, func() bool {
		runs, err := srv.Store.ListRuns(t.Context(), store.ListRunsParams{Limit: 100})
		if err != nil || len(runs) != n {
			return false
		}
		for _, r := range runs {
			if r.State != store.RunSucceeded && r.State != store.RunDead {
				return false
			}
			byEvent[r.EventID] = r
		}
		return true
	}, 20*time.Second, 20*time.Millisecond)
	return byEvent
}

const inboundParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestTracingEndToEnd runs a node that exports through the real OTLP/HTTP
// exporter to a loopback collector. Three webhooks: one joining the
// sender's trace whose step fails once (503) and is retried, one starting
// a trace of its own, one whose step is dead-lettered (400). Each gives
// ingest → run → attempt spans with the right parents, and each call to
// the downstream carries the traceparent of its attempt's span.
func TestTracingEndToEnd(t *testing.T) {
	t.Parallel()
	col, colURL := newCollector(t)
	down := &tracedDownstream{parents: map[string][]string{}}
	downSrv := httptest.NewServer(down)
	t.Cleanup(downSrv.Close)
	cfg := deliverConfig + `tracing:
  otlp_endpoint: ${COLLECTOR_URL}
  service_name: switchboard-e2e
  headers: { Authorization: "Bearer ${COLLECTOR_TOKEN}" }
`
	url, srv, stop := serveUntil(t, "", cfg, map[string]string{
		"DOWNSTREAM_URL": downSrv.URL, "E2E_SECRET": e2eSecret, "COLLECTOR_URL": colURL, "COLLECTOR_TOKEN": "c0llector",
	}, app.Options{PollInterval: 20 * time.Millisecond})

	flaky := postTraced(t, url, `{"id":"o-flaky","mode":"flaky"}`, inboundParent)
	fresh := postTraced(t, url, `{"id":"o-fresh","mode":"ok"}`, "")
	bad := postTraced(t, url, `{"id":"o-bad","mode":"bad"}`, "")
	runs := waitRuns(t, srv, 3)
	require.Equal(t, store.RunSucceeded, runs[flaky].State)
	require.Equal(t, store.RunDead, runs[bad].State)

	ev, err := srv.Store.GetEvent(t.Context(), flaky)
	require.NoError(t, err)
	require.Regexp(t, `^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$`, ev.TraceParent, "stored with the event")
	stop() // flushes the spans

	col.mu.Lock()
	require.Equal(t, "switchboard-e2e", col.service)
	require.Equal(t, "Bearer c0llector", col.auth, "the configured headers go with each export")
	col.mu.Unlock()

	t.Run("inbound traceparent and a retried step", func(t *testing.T) {
		ingest := col.find("ingest orders", "switchboard.event.id", flaky)
		require.Len(t, ingest, 1)
		require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", hex.EncodeToString(ingest[0].TraceId))
		require.Equal(t, "00f067aa0ba902b7", hex.EncodeToString(ingest[0].ParentSpanId), "a child of the sender's span")
		require.Equal(t, "accepted", spanAttr(ingest[0], "switchboard.outcome"))
		require.Equal(t, "202", spanAttr(ingest[0], "http.response.status_code"))

		runSpans := col.find("run deliver", "switchboard.run.id", runs[flaky].ID)
		require.Len(t, runSpans, 2, "one run span per execution: the first ends waiting for the retry")
		attempts := map[string]*tracepb.Span{}
		for _, rs := range runSpans {
			require.Equal(t, ingest[0].SpanId, rs.ParentSpanId, "the run is a child of its event")
			require.Equal(t, ingest[0].TraceId, rs.TraceId)
			require.Equal(t, flaky, spanAttr(rs, "switchboard.event.id"))
			for _, a := range col.find("step deliver.post", "switchboard.flow", "deliver") {
				if string(a.ParentSpanId) == string(rs.SpanId) {
					attempts[spanAttr(a, "switchboard.attempt")] = a
				}
			}
		}
		require.Len(t, attempts, 2, "one span per attempt")
		first, second := attempts["1"], attempts["2"]
		require.NotNil(t, first)
		require.NotNil(t, second)
		require.Equal(t, "retry", spanAttr(first, "switchboard.outcome"))
		require.Equal(t, "503", spanAttr(first, "http.response.status_code"))
		require.Equal(t, tracepb.Status_STATUS_CODE_ERROR, first.Status.GetCode())
		require.Contains(t, first.Status.GetMessage(), "503")
		require.Equal(t, "succeeded", spanAttr(second, "switchboard.outcome"))
		require.Equal(t, tracepb.Status_STATUS_CODE_UNSET, second.Status.GetCode())
		require.Equal(t, "downstream", spanAttr(second, "switchboard.system"))

		// The downstream saw each attempt's own span as the parent.
		require.Equal(t, []string{
			"00-4bf92f3577b34da6a3ce929d0e0e4736-" + hex.EncodeToString(first.SpanId) + "-01",
			"00-4bf92f3577b34da6a3ce929d0e0e4736-" + hex.EncodeToString(second.SpanId) + "-01",
		}, down.got("o-flaky"))
	})

	t.Run("a new trace", func(t *testing.T) {
		ingest := col.find("ingest orders", "switchboard.event.id", fresh)
		require.Len(t, ingest, 1)
		require.Empty(t, ingest[0].ParentSpanId, "no inbound traceparent: the event starts the trace")
		run := col.find("run deliver", "switchboard.run.id", runs[fresh].ID)
		require.Len(t, run, 1)
		require.Equal(t, ingest[0].SpanId, run[0].ParentSpanId)
		require.Equal(t, "succeeded", spanAttr(run[0], "switchboard.run.state"))
		got := down.got("o-fresh")
		require.Len(t, got, 1)
		require.True(t, strings.HasPrefix(got[0], "00-"+hex.EncodeToString(ingest[0].TraceId)+"-"), got[0])
	})

	t.Run("a dead letter", func(t *testing.T) {
		run := col.find("run deliver", "switchboard.run.id", runs[bad].ID)
		require.Len(t, run, 1)
		require.Equal(t, "dead", spanAttr(run[0], "switchboard.run.state"))
		require.Equal(t, tracepb.Status_STATUS_CODE_ERROR, run[0].Status.GetCode())
		var attempt *tracepb.Span
		for _, a := range col.find("step deliver.post", "switchboard.flow", "deliver") {
			if string(a.ParentSpanId) == string(run[0].SpanId) {
				attempt = a
			}
		}
		require.NotNil(t, attempt)
		require.Equal(t, "dead", spanAttr(attempt, "switchboard.outcome"))
		require.Equal(t, "400", spanAttr(attempt, "http.response.status_code"))
		require.Equal(t, tracepb.Status_STATUS_CODE_ERROR, attempt.Status.GetCode())
	})

	t.Run("no secrets or payloads", func(t *testing.T) {
		col.mu.Lock()
		defer col.mu.Unlock()
		for _, s := range col.spans {
			raw, err := proto.Marshal(s)
			require.NoError(t, err)
			for _, leak := range []string{e2eSecret, "c0llector", "o-flaky", "o-fresh", "o-bad", downSrv.URL} {
				require.NotContains(t, string(raw), leak, "span %s", s.Name)
			}
		}
	})
}

// TestTracingOff: without a tracing: section no traceparent goes out, not
// even when the webhook brought one, and none is stored.
func TestTracingOff(t *testing.T) {
	t.Parallel()
	down := &tracedDownstream{parents: map[string][]string{}}
	downSrv := httptest.NewServer(down)
	t.Cleanup(downSrv.Close)
	url, srv, _ := serveUntil(t, "", deliverConfig, map[string]string{"DOWNSTREAM_URL": downSrv.URL, "E2E_SECRET": e2eSecret},
		app.Options{PollInterval: 20 * time.Millisecond})
	id := postTraced(t, url, `{"id":"o-1","mode":"flaky"}`, inboundParent)
	runs := waitRuns(t, srv, 1)
	require.Equal(t, store.RunSucceeded, runs[id].State)
	require.Equal(t, []string{"", ""}, down.got("o-1"), "no traceparent on either attempt")
	ev, err := srv.Store.GetEvent(t.Context(), id)
	require.NoError(t, err)
	require.Empty(t, ev.TraceParent)
}

// TestTracingAcrossNodes: one node only receives (its executor is off) and
// stops; another, on the same store, executes the run later. The run's span
// still hangs under the first node's ingest span: the trace context went
// through the store, not through memory.
func TestTracingAcrossNodes(t *testing.T) {
	t.Parallel()
	down := &tracedDownstream{parents: map[string][]string{}}
	downSrv := httptest.NewServer(down)
	t.Cleanup(downSrv.Close)
	env := map[string]string{"DOWNSTREAM_URL": downSrv.URL, "E2E_SECRET": e2eSecret}
	dir := t.TempDir()
	recvRec, execRec := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	recvTracer := tracing.NewFromProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recvRec)))
	execTracer := tracing.NewFromProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(execRec)))

	url, _, stop := serveUntil(t, dir, deliverConfig, env, app.Options{NoExecutor: true, Tracer: recvTracer})
	id := postTraced(t, url, `{"id":"o-1","mode":"ok"}`, "")
	stop()
	require.Empty(t, down.got("o-1"), "the receiving node executes nothing")

	_, srv, stop := serveUntil(t, dir, deliverConfig, env, app.Options{PollInterval: 20 * time.Millisecond, Tracer: execTracer})
	runs := waitRuns(t, srv, 1)
	require.Equal(t, store.RunSucceeded, runs[id].State)
	stop() // the run is stored as done just before its span ends

	ingest := recvRec.Ended()
	require.Len(t, ingest, 1)
	var run, attempt sdktrace.ReadOnlySpan
	for _, s := range execRec.Ended() {
		switch s.Name() {
		case "run deliver":
			run = s
		case "step deliver.post":
			attempt = s
		}
	}
	require.NotNil(t, run)
	require.NotNil(t, attempt)
	require.Equal(t, ingest[0].SpanContext().TraceID(), run.SpanContext().TraceID())
	require.Equal(t, ingest[0].SpanContext().SpanID(), run.Parent().SpanID())
	require.True(t, run.Parent().IsRemote(), "the parent came from the store")
	require.Equal(t, run.SpanContext().SpanID(), attempt.Parent().SpanID())
	require.Equal(t, []string{"00-" + attempt.SpanContext().TraceID().String() + "-" + attempt.SpanContext().SpanID().String() + "-01"},
		down.got("o-1"))
}
