// Package ingest is the webhook endpoint, POST /hooks/{source}: it enforces
// the body limit and content type, verifies the signature over the raw body,
// computes the idempotency key and hands the event to the engine, answering
// 202 only after the event is durable.
package ingest

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/metrics"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/tracing"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// Acceptor is the engine method ingest needs.
type Acceptor interface {
	Accept(ctx context.Context, ev engine.Event) (engine.Accepted, error)
}

// Config configures a Handler.
type Config struct {
	Plan    *flow.Plan
	Engine  Acceptor
	Logger  *slog.Logger
	NowFunc func() time.Time
	// Draining, when it returns true, makes every request answer 503 (the
	// node is shutting down).
	Draining func() bool
	// Metrics counts every answer by source and outcome. Optional.
	Metrics *metrics.Metrics
	// Tracer makes a span per request, whose traceparent is stored with
	// the event. Optional: nil is tracing off.
	Tracer *tracing.Tracer
}

// Handler serves POST /hooks/{source}.
type Handler struct{ cfg Config }

// New returns a Handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	if cfg.Draining == nil {
		cfg.Draining = func() bool { return false }
	}
	return &Handler{cfg: cfg}
}

// Response is the JSON body of a 2xx answer.
type Response struct {
	EventID   string `json:"event_id"`
	Duplicate bool   `json:"duplicate"`
	// Outcome is "echo" for our own write coming back (stored, no runs)
	// and "conflict" for a mirror's change not written over its owner.
	Outcome string `json:"outcome,omitempty"`
}

// httpError is a rejection: Status and Public go to the client, Err to the
// log, Outcome (a metrics.Outcome* constant) to the metrics.
type httpError struct {
	Status     int
	Outcome    string
	Public     string
	Err        error
	RetryAfter int
}

func (e *httpError) Error() string { return e.Public }

func reject(status int, outcome, public string, err error) *httpError {
	return &httpError{Status: status, Outcome: outcome, Public: public, Err: err}
}

// ServeHTTP answers one webhook.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	source := r.PathValue("source")
	// The path is the client's: only a configured webhook source's name
	// may become a label value.
	label := metrics.UnknownSource
	if src, ok := h.cfg.Plan.Sources[source]; ok && src.Webhook != nil {
		label = source
	}
	ctx, span := h.cfg.Tracer.StartEvent(r.Context(), r.Header, label)
	acc, err := h.serve(ctx, w, r, source)
	if err != nil {
		var he *httpError
		if !errors.As(err, &he) {
			he = reject(http.StatusInternalServerError, metrics.OutcomeUnavailable, "internal error", err)
		}
		h.cfg.Metrics.EventReceived(label, cmp.Or(he.Outcome, metrics.OutcomeUnavailable))
		span.End(tracing.EventEnd{Status: he.Status, Outcome: cmp.Or(he.Outcome, metrics.OutcomeUnavailable), Public: he.Public, Err: he.Err})
		level := slog.LevelWarn
		if he.Status >= 500 {
			level = slog.LevelError
		}
		attrs := []any{"source", source, "status", he.Status, "reason", he.Public}
		if he.Err != nil {
			attrs = append(attrs, "error", he.Err.Error())
		}
		h.cfg.Logger.Log(r.Context(), level, "webhook rejected", attrs...)
		if he.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(he.RetryAfter))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(he.Status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": he.Public})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	status, outcome := http.StatusAccepted, metrics.OutcomeAccepted
	if acc.Duplicate {
		status, outcome = http.StatusOK, metrics.OutcomeDuplicate
		w.Header().Set("Switchboard-Duplicate", "true")
	}
	if acc.Outcome == store.EventEcho && !acc.Duplicate {
		outcome = metrics.OutcomeEcho
	}
	h.cfg.Metrics.EventReceived(label, outcome)
	span.End(tracing.EventEnd{Status: status, Outcome: outcome, EventID: acc.EventID, Duplicate: acc.Duplicate, Runs: acc.Runs})
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Response{EventID: acc.EventID, Duplicate: acc.Duplicate, Outcome: string(acc.Outcome)})
}

