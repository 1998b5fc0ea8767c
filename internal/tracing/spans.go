package tracing

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys of Switchboard's spans. Values are names from the config,
// ids, counts and outcomes: never payloads, inputs, URLs or secrets.
const (
	KeySource     = attribute.Key("switchboard.source")
	KeyEventID    = attribute.Key("switchboard.event.id")
	KeyDuplicate  = attribute.Key("switchboard.event.duplicate")
	KeyOutcome    = attribute.Key("switchboard.outcome")
	KeyRuns       = attribute.Key("switchboard.runs")
	KeyFlow       = attribute.Key("switchboard.flow")
	KeyRunID      = attribute.Key("switchboard.run.id")
	KeyGeneration = attribute.Key("switchboard.run.generation")
	KeyRunState   = attribute.Key("switchboard.run.state")
	KeyHeld       = attribute.Key("switchboard.run.held")
	KeyStep       = attribute.Key("switchboard.step")
	KeyStepIndex  = attribute.Key("switchboard.step.index")
	KeySystem     = attribute.Key("switchboard.system")
	KeyAttempt    = attribute.Key("switchboard.attempt")
	KeyRetryIn    = attribute.Key("switchboard.retry_in_ms")
	KeyHTTPStatus = attribute.Key("http.response.status_code")
	KeyHTTPMethod = attribute.Key("http.request.method")
	keyHTTPRoute  = attribute.Key("http.route")
)

// EventSpan is the span of one webhook request. The zero value (tracing
// off) does nothing.
type EventSpan struct{ span trace.Span }

// StartEvent starts the span of one webhook request to source (a configured
// source's name; callers pass a fixed word for unknown ones). When the
// request carries a W3C traceparent the span is its child, so the event
// joins the sender's trace.
func (t *Tracer) StartEvent(ctx context.Context, header http.Header, source string) (context.Context, EventSpan) {
	if t == nil {
		return ctx, EventSpan{}
	}
	ctx = propagator.Extract(ctx, propagation.HeaderCarrier(header))
	ctx, span := t.tracer.Start(ctx, "ingest "+source,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(KeySource.String(source), KeyHTTPMethod.String(http.MethodPost),
			keyHTTPRoute.String("/hooks/{source}")))
	return ctx, EventSpan{span: span}
}

// EventEnd is how a webhook request ended.
type EventEnd struct {
	// Status is the HTTP status answered.
	Status int
	// Outcome is the metrics outcome (accepted, duplicate, rejected_…).
	Outcome string
	// EventID is the stored event's id ("" when rejected).
	EventID   string
	Duplicate bool
	// Runs is how many runs the event started.
	Runs int
	// Public is the answer's error text; Err the internal cause (5xx only
	// is recorded: a 4xx is the sender's mistake, not ours).
	Public string
	Err    error
}

// End records how the request ended and ends the span.
func (s EventSpan) End(e EventEnd) {
	if s.span == nil {
		return
	}
	defer s.span.End()
	if !s.span.IsRecording() {
		return
	}
	s.span.SetAttributes(KeyHTTPStatus.Int(e.Status), KeyOutcome.String(e.Outcome))
	if e.EventID != "" {
		s.span.SetAttributes(KeyEventID.String(e.EventID), KeyDuplicate.Bool(e.Duplicate), KeyRuns.Int(e.Runs))
	}
	if e.Status >= 500 {
		msg := e.Public
		if e.Err != nil {
			msg += ": " + errText(e.Err)
		}
		s.span.SetStatus(codes.Error, msg)
	}
}

// Run describes one execution of a run: from its claim until it finishes,
// waits for a retry, is held or loses its lease. A run that is retried
// later is executed again, under a new run span of the same trace.
type Run struct {
	// TraceParent is the stored traceparent of the run's event; "" starts
	// a new trace.
	TraceParent string
	Flow        string
	RunID       string
	EventID     string
	Source      string
	Generation  int
	// Step is the id of the step the execution starts at.
	Step string
}

type (
	runKey     struct{}
	attemptKey struct{}
)

