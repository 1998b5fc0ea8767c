package ingest_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/connector/all"
	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/ingest"
	"github.com/switchboard-dev/switchboard/internal/logtest"
	"github.com/switchboard-dev/switchboard/internal/metrics"
	"github.com/switchboard-dev/switchboard/internal/signature"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
)

// The test vector published in the Standard Webhooks specification.
const (
	swSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	swMsgID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	swTimestamp = 1614265330
	swBody      = `{"test": 2432232314}`
	swSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// hmacSecret signs the hmac sources. No response or log line may carry it.
const hmacSecret = "hmac-S3cret-never-logged"

// keySalt is the secret in the salted source's key expression. No response
// or log line may carry it either.
const keySalt = "salt-S3cret-never-shown-and-longer-than-jq-previews"

// otherSWSecret is a valid Standard Webhooks secret that is not the source's.
const otherSWSecret = "whsec_c3dpdGNoYm9hcmQtb3RoZXIta2V5LTAxMjM0NTY3ODk="

// swNow is every handler's clock: the vector's timestamp.
var swNow = time.Unix(swTimestamp, 0)

const testConfig = `version: 1
systems:
  crm: {kind: http, base_url: "http://127.0.0.1:9"}
sources:
  plain:
    webhook: {max_body: 64B}
  form:
    webhook: {format: form}
  keyed:
    webhook: {}
    key: .id
  records:
    webhook: {}
    record_id: .job.id
    version: .job.updated_at
  hmac_hex:
    webhook:
      verify: {scheme: hmac-sha256, header: X-Signature, secret: "${HMAC_SECRET}"}
  hmac_b64:
    webhook:
      verify: {scheme: hmac-sha256, header: X-Hub-Signature-256, encoding: base64, prefix: "sha256=", secret: "${HMAC_SECRET}"}
  standard:
    webhook:
      verify: {scheme: standard-webhooks, secret: "${SW_SECRET}"}
  gated:
    webhook: {}
  stripe:
    webhook:
      verify: {scheme: stripe, secret: whsec_stripe_test_secret}
    key: .id
  github:
    webhook:
      verify: {scheme: github, secret: github-test-secret}
  shopify:
    webhook:
      verify: {scheme: shopify, secret: shopify-test-secret}
  # A key built with a secret from the environment: a jq error about it
  # must not show the secret (the 400 goes to the sender), nor the same
  # key reached through a YAML alias.
  salted:
    webhook: {}
    key: &salted_key '"${KEY_SALT}:" + .id'
  aliased:
    webhook: {}
    key: *salted_key
  # A key whose jq runs past the evaluation timeout, as a starved CPU would
  # make a normal one.
  slow_key:
    webhook: {}
    key: 'reduce range(1e10) as $i (0; . + 1)'
  twilio:
    webhook:
      format: form
      verify: {scheme: twilio, secret: twilio-auth-token}
    key: .MessageSid
flows:
  plain: {on: plain, steps: [{id: a, do: crm.request}]}
  form: {on: form, steps: [{id: a, do: crm.request}]}
  keyed: {on: keyed, steps: [{id: a, do: crm.request}]}
  records: {on: records, steps: [{id: a, do: crm.request}]}
  hmac_hex: {on: hmac_hex, steps: [{id: a, do: crm.request}]}
  hmac_b64: {on: hmac_b64, steps: [{id: a, do: crm.request}]}
  standard: {on: standard, steps: [{id: a, do: crm.request}]}
  stripe: {on: stripe, steps: [{id: a, do: crm.request}]}
  github: {on: github, steps: [{id: a, do: crm.request}]}
  shopify: {on: shopify, steps: [{id: a, do: crm.request}]}
  twilio: {on: twilio, steps: [{id: a, do: crm.request}]}
  gated:
    on: gated
    when: .go == true
    steps: [{id: a, do: crm.request}]
`

var (
	hexSigner    = signature.HMAC{Header: "X-Signature", Secret: []byte(hmacSecret)}
	base64Signer = signature.HMAC{Header: "X-Hub-Signature-256", Secret: []byte(hmacSecret), Encoding: "base64", Prefix: "sha256="}
)

func compilePlan(tb testing.TB) *flow.Plan {
	tb.Helper()
	env := map[string]string{"HMAC_SECRET": hmacSecret, "SW_SECRET": swSecret, "KEY_SALT": keySalt}
	c, err := config.Parse("ingest.yaml", []byte(testConfig), func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	require.NoError(tb, err)
	p, err := flow.Compile(c, all.Registry())
	require.NoError(tb, err)
	return p
}

// options change what setup builds.
type options struct {
	// inserter replaces the SQLite store as the engine's store.
	inserter engine.Inserter
	// wrap, when set, wraps the SQLite store as the engine's store.
	wrap func(engine.Inserter) engine.Inserter
	// acceptor replaces the engine.
	acceptor ingest.Acceptor
	draining func() bool
}

type testBundle struct {
	url    string
	client *http.Client
	store  *sqlite.Store
	eng    *engine.Engine
	dbPath string
	logs   *logtest.Buffer
	// metrics is the registry the handler and engine count into.
	metrics *prometheus.Registry
	// unknownLength counts requests that arrived without a Content-Length.
	unknownLength atomic.Int32
}

// setup starts a real engine over a fresh SQLite store and an HTTP server
// routing POST /hooks/{source} to the handler, whose clock reads swNow.
func setup(tb testing.TB, opts options) *testBundle {
	tb.Helper()
	dbPath := filepath.Join(tb.TempDir(), "ingest.db")
	st, err := sqlite.Open(tb.Context(), dbPath)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, st.Close()) })

	plan := compilePlan(tb)
	ins := opts.inserter
	if ins == nil {
		ins = st
	}
	if opts.wrap != nil {
		ins = opts.wrap(ins)
	}
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	eng := engine.New(engine.Config{Store: ins, Plan: plan, Metrics: m})
	done := make(chan error, 1)
	go func() { done <- eng.Run(tb.Context()) }()
	// tb.Context is cancelled before cleanups run; wait for the committer
	// to finish before the store closes.
	tb.Cleanup(func() { require.NoError(tb, <-done) })

	acc := opts.acceptor
	if acc == nil {
		acc = eng
	}
	logs := &logtest.Buffer{}
	h := ingest.New(ingest.Config{
		Plan:     plan,
		Engine:   acc,
		Logger:   slog.New(slog.NewJSONHandler(logs, nil)),
		NowFunc:  func() time.Time { return swNow },
		Draining: opts.draining,
		Metrics:  m,
	})
	b := &testBundle{store: st, eng: eng, dbPath: dbPath, logs: logs, metrics: reg}
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/{source}", h)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength < 0 {
			b.unknownLength.Add(1)
		}
		mux.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	b.url, b.client = srv.URL, srv.Client()
	return b
}