// serve handles one request; ctx is the request's, with its span when
// tracing is on.
func (h *Handler) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, name string) (engine.Accepted, error) {
	if h.cfg.Draining() {
		return engine.Accepted{}, &httpError{Status: http.StatusServiceUnavailable, Outcome: metrics.OutcomeUnavailable,
			Public: "shutting down; retry on another node or later", RetryAfter: 5}
	}
	src, ok := h.cfg.Plan.Sources[name]
	if !ok || src.Webhook == nil {
		return engine.Accepted{}, reject(http.StatusNotFound, metrics.OutcomeUnknownSource, fmt.Sprintf("unknown source %q", name), nil)
	}
	wh := src.Webhook
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	want := "application/json"
	if wh.Form {
		want = "application/x-www-form-urlencoded"
	}
	if err != nil || mt != want {
		return engine.Accepted{}, reject(http.StatusUnsupportedMediaType, metrics.OutcomeRejectedContentType,
			fmt.Sprintf("content type %q not accepted; this source takes %s", r.Header.Get("Content-Type"), want), err)
	}
	if r.ContentLength > wh.MaxBody {
		return engine.Accepted{}, reject(http.StatusRequestEntityTooLarge, metrics.OutcomeRejectedSize, fmt.Sprintf("body larger than %d bytes", wh.MaxBody), nil)
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, wh.MaxBody), r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return engine.Accepted{}, reject(http.StatusRequestEntityTooLarge, metrics.OutcomeRejectedSize, fmt.Sprintf("body larger than %d bytes", wh.MaxBody), nil)
		}
		return engine.Accepted{}, reject(http.StatusBadRequest, metrics.OutcomeRejectedBody, "could not read the body", err)
	}
	now := h.cfg.NowFunc()
	var verified flow.Verified
	if wh.Verifier != nil {
		verified, err = wh.Verifier.Verify(r, body, now)
		if err != nil {
			// The reason names which check failed (missing, mismatch,
			// expired), never the expected signature.
			return engine.Accepted{}, reject(http.StatusUnauthorized, metrics.OutcomeRejectedSignature, "signature verification failed: "+err.Error(), err)
		}
		if !verified.SentAt.IsZero() {
			h.cfg.Metrics.DeliveryDelay(name, now.Sub(verified.SentAt))
		}
	}
	payload, value, err := decodeBody(body, wh.Form)
	if err != nil {
		return engine.Accepted{}, reject(http.StatusBadRequest, metrics.OutcomeRejectedBody, err.Error(), nil)
	}
	key, err := eventKey(ctx, src, verified, body, value)
	if transform.CutOff(ctx, err) {
		// The key's jq was cut off (a starved CPU, the sender gone): not
		// a fault of the body. A 400 would tell the sender to drop it.
		return engine.Accepted{}, notStored(err)
	}
	if err != nil {
		return engine.Accepted{}, reject(http.StatusBadRequest, metrics.OutcomeRejectedBody, err.Error(), nil)
	}
	acc, err := h.cfg.Engine.Accept(ctx, engine.Event{
		Source: name, Key: key, Payload: payload, Value: value, TraceParent: tracing.TraceParent(ctx),
	})
	if err != nil {
		he := notStored(err)
		switch {
		case errors.Is(err, engine.ErrOverloaded):
			he.Public, he.RetryAfter = "overloaded; retry later", 2
		case store.IsRefused(err):
			// The same event would be refused again: a fault of ours (or
			// a limit), not a passing outage. Logged with the reason.
			he.Status, he.Public, he.RetryAfter = http.StatusInternalServerError, "event not stored: the database refused it (see the server log)", 0
		}
		return engine.Accepted{}, he
	}
	return acc, nil
}

// decodeBody returns the payload as JSON and as jq values. Form bodies
// become an object: single values as strings, repeated keys as arrays.
func decodeBody(body []byte, form bool) ([]byte, any, error) {
	if !form {
		v, err := transform.Decode(body)
		if err != nil {
			return nil, nil, fmt.Errorf("malformed JSON: %v", err)
		}
		return body, v, nil
	}
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, nil, fmt.Errorf("malformed form body: %v", err)
	}
	obj := map[string]any{}
	for k, vs := range vals {
		if len(vs) == 1 {
			obj[k] = vs[0]
			continue
		}
		arr := make([]any, len(vs))
		for i, v := range vs {
			arr[i] = v
		}
		obj[k] = arr
	}
	payload, err := json.Marshal(obj)
	if err != nil {
		return nil, nil, err
	}
	return payload, obj, nil
}

// eventKey picks the idempotency key: the source's key expression, else
// the verified message id, else the SHA-256 of the raw body.
func eventKey(ctx context.Context, src *flow.Source, v flow.Verified, body []byte, value any) (string, error) {
	if src.Key == nil && src.RecordID != nil && src.Version != nil {
		id, version, err := src.RecordOf(ctx, value)
		switch {
		case err == nil:
			return flow.RecordKey(id, version), nil
		case !errors.Is(err, flow.ErrNoValue):
			return "", fmt.Errorf("record key: %w", err)
		}
		// Not about a version of a record (a ping, a deletion): keyed
		// the default way below.
	}
	if src.Key != nil {
		k, err := src.Key.Eval(ctx, value)
		if err != nil {
			return "", fmt.Errorf("idempotency key: %w", err)
		}
		s, err := flow.KeyText(src.Key, k)
		if err != nil {
			return "", fmt.Errorf("idempotency key: %w", err)
		}
		return flow.StorableKey(s), nil
	}
	if v.MessageID != "" {
		return flow.StorableKey(v.MessageID), nil
	}
	sum := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// readBody reads a request body. With a Content-Length (already checked
// against the limit) of at most 16 KiB, the buffer is allocated once at its
// size: io.ReadAll starts at 512 bytes and grows, which cost 2.2 KB of
// allocations for a 1 KB body. A larger declared length is not trusted
// with an allocation before its bytes arrive (a client could declare the
// limit on many connections and send nothing); io.ReadAll grows as they
// come. The server ends the body after Content-Length bytes, and reports a
// body cut short as an error.
func readBody(r io.Reader, size int64) ([]byte, error) {
	if size < 0 || size > 16<<10 {
		return io.ReadAll(r)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// notStored is the answer to an event not stored for a passing reason:
// 503, retry in a second.
func notStored(err error) *httpError {
	return &httpError{Status: http.StatusServiceUnavailable, Outcome: metrics.OutcomeUnavailable,
		Public: "event not stored; retry later", Err: err, RetryAfter: 1}
}