// StartRun starts the span of one execution of a run, as a child of its
// event's span. EndRun ends it.
func (t *Tracer) StartRun(ctx context.Context, r Run) context.Context {
	if t == nil {
		return ctx
	}
	ctx, span := t.tracer.Start(withParent(ctx, r.TraceParent), "run "+r.Flow,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(KeyFlow.String(r.Flow), KeyRunID.String(r.RunID), KeyEventID.String(r.EventID),
			KeySource.String(r.Source), KeyGeneration.Int(r.Generation), KeyStep.String(r.Step)))
	return context.WithValue(ctx, runKey{}, span)
}

// EndRun ends the run span StartRun put in ctx.
func EndRun(ctx context.Context) {
	if span, ok := ctx.Value(runKey{}).(trace.Span); ok {
		span.End()
	}
}

// Attempt describes one call of one step.
type Attempt struct {
	Flow   string
	Step   string
	Index  int
	System string
	// Number is the attempt's number at this step, from 1.
	Number int
}

// StartAttempt starts the span of one step attempt, a child of the run
// span in ctx. Calls made with the returned context carry its traceparent.
func (t *Tracer) StartAttempt(ctx context.Context, a Attempt) context.Context {
	if t == nil {
		return ctx
	}
	ctx, span := t.tracer.Start(ctx, "step "+a.Flow+"."+a.Step,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(KeyFlow.String(a.Flow), KeyStep.String(a.Step), KeyStepIndex.Int(a.Index),
			KeySystem.String(a.System), KeyAttempt.Int(a.Number)))
	return context.WithValue(ctx, attemptKey{}, span)
}

// AttemptEnd is how an attempt ended and what became of its run.
type AttemptEnd struct {
	// Outcome is the attempt's outcome: succeeded, retry or dead.
	Outcome string
	// Status is the remote HTTP status, 0 without a response.
	Status int
	// Err is the failure, as recorded with the attempt (connectors redact
	// it); nil on success.
	Err error
	// RetryIn is the wait before the next attempt (outcome retry).
	RetryIn time.Duration
	// RunState is the run's state afterwards.
	RunState string
}

// EndAttempt records how the attempt in ctx ended, marks it failed unless
// it succeeded, ends it, and records the run's new state on the run span.
// Without an attempt span in ctx (the run failed before any call: a config
// change, an input mapping error) the failure is recorded on the run span.
func EndAttempt(ctx context.Context, e AttemptEnd) {
	run, _ := ctx.Value(runKey{}).(trace.Span)
	if run == nil {
		return // tracing is off
	}
	failed := e.Outcome != outcomeSucceeded
	if span, ok := ctx.Value(attemptKey{}).(trace.Span); ok && span.IsRecording() {
		span.SetAttributes(KeyOutcome.String(e.Outcome))
		if e.Status != 0 {
			span.SetAttributes(KeyHTTPStatus.Int(e.Status))
		}
		if e.RetryIn > 0 {
			span.SetAttributes(KeyRetryIn.Float64(durationMillis(e.RetryIn)))
		}
		if failed && e.Err != nil {
			span.SetStatus(codes.Error, errText(e.Err))
		} else if failed {
			span.SetStatus(codes.Error, e.Outcome)
		}
		span.End()
	} else if ok {
		span.End()
	} else if failed && e.Err != nil && run.IsRecording() {
		run.SetStatus(codes.Error, errText(e.Err))
	}
	if !run.IsRecording() {
		return
	}
	run.SetAttributes(KeyRunState.String(e.RunState))
	if e.RunState == runDead && e.Err != nil {
		run.SetStatus(codes.Error, errText(e.Err))
	}
}

// Held records that the run was put back without a (complete) attempt:
// its system's gate held it, or shutdown cut its call. An attempt span in
// ctx ends as interrupted.
func Held(ctx context.Context, reason string) {
	run, _ := ctx.Value(runKey{}).(trace.Span)
	if run == nil {
		return
	}
	if span, ok := ctx.Value(attemptKey{}).(trace.Span); ok {
		span.SetAttributes(KeyOutcome.String("interrupted"))
		span.End()
	}
	run.SetAttributes(KeyRunState.String(runRetrying), KeyHeld.String(reason))
}

// Run states and attempt outcomes as the store names them (this package
// does not import the store).
const (
	outcomeSucceeded = "succeeded"
	runDead          = "dead"
	runRetrying      = "retrying"
)