// request is one webhook to post.
type request struct {
	source      string
	contentType string // "" sends no Content-Type
	body        string
	header      http.Header
	// chunked sends the body with unknown length (Transfer-Encoding: chunked).
	chunked bool
}

// jsonRequest is a request with Content-Type application/json.
func jsonRequest(source, body string) request {
	return request{source: source, contentType: "application/json", body: body}
}

func (r request) with(name, value string) request {
	h := r.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set(name, value)
	r.header = h
	return r
}

// response is what the handler answered.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do posts r; safe to call from any goroutine.
func (b *testBundle) do(ctx context.Context, r request) (response, error) {
	var body io.Reader = strings.NewReader(r.body)
	if r.chunked {
		body = io.MultiReader(body) // hides the length from net/http
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url+"/hooks/"+r.source, body)
	if err != nil {
		return response{}, err
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	res, err := b.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: res.StatusCode, header: res.Header, body: data}, nil
}

func (b *testBundle) post(tb testing.TB, r request) response {
	tb.Helper()
	res, err := b.do(tb.Context(), r)
	require.NoError(tb, err)
	return res
}

func (b *testBundle) events(tb testing.TB) []store.Event {
	tb.Helper()
	evs, err := b.store.ListEvents(tb.Context(), store.ListEventsParams{})
	require.NoError(tb, err)
	return evs
}

func (b *testBundle) runs(tb testing.TB, eventID string) []store.Run {
	tb.Helper()
	runs, err := b.store.ListRuns(tb.Context(), store.ListRunsParams{EventID: eventID})
	require.NoError(tb, err)
	return runs
}

// logLines returns the handler's log, one decoded JSON object per line.
func (b *testBundle) logLines(tb testing.TB) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.logs.String()) {
		var m map[string]any
		require.NoError(tb, json.Unmarshal([]byte(line), &m), "log line %q", line)
		out = append(out, m)
	}
	return out
}

// requireAccepted checks a 202 answer and returns the new event's ID.
func requireAccepted(tb testing.TB, res response) string {
	tb.Helper()
	require.Equal(tb, http.StatusAccepted, res.status, "body: %s", res.body)
	require.Empty(tb, res.header.Get("Switchboard-Duplicate"))
	require.Equal(tb, "application/json", res.header.Get("Content-Type"))
	var got map[string]any
	require.NoError(tb, json.Unmarshal(res.body, &got))
	id, _ := got["event_id"].(string)
	require.True(tb, strings.HasPrefix(id, "evt_"), "event_id %q", id)
	require.Equal(tb, map[string]any{"event_id": id, "duplicate": false}, got)
	return id
}

