package webapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
)

func TestNewClient(t *testing.T) {
	t.Parallel()

	c := NewClient(7 * time.Second)
	require.Equal(t, 7*time.Second, c.Timeout)
	tt, ok := c.Transport.(traceTransport)
	require.True(t, ok, "requests pass through the traceparent injector")
	tr, ok := tt.next.(*http.Transport)
	require.True(t, ok)
	require.NotSame(t, http.DefaultTransport, tr, "each system has its own transport")
	require.Equal(t, maxIdleConnsPerHost, tr.MaxIdleConnsPerHost)
	require.Zero(t, tr.MaxIdleConns)
}

func TestNewClientReportsRedirects(t *testing.T) {
	t.Parallel()

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			t.Error("redirect was followed")
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	t.Cleanup(srv.Close)

	resp, err := NewClient(time.Second).Get(srv.URL + "/start")
	require.NoError(t, err)
	Discard(resp)
	require.Equal(t, http.StatusFound, resp.StatusCode)
}

func TestNewClientPropagatesTraceparent(t *testing.T) {
	t.Parallel()

	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	for _, tc := range []struct {
		name   string
		traced bool
		header string // set by the caller
		want   string
	}{
		{name: "span in context", traced: true, want: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{name: "tracing off", want: ""},
		{name: "the step's own header wins", traced: true, header: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			want: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := make(chan http.Header, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got <- r.Header.Clone() }))
			t.Cleanup(srv.Close)
			ctx := t.Context()
			if tc.traced {
				ctx = trace.ContextWithSpanContext(ctx, sc)
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, nil)
			require.NoError(t, err)
			if tc.header != "" {
				req.Header.Set("Traceparent", tc.header)
			}
			resp, err := NewClient(time.Second).Do(req)
			require.NoError(t, err)
			Discard(resp)
			require.Equal(t, tc.want, (<-got).Get("Traceparent"))
			require.Equal(t, tc.header, req.Header.Get("Traceparent"), "the caller's request is not modified")
		})
	}
}
