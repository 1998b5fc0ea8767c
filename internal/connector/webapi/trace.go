package webapi

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traceTransport adds the W3C traceparent (and tracestate) of the span in
// each request's context: the step attempt's span, when tracing is on.
// Every connector's client is built by NewClient, so this is the one place
// outbound calls join the trace. Without a span (tracing off) the request
// goes out untouched and nothing is allocated.
type traceTransport struct{ next http.RoundTripper }

var propagator = propagation.TraceContext{}

func (t traceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A header the step set itself (http.request headers) is left alone.
	if !trace.SpanContextFromContext(req.Context()).IsValid() || req.Header.Get("Traceparent") != "" {
		return t.next.RoundTrip(req)
	}
	// A RoundTripper must not modify the caller's request.
	out := req.Clone(req.Context())
	propagator.Inject(req.Context(), propagation.HeaderCarrier(out.Header))
	return t.next.RoundTrip(out)
}
