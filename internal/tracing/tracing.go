// Package tracing declares every OpenTelemetry span Switchboard makes (one
// per webhook request, one per execution of a run, one per step attempt),
// builds the OTLP/HTTP exporter the tracing: config asks for, and carries a
// span's context through the store as a W3C traceparent. A nil *Tracer is
// tracing switched off: its methods do nothing and allocate nothing.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// scope is the instrumentation scope every span is created under.
const scope = "github.com/switchboard-dev/switchboard"

// DefaultServiceName is the service.name of the spans when neither the
// config nor OTEL_SERVICE_NAME names one.
const DefaultServiceName = "switchboard"

// Config configures the exporter and sampler.
type Config struct {
	// Endpoint is the collector's OTLP/HTTP base URL, such as
	// http://collector:4318; spans are posted to Endpoint/v1/traces (a URL
	// that already ends in /v1/traces is used as it is). Empty leaves it to
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT, or
	// http://localhost:4318.
	Endpoint string
	// Headers are sent with every export (an API key, say). Empty leaves
	// them to OTEL_EXPORTER_OTLP_HEADERS.
	Headers map[string]string
	// SampleRatio is the share of new traces recorded, 0 to 1. A trace that
	// began upstream (an inbound traceparent) follows the sender's decision.
	SampleRatio float64
	// ServiceName is the resource's service.name. Empty means
	// OTEL_SERVICE_NAME, else DefaultServiceName.
	ServiceName string
	// Node is this process's node id, exported as service.instance.id.
	Node string
	// Logger receives the exporter's errors (a collector that is down, a
	// full queue). Optional: by default the SDK prints them to stderr.
	Logger *slog.Logger
}

// Tracer makes Switchboard's spans. A nil *Tracer makes none. It is safe
// for concurrent use.
type Tracer struct {
	tracer   trace.Tracer
	provider *sdktrace.TracerProvider // nil when built by NewFromProvider
}

// New builds a tracer that exports through OTLP/HTTP (protobuf) in batches:
// spans are queued in memory (2048 by default, OTEL_BSP_* apply) and
// dropped, never waited for, when the collector falls behind. Call Shutdown
// to flush them.
func New(ctx context.Context, c Config) (*Tracer, error) {
	var opts []otlptracehttp.Option
	if c.Endpoint != "" {
		u, err := exportURL(c.Endpoint)
		if err != nil {
			return nil, err
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(u))
	}
	if len(c.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(c.Headers))
	}
	if c.Logger != nil {
		// The SDK reports export failures only through this process-wide
		// handler; the last tracer built wins, which is the one node a
		// process runs outside tests.
		logger := c.Logger
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			logger.Warn("tracing: spans not exported", "error", err)
		}))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	// Later sources win: the default name, then OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES, then what the config says.
	attrs := []attribute.KeyValue{}
	if c.ServiceName != "" {
		attrs = append(attrs, attribute.String("service.name", c.ServiceName))
	}
	if c.Node != "" {
		attrs = append(attrs, attribute.String("service.instance.id", c.Node))
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", DefaultServiceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
		resource.WithAttributes(attrs...),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SampleRatio))),
	)
	return &Tracer{tracer: tp.Tracer(scope), provider: tp}, nil
}

// exportURL turns the configured base URL into the traces URL.
func exportURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("tracing: otlp_endpoint must be an absolute http or https URL")
	}
	if !strings.HasSuffix(u.Path, "/v1/traces") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	}
	return u.String(), nil
}

// NewFromProvider returns a tracer that makes its spans with tp (tests hand
// it an in-memory recorder). Shutdown leaves tp alone.
func NewFromProvider(tp trace.TracerProvider) *Tracer {
	return &Tracer{tracer: tp.Tracer(scope)}
}

// Shutdown exports the spans still queued and stops the exporter, within
// ctx. It is safe on a nil Tracer.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flush spans: %w", err)
	}
	return nil
}

// propagator reads and writes the W3C traceparent (and tracestate) header.
var propagator = propagation.TraceContext{}

// TraceParent returns the W3C traceparent of the span in ctx, to store with
// an event so that its runs, executed later and maybe on another node, join
// the same trace. It is "" when ctx has no span (tracing is off).
func TraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagator.Inject(ctx, c)
	return c["traceparent"]
}

// withParent returns ctx with the remote span context a stored traceparent
// names; ctx unchanged when it is empty or malformed.
func withParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// errText bounds an error's text in a span: the same redacted text as the
// attempt record and the log, cut to a size a collector accepts.
func errText(err error) string {
	s := err.Error()
	if len(s) <= maxErrText {
		return s
	}
	n := maxErrText
	for n > 0 && !utf8.RuneStart(s[n]) {
		n-- // never cut a character in two
	}
	return s[:n] + "…"
}

const maxErrText = 1024

// durationMillis is how waits are exported (a float, in ms).
func durationMillis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