// requireDuplicate checks a 200 duplicate answer naming eventID.
func requireDuplicate(tb testing.TB, res response, eventID string) {
	tb.Helper()
	require.Equal(tb, http.StatusOK, res.status, "body: %s", res.body)
	require.Equal(tb, "true", res.header.Get("Switchboard-Duplicate"))
	require.JSONEq(tb, `{"event_id": "`+eventID+`", "duplicate": true}`, string(res.body))
}

// errorBody decodes a rejection's {"error": "..."}.
func errorBody(tb testing.TB, res response) string {
	tb.Helper()
	var got map[string]string
	require.NoError(tb, json.Unmarshal(res.body, &got), "body: %s", res.body)
	require.Len(tb, got, 1)
	return got["error"]
}

func sha256Key(body string) string {
	sum := sha256.Sum256([]byte(body))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// swRequest is a Standard Webhooks request for body, signed with secret as
// message id sent at ts.
func swRequest(tb testing.TB, secret, id string, ts time.Time, body string) request {
	tb.Helper()
	sw, err := signature.NewStandardWebhooks(secret, 0)
	require.NoError(tb, err)
	return jsonRequest("standard", body).
		with("webhook-id", id).
		with("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10)).
		with("webhook-signature", sw.Sign(id, ts, []byte(body)))
}

// vectorRequest is the specification's published request, unchanged.
func vectorRequest() request {
	return jsonRequest("standard", swBody).
		with("webhook-id", swMsgID).
		with("webhook-timestamp", "1614265330").
		with("webhook-signature", swSignature)
}

func TestRejections(t *testing.T) {
	t.Parallel()

	over := `{"pad": "` + strings.Repeat("x", 60) + `"}` // 71 bytes, max_body is 64
	signedHex := jsonRequest("hmac_hex", `{"a":1}`).with("X-Signature", hexSigner.Sign([]byte(`{"a":1}`)))
	otherHex := signature.HMAC{Header: "X-Signature", Secret: []byte("not-the-secret")}
	otherB64 := signature.HMAC{Header: "X-Hub-Signature-256", Secret: []byte("not-the-secret"), Encoding: "base64", Prefix: "sha256="}

	tests := []struct {
		name       string
		req        request
		wantStatus int
		// wantReason is a substring of the public reason, which the
		// response body and the log line both carry.
		wantReason string
	}{
		{
			name:       "unknown source",
			req:        jsonRequest("nope", `{}`),
			wantStatus: http.StatusNotFound,
			wantReason: `unknown source "nope"`,
		},
		{
			name:       "body over max_body with content length",
			req:        jsonRequest("plain", over),
			wantStatus: http.StatusRequestEntityTooLarge,
			wantReason: "body larger than 64 bytes",
		},
		{
			name:       "body over max_body chunked",
			req:        request{source: "plain", contentType: "application/json", body: over, chunked: true},
			wantStatus: http.StatusRequestEntityTooLarge,
			wantReason: "body larger than 64 bytes",
		},
		{
			name:       "text content type",
			req:        request{source: "plain", contentType: "text/plain", body: `{}`},
			wantStatus: http.StatusUnsupportedMediaType,
			wantReason: `content type "text/plain" not accepted; this source takes application/json`,
		},
		{
			name:       "no content type",
			req:        request{source: "plain", body: `{}`},
			wantStatus: http.StatusUnsupportedMediaType,
			wantReason: "this source takes application/json",
		},
		{
			name:       "form body to a json source",
			req:        request{source: "plain", contentType: "application/x-www-form-urlencoded", body: "a=1"},
			wantStatus: http.StatusUnsupportedMediaType,
			wantReason: "this source takes application/json",
		},
		{
			name:       "json body to a form source",
			req:        jsonRequest("form", `{"a":1}`),
			wantStatus: http.StatusUnsupportedMediaType,
			wantReason: "this source takes application/x-www-form-urlencoded",
		},
		{
			name:       "truncated json",
			req:        jsonRequest("plain", `{"a":`),
			wantStatus: http.StatusBadRequest,
			wantReason: "malformed JSON: unexpected EOF",
		},
		{
			name:       "json with trailing data",
			req:        jsonRequest("plain", `{} {}`),
			wantStatus: http.StatusBadRequest,
			wantReason: "malformed JSON: unexpected data after the JSON value",
		},
		{
			name:       "json syntax error",
			req:        jsonRequest("plain", `{"a": tru}`),
			wantStatus: http.StatusBadRequest,
			wantReason: "malformed JSON: invalid character",
		},
		{
			name:       "malformed form body",
			req:        request{source: "form", contentType: "application/x-www-form-urlencoded", body: "a=%zz"},
			wantStatus: http.StatusBadRequest,
			wantReason: "malformed form body",
		},
		{
			name:       "key expression is null",
			req:        jsonRequest("keyed", `{"name": "no id"}`),
			wantStatus: http.StatusBadRequest,
			wantReason: "idempotency key: .id is null for this payload",
		},
		{
			name:       "key expression is empty",
			req:        jsonRequest("keyed", `{"id": "  "}`),
			wantStatus: http.StatusBadRequest,
			wantReason: "idempotency key: .id is empty for this payload",
		},
		{
			name:       "hmac hex missing",
			req:        jsonRequest("hmac_hex", `{"a":1}`),
			wantStatus: http.StatusUnauthorized,
			wantReason: "signature verification failed: hmac: header X-Signature: signature missing",
		},
		{
			name:       "hmac hex wrong secret",
			req:        jsonRequest("hmac_hex", `{"a":1}`).with("X-Signature", otherHex.Sign([]byte(`{"a":1}`))),
			wantStatus: http.StatusUnauthorized,
			wantReason: "signature mismatch",
		},
		{
			name:       "hmac hex body tampered",
			req:        request{source: "hmac_hex", contentType: "application/json", body: `{"a":2}`, header: signedHex.header},
			wantStatus: http.StatusUnauthorized,
			wantReason: "signature mismatch",
		},
		{
			name:       "hmac hex not hex",
			req:        jsonRequest("hmac_hex", `{"a":1}`).with("X-Signature", "zz"+hexSigner.Sign([]byte(`{"a":1}`))[2:]),
			wantStatus: http.StatusUnauthorized,
			wantReason: "signature malformed",
		},
		{
			name:       "hmac base64 without its prefix",
			req:        jsonRequest("hmac_b64", `{"a":1}`).with("X-Hub-Signature-256", strings.TrimPrefix(base64Signer.Sign([]byte(`{"a":1}`)), "sha256=")),
			wantStatus: http.StatusUnauthorized,
			wantReason: `lacks prefix "sha256="`,
		},
		{
			name:       "hmac base64 wrong secret",
			req:        jsonRequest("hmac_b64", `{"a":1}`).with("X-Hub-Signature-256", otherB64.Sign([]byte(`{"a":1}`))),
			wantStatus: http.StatusUnauthorized,
			wantReason: "signature mismatch",
		},
		{
			name:       "hmac base64 sent as hex",
			req:        jsonRequest("hmac_b64", `{"a":1}`).with("X-Hub-Signature-256", "sha256="+hexSigner.Sign([]byte(`{"a":1}`))),
			wantStatus: http.StatusUnauthorized,
			wantReason: "signature mismatch",
		},
		{
			name:       "standard webhooks missing id",
			req:        jsonRequest("standard", swBody).with("webhook-timestamp", "1614265330").with("webhook-signature", swSignature),
			wantStatus: http.StatusUnauthorized,
			wantReason: "header webhook-id: signature missing",
		},
		{
			name:       "standard webhooks missing signature",
			req:        jsonRequest("standard", swBody).with("webhook-id", swMsgID).with("webhook-timestamp", "1614265330"),
			wantStatus: http.StatusUnauthorized,
			wantReason: "header webhook-signature: signature missing",
		},
		{
			name:       "standard webhooks expired",
			req:        swRequest(t, swSecret, swMsgID, swNow.Add(-10*time.Minute), swBody),
			wantStatus: http.StatusUnauthorized,
			wantReason: "signature timestamp outside tolerance",
		},
		{
			name:       "standard webhooks from the future",
			req:        swRequest(t, swSecret, swMsgID, swNow.Add(10*time.Minute), swBody),
			wantStatus: http.StatusUnauthorized,
			wantReason: "signature timestamp outside tolerance",
		},
		{
			name:       "standard webhooks wrong secret",
			req:        swRequest(t, otherSWSecret, swMsgID, swNow, swBody),
			wantStatus: http.StatusUnauthorized,
			wantReason: "signature mismatch",
		},
		{
			name:       "standard webhooks vector with another id",
			req:        vectorRequest().with("webhook-id", "msg_other"),
			wantStatus: http.StatusUnauthorized,
			wantReason: "signature mismatch",
		},
		{
			name:       "standard webhooks vector with another body",
			req:        request{source: "standard", contentType: "application/json", body: `{"test": 2432232315}`, header: vectorRequest().header},
			wantStatus: http.StatusUnauthorized,
			wantReason: "signature mismatch",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, options{})

			res := b.post(t, tt.req)
			require.Equal(t, tt.wantStatus, res.status, "body: %s", res.body)
			if tt.req.chunked {
				require.Equal(t, int32(1), b.unknownLength.Load(), "the body was sent chunked")
			}
			reason := errorBody(t, res)
			require.Contains(t, reason, tt.wantReason)
			require.Empty(t, b.events(t), "a rejected request stores nothing")
			label := tt.req.source
			if tt.wantStatus == http.StatusNotFound {
				label = metrics.UnknownSource
			}
			require.Equal(t, map[string]float64{
				received(label, outcomeOf[tt.wantStatus]): 1,
			}, b.series(t, "switchboard_events_received_total"), "each answer counts one outcome")
			require.Empty(t, b.series(t, "switchboard_runs_total"))
			require.Empty(t, b.series(t, "switchboard_delivery_delay_seconds_count"), "only verified timestamps are observed")

			lines := b.logLines(t)
			require.Len(t, lines, 1)
			line := lines[0]
			require.Equal(t, "webhook rejected", line["msg"])
			require.Equal(t, "WARN", line["level"])
			require.Equal(t, tt.req.source, line["source"])
			require.Equal(t, reason, line["reason"])
			require.Equal(t, float64(tt.wantStatus), line["status"])

			log := b.logs.String()
			for _, secret := range []string{hmacSecret, swSecret, strings.TrimPrefix(swSecret, "whsec_")} {
				require.NotContains(t, log, secret)
				require.NotContains(t, string(res.body), secret)
			}
		})
	}
}

func TestAccepted(t *testing.T) {
	t.Parallel()

	exact := `{"pad": "` + strings.Repeat("x", 53) + `"}` // exactly 64 bytes
	require.Len(t, exact, 64)
	formBody := "name=Ann+Lee&tag=a&tag=b&empty="

	tests := []struct {
		name        string
		req         request
		wantKey     string
		wantPayload string
		// wantDelay is the delivery delay observed (nil: none).
		wantDelay *time.Duration
	}{
		{
			name:        "standard webhooks published vector keyed by webhook-id",
			req:         vectorRequest(),
			wantKey:     swMsgID,
			wantPayload: swBody,
			wantDelay:   new(time.Duration(0)),
		},
		{
			name:        "standard webhooks signed now",
			req:         swRequest(t, swSecret, "msg_2", swNow, `{"n":1}`),
			wantKey:     "msg_2",
			wantPayload: `{"n":1}`,
			wantDelay:   new(time.Duration(0)),
		},
		{
			name:        "standard webhooks within tolerance",
			req:         swRequest(t, swSecret, "msg_3", swNow.Add(-4*time.Minute), `{"n":1}`),
			wantKey:     "msg_3",
			wantPayload: `{"n":1}`,
			wantDelay:   new(4 * time.Minute),
		},
		{
			name:        "hmac hex",
			req:         jsonRequest("hmac_hex", `{"a":1}`).with("X-Signature", hexSigner.Sign([]byte(`{"a":1}`))),
			wantKey:     sha256Key(`{"a":1}`),
			wantPayload: `{"a":1}`,
		},
		{
			name:        "hmac base64 with prefix",
			req:         jsonRequest("hmac_b64", `{"a":1}`).with("X-Hub-Signature-256", base64Signer.Sign([]byte(`{"a":1}`))),
			wantKey:     sha256Key(`{"a":1}`),
			wantPayload: `{"a":1}`,
		},
		{
			name:        "form body becomes an object, repeated keys an array",
			req:         request{source: "form", contentType: "application/x-www-form-urlencoded", body: formBody},
			wantKey:     sha256Key(formBody),
			wantPayload: `{"name": "Ann Lee", "tag": ["a", "b"], "empty": ""}`,
		},
		{
			name:        "form content type with charset",
			req:         request{source: "form", contentType: "application/x-www-form-urlencoded; charset=utf-8", body: "a=1"},
			wantKey:     sha256Key("a=1"),
			wantPayload: `{"a": "1"}`,
		},
		{
			name:        "json content type with charset",
			req:         request{source: "plain", contentType: "application/json; charset=utf-8", body: `[1,2]`},
			wantKey:     sha256Key(`[1,2]`),
			wantPayload: `[1,2]`,
		},
		{
			name:        "body of exactly max_body",
			req:         jsonRequest("plain", exact),
			wantKey:     sha256Key(exact),
			wantPayload: exact,
		},
		{
			name:        "body of exactly max_body chunked",
			req:         request{source: "plain", contentType: "application/json", body: exact, chunked: true},
			wantKey:     sha256Key(exact),
			wantPayload: exact,
		},
		{
			name:        "numeric key",
			req:         jsonRequest("keyed", `{"id": 12345678901234567890}`),
			wantKey:     "12345678901234567890",
			wantPayload: `{"id": 12345678901234567890}`,
		},
		{
			name:        "string key",
			req:         jsonRequest("keyed", `{"id": "abc"}`),
			wantKey:     "abc",
			wantPayload: `{"id": "abc"}`,
		},
		{
			name:        "object key",
			req:         jsonRequest("keyed", `{"id": {"b": 1}}`),
			wantKey:     `{"b":1}`,
			wantPayload: `{"id": {"b": 1}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, options{})

			id := requireAccepted(t, b.post(t, tt.req))
			if tt.req.chunked {
				require.Equal(t, int32(1), b.unknownLength.Load(), "the body was sent chunked")
			}
			evs := b.events(t)
			require.Len(t, evs, 1)
			require.Equal(t, id, evs[0].ID)
			require.Equal(t, tt.req.source, evs[0].Source)
			require.Equal(t, tt.wantKey, evs[0].Key)
			require.JSONEq(t, tt.wantPayload, string(evs[0].Payload))
			runs := b.runs(t, id)
			require.Len(t, runs, 1)
			require.Equal(t, tt.req.source, runs[0].Flow)
			require.Equal(t, store.RunPending, runs[0].State)
			require.Empty(t, b.logs.String(), "accepted requests are not logged as rejections")
			require.Equal(t, map[string]float64{
				received(tt.req.source, metrics.OutcomeAccepted): 1,
			}, b.series(t, "switchboard_events_received_total"))
			require.Equal(t, map[string]float64{
				fmt.Sprintf(`switchboard_runs_total{flow=%q,state="created"}`, tt.req.source): 1,
			}, b.series(t, "switchboard_runs_total"))
			// Standard Webhooks sign a timestamp: receipt minus it is the
			// delivery delay. The other schemes have none to observe.
			wantDelay := map[string]float64{}
			if tt.wantDelay != nil {
				wantDelay[`switchboard_delivery_delay_seconds_count{source="standard"}`] = 1
				wantDelay[`switchboard_delivery_delay_seconds_sum{source="standard"}`] = tt.wantDelay.Seconds()
			}
			require.Equal(t, wantDelay, b.series(t, "switchboard_delivery_delay_seconds_count", "switchboard_delivery_delay_seconds_sum"))
		})
	}
}

func TestDuplicates(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name          string
		first, second request
		// wantDuplicate is false when the second request is a new event.
		wantDuplicate bool
	}{
		{
			name:          "same body, default key",
			first:         jsonRequest("plain", `{"a":1}`),
			second:        jsonRequest("plain", `{"a":1}`),
			wantDuplicate: true,
		},
		{
			name:   "different body, default key",
			first:  jsonRequest("plain", `{"a":1}`),
			second: jsonRequest("plain", `{"a": 1}`),
		},
		{
			name:          "same id, different body, key expression",
			first:         jsonRequest("keyed", `{"id": 7, "v": 1}`),
			second:        jsonRequest("keyed", `{"id": 7, "v": 2}`),
			wantDuplicate: true,
		},
		{
			name:   "different id, key expression",
			first:  jsonRequest("keyed", `{"id": 7}`),
			second: jsonRequest("keyed", `{"id": 8}`),
		},
		{
			name:          "same webhook-id resent later",
			first:         vectorRequest(),
			second:        swRequest(t, swSecret, swMsgID, swNow.Add(time.Minute), `{"test": 2432232314, "retry": true}`),
			wantDuplicate: true,
		},
		{
			name:          "same form body",
			first:         request{source: "form", contentType: "application/x-www-form-urlencoded", body: "a=1&a=2"},
			second:        request{source: "form", contentType: "application/x-www-form-urlencoded", body: "a=1&a=2"},
			wantDuplicate: true,
		},
		{
			name:   "same key, other source",
			first:  jsonRequest("plain", `{"id":1}`),
			second: jsonRequest("gated", `{"id":1}`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, options{})

			id := requireAccepted(t, b.post(t, tt.first))
			firstPayload := string(b.events(t)[0].Payload)
			res := b.post(t, tt.second)
			if !tt.wantDuplicate {
				require.NotEqual(t, id, requireAccepted(t, res))
				require.Len(t, b.events(t), 2)
				want := map[string]float64{received(tt.first.source, metrics.OutcomeAccepted): 1}
				want[received(tt.second.source, metrics.OutcomeAccepted)]++
				require.Equal(t, want, b.series(t, "switchboard_events_received_total"))
				return
			}
			requireDuplicate(t, res, id)
			require.Equal(t, map[string]float64{
				received(tt.first.source, metrics.OutcomeAccepted):  1,
				received(tt.first.source, metrics.OutcomeDuplicate): 1,
			}, b.series(t, "switchboard_events_received_total"))
			require.Equal(t, map[string]float64{
				fmt.Sprintf(`switchboard_runs_total{flow=%q,state="created"}`, tt.first.source): 1,
			}, b.series(t, "switchboard_runs_total"), "a duplicate creates no run")
			evs := b.events(t)
			require.Len(t, evs, 1)
			require.Equal(t, firstPayload, string(evs[0].Payload), "the first payload is kept")
			require.Len(t, b.runs(t, id), 1, "a duplicate starts no run")
		})
	}
}

func TestWhenCondition(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		body     string
		wantRuns int
	}{
		{name: "true starts the flow", body: `{"go": true}`, wantRuns: 1},
		{name: "false stores the event only", body: `{"go": false}`, wantRuns: 0},
		{name: "absent field stores the event only", body: `{}`, wantRuns: 0},
		{name: "truthy but not true stores the event only", body: `{"go": 1}`, wantRuns: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, options{})

			id := requireAccepted(t, b.post(t, jsonRequest("gated", tt.body)))
			evs := b.events(t)
			require.Len(t, evs, 1)
			require.Equal(t, id, evs[0].ID)
			require.Len(t, b.runs(t, id), tt.wantRuns)
		})
	}
}

// TestKeyCutOffIsRetriable: a key expression cut off by the evaluation
// timeout is no fault of the body: 503 with Retry-After, so the sender
// sends again, not 400, which tells it to drop the event.
func TestKeyCutOffIsRetriable(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	res := b.post(t, jsonRequest("slow_key", `{"id":1}`))
	require.Equal(t, http.StatusServiceUnavailable, res.status, "body: %s", res.body)
	require.Equal(t, "1", res.header.Get("Retry-After"))
	require.Equal(t, "event not stored; retry later", errorBody(t, res))
	require.Empty(t, b.events(t))
	lines := b.logLines(t)
	require.Len(t, lines, 1)
	require.Equal(t, "ERROR", lines[0]["level"])
	require.Contains(t, lines[0]["error"], "took longer than")
}

// TestKeyErrorHidesSecrets: the error of a key expression that holds a
// ${NAME} value names the expression as written and not the values jq
// met, in the 400 answer and in the log (jq quotes a long value cut short,
// which no replacement of the whole value would catch), also through a
// YAML alias; the key itself works.
func TestKeyErrorHidesSecrets(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	for _, source := range []string{"salted", "aliased"} {
		res := b.post(t, jsonRequest(source, `{"id":5}`))
		require.Equal(t, http.StatusBadRequest, res.status)
		require.Contains(t, errorBody(t, res),
			`jq "\"${KEY_SALT}:\" + .id": cannot add (the values are not shown: the expression holds ${...} values)`)
		require.NotContains(t, string(res.body), keySalt[:12], source)
	}
	logs := b.logs.String()
	require.Contains(t, logs, "${KEY_SALT}")
	require.NotContains(t, logs, keySalt[:12])

	requireAccepted(t, b.post(t, jsonRequest("salted", `{"id":"5"}`)))
	evs := b.events(t)
	require.Len(t, evs, 1)
	require.Equal(t, keySalt+":5", evs[0].Key)
}

func TestConcurrentIdenticalPosts(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})

	const n = 50
	req := jsonRequest("plain", `{"lead": "same"}`)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex // guards the slices below
		ress []response
		errs []error
	)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			res, err := b.do(t.Context(), req)
			mu.Lock()
			defer mu.Unlock()
			ress = append(ress, res)
			errs = append(errs, err)
		})
	}
	close(start)
	wg.Wait()
	require.NoError(t, errors.Join(errs...))

	evs := b.events(t)
	require.Len(t, evs, 1)
	eventID := evs[0].ID
	accepted := 0
	for _, res := range ress {
		if res.status == http.StatusAccepted {
			accepted++
			require.Equal(t, eventID, requireAccepted(t, res))
			continue
		}
		requireDuplicate(t, res, eventID)
	}
	require.Equal(t, 1, accepted)
	runs, err := b.store.ListRuns(t.Context(), store.ListRunsParams{})
	require.NoError(t, err)
	require.Len(t, runs, 1)
}

// failingInserter is a store that cannot commit.
type failingInserter struct{}

func (failingInserter) InsertEvents(context.Context, []store.NewEvent) ([]store.InsertResult, error) {
	return nil, errors.New("disk I/O error")
}

// overloaded is an engine whose commit queue is always full.
type overloaded struct{}

func (overloaded) Accept(context.Context, engine.Event) (engine.Accepted, error) {
	return engine.Accepted{}, engine.ErrOverloaded
}

func TestUnavailable(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name           string
		opts           options
		closeStore     bool
		wantReason     string
		wantRetryAfter string
		wantLevel      string
	}{
		{
			name:           "store closed",
			closeStore:     true,
			wantReason:     "event not stored; retry later",
			wantRetryAfter: "1",
			wantLevel:      "ERROR",
		},
		{
			name:           "store cannot commit",
			opts:           options{inserter: failingInserter{}},
			wantReason:     "event not stored; retry later",
			wantRetryAfter: "1",
			wantLevel:      "ERROR",
		},
		{
			name:           "commit queue full",
			opts:           options{acceptor: overloaded{}},
			wantReason:     "overloaded; retry later",
			wantRetryAfter: "2",
			wantLevel:      "ERROR",
		},
		{
			name:           "draining",
			opts:           options{draining: func() bool { return true }},
			wantReason:     "shutting down; retry on another node or later",
			wantRetryAfter: "5",
			wantLevel:      "ERROR",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.opts)
			if tt.closeStore {
				require.NoError(t, b.store.Close())
			}

			for _, req := range []request{jsonRequest("plain", `{"a":1}`), vectorRequest()} {
				res := b.post(t, req)
				require.Equal(t, http.StatusServiceUnavailable, res.status, "body: %s", res.body)
				require.Equal(t, tt.wantRetryAfter, res.header.Get("Retry-After"))
				require.Equal(t, tt.wantReason, errorBody(t, res))
			}

			lines := b.logLines(t)
			require.Len(t, lines, 2)
			for _, line := range lines {
				require.Equal(t, tt.wantLevel, line["level"])
				require.Equal(t, tt.wantReason, line["reason"])
			}
			require.Equal(t, map[string]float64{
				received("plain", metrics.OutcomeUnavailable):    1,
				received("standard", metrics.OutcomeUnavailable): 1,
			}, b.series(t, "switchboard_events_received_total"))
			require.Empty(t, b.series(t, "switchboard_runs_total"), "nothing was committed")

			st, err := sqlite.Open(t.Context(), b.dbPath)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, st.Close()) })
			evs, err := st.ListEvents(t.Context(), store.ListEventsParams{})
			require.NoError(t, err)
			require.Empty(t, evs)
		})
	}
}

// poisoner passes events to the real store, but an event whose payload
// says "poison" gets a lineage outcome the store's CHECK constraint
// refuses: the database itself refuses it. Its first call waits for
// release, so that the events posted meanwhile share the next batch.
type poisoner struct {
	engine.Inserter
	first         sync.Once
	held, release chan struct{}
}

func (p *poisoner) InsertEvents(ctx context.Context, evs []store.NewEvent) ([]store.InsertResult, error) {
	p.first.Do(func() { close(p.held); <-p.release })
	evs = slices.Clone(evs)
	for i, e := range evs {
		if strings.Contains(string(e.Payload), "poison") {
			evs[i].Lineage = store.Lineage{Outcome: "bogus", Hop: 1, Chain: "x", ParentRun: "run_x"}
		}
	}
	return p.Inserter.InsertEvents(ctx, evs)
}

// TestRefusedEventFailsAlone: an event the database refuses, in a group
// commit with others, fails alone with a 500 and the database's reason in
// the log; the events that shared its batch are stored and acknowledged.
// (Its sender would retry it: were the whole batch failed, every retry
// would fail the events that happen to share its commit.)
func TestRefusedEventFailsAlone(t *testing.T) {
	t.Parallel()
	p := &poisoner{held: make(chan struct{}), release: make(chan struct{})}
	b := setup(t, options{wrap: func(st engine.Inserter) engine.Inserter { p.Inserter = st; return p }})

	var wg sync.WaitGroup
	wg.Go(func() { requireAccepted(t, b.post(t, jsonRequest("plain", `{"n":"held"}`))) })
	<-p.held
	results := make([]response, 11)
	for i := range results {
		body := fmt.Sprintf(`{"n":%d}`, i)
		if i == 5 {
			body = `{"n":"poison"}`
		}
		wg.Go(func() { results[i] = b.post(t, jsonRequest("plain", body)) })
	}
	require.Eventually(t, func() bool { return b.eng.Pending() == 11 }, 10*time.Second, time.Millisecond)
	close(p.release)
	wg.Wait()

	for i, res := range results {
		if i == 5 {
			require.Equal(t, http.StatusInternalServerError, res.status, "body: %s", res.body)
			require.Equal(t, "event not stored: the database refused it (see the server log)", errorBody(t, res))
			require.Empty(t, res.header.Get("Retry-After"))
			continue
		}
		requireAccepted(t, res)
	}
	require.Len(t, b.events(t), 11, "the held event and the ten that shared the poisoned batch")
	lines := b.logLines(t)
	require.Len(t, lines, 1)
	require.Equal(t, "ERROR", lines[0]["level"])
	require.Contains(t, lines[0]["error"], "CHECK constraint failed")
}

func TestStoreErrorIsLoggedNotAnswered(t *testing.T) {
	t.Parallel()
	b := setup(t, options{inserter: failingInserter{}})

	res := b.post(t, jsonRequest("plain", `{"a":1}`))
	require.Equal(t, http.StatusServiceUnavailable, res.status)
	require.NotContains(t, string(res.body), "disk I/O error", "clients never see internal errors")
	lines := b.logLines(t)
	require.Len(t, lines, 1)
	require.Contains(t, lines[0]["error"], "disk I/O error")
	require.Equal(t, "plain", lines[0]["source"])
}
