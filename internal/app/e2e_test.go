package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/ingest"
	"github.com/switchboard-dev/switchboard/internal/signature"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// e2eSecret signs the webhooks of the end-to-end tests.
const e2eSecret = "e2e-signing-secret"

// signer produces the X-Signature header the e2e configs verify.
var signer = signature.HMAC{Header: "X-Signature", Secret: []byte(e2eSecret), Prefix: "sha256="}

// deliverConfig is one signed source and a one-step flow that posts the
// event's id and mode to the downstream, which answers according to mode.
const deliverConfig = `
version: 1
store: sqlite:sb.db
workers: 4
retry: { base: 10ms, cap: 5s, attempts: 5 }
systems:
  downstream:
    kind: http
    base_url: ${DOWNSTREAM_URL}
    timeout: 5s
sources:
  orders:
    webhook:
      verify: { scheme: hmac-sha256, header: X-Signature, prefix: "sha256=", secret: "${E2E_SECRET}" }
    key: .id
flows:
  deliver:
    on: orders
    steps:
      - id: post
        do: downstream.request
        with:
          method: '"POST"'
          path: '"/deliver"'
          body: '{id: .id, mode: .mode}'
`

// TestEndToEndDeliveryOutcomes runs the whole server on a real SQLite file
// against a real HTTP downstream and checks each delivery outcome: success,
// transient failures retried (503, 429 with Retry-After, a dropped
// connection), and a permanent 400 dead-lettered and announced.
func TestEndToEndDeliveryOutcomes(t *testing.T) {
	t.Parallel()

	// answer is what the downstream does with the n-th request (0-based) for
	// an event in each mode. Status 0 drops the connection without a response.
	answer := func(body map[string]any, earlier []downstreamRequest) downstreamReply {
		n := len(earlier)
		switch body["mode"] {
		case "ok":
			return downstreamReply{Status: http.StatusOK}
		case "flaky":
			if n < 2 {
				return downstreamReply{Status: http.StatusServiceUnavailable}
			}
			return downstreamReply{Status: http.StatusOK}
		case "ratelimited":
			if n == 0 {
				return downstreamReply{Status: http.StatusTooManyRequests, RetryAfter: "2"}
			}
			return downstreamReply{Status: http.StatusOK}
		case "bad":
			return downstreamReply{Status: http.StatusBadRequest, Body: map[string]any{"error": "mode bad is not accepted"}}
		case "reset":
			if n == 0 {
				return downstreamReply{Status: 0}
			}
			return downstreamReply{Status: http.StatusOK}
		}
		return downstreamReply{Status: http.StatusUnprocessableEntity}
	}
	down := newDownstream(t, 0, answer)
	dead := &deadRecorder{}
	reports := &reportRecorder{}
	ts := startServer(t, deliverConfig, map[string]string{"DOWNSTREAM_URL": down.URL, "E2E_SECRET": e2eSecret},
		app.Options{Notifier: dead, Observe: reports.observe, PollInterval: 20 * time.Millisecond})

	type outcome struct {
		state store.RunState
		// attempts are the acceptable "outcome/status" sequences of the run's
		// attempts.
		attempts [][]string
		// requests are the statuses the downstream answered, in order (0: the
		// connection was dropped).
		requests []int
	}
	want := map[string]outcome{
		"ok": {store.RunSucceeded, [][]string{{"succeeded/200"}}, []int{200}},
		"flaky": {store.RunSucceeded, [][]string{{"retry/503", "retry/503", "succeeded/200"}},
			[]int{503, 503, 200}},
		"ratelimited": {store.RunSucceeded, [][]string{{"retry/429", "succeeded/200"}}, []int{429, 200}},
		"bad":         {store.RunDead, [][]string{{"dead/400"}}, []int{400}},
		// net/http resends a request carrying an Idempotency-Key by itself when
		// a reused keep-alive connection breaks before the response, so the
		// dropped connection is either an attempt of its own (status 0) or
		// absorbed into the one successful attempt. The downstream sees two
		// requests with the same key either way.
		"reset": {store.RunSucceeded, [][]string{{"retry/0", "succeeded/200"}, {"succeeded/200"}}, []int{0, 200}},
	}

	eventIDs := map[string]string{} // mode -> stored event ID
	for _, mode := range slices.Sorted(maps.Keys(want)) {
		res := ts.post(t, "orders", fmt.Sprintf(`{"id":"order-%s","mode":%q}`, mode, mode), true)
		require.Equal(t, http.StatusAccepted, res.Status, "mode %s: %s", mode, res.Raw)
		require.False(t, res.Body.Duplicate)
		require.NotEmpty(t, res.Body.EventID)
		eventIDs[mode] = res.Body.EventID
	}

	// Wait until every run is terminal and the dead one has been announced.
	require.Eventually(t, func() bool {
		runs, err := ts.Server.Store.ListRuns(t.Context(), store.ListRunsParams{Limit: 100})
		if err != nil || len(runs) != len(want) {
			return false
		}
		for _, r := range runs {
			if r.State != store.RunSucceeded && r.State != store.RunDead {
				return false
			}
		}
		return dead.len() == 1
	}, 20*time.Second, 20*time.Millisecond, "runs did not all finish")

	runs, err := ts.Server.Store.ListRuns(t.Context(), store.ListRunsParams{Limit: 100})
	require.NoError(t, err)
	runByEvent := map[string]store.Run{}
	for _, r := range runs {
		runByEvent[r.EventID] = r
	}
	deadRuns, err := ts.Server.Store.ListRuns(t.Context(), store.ListRunsParams{State: store.RunDead, Limit: 100})
	require.NoError(t, err)
	require.Len(t, deadRuns, 1)
	require.Equal(t, eventIDs["bad"], deadRuns[0].EventID)
	require.Contains(t, deadRuns[0].LastError, "400")

	seenKeys := map[string]string{} // Idempotency-Key -> mode
	for mode, w := range want {
		eventKey := "order-" + mode
		run, ok := runByEvent[eventIDs[mode]]
		require.True(t, ok, "mode %s: no run", mode)
		require.Equal(t, w.state, run.State, "mode %s: last error %q", mode, run.LastError)

		attempts, err := ts.Server.Store.ListAttempts(t.Context(), run.ID)
		require.NoError(t, err)
		var got []string
		for i, a := range attempts {
			require.Equal(t, i+1, a.Number, "mode %s: attempt numbers", mode)
			require.Equal(t, "post", a.StepID)
			require.Equal(t, "downstream", a.System)
			got = append(got, fmt.Sprintf("%s/%d", a.Outcome, a.Status))
		}
		require.Contains(t, w.attempts, got, "mode %s: attempts", mode)

		// Every request of one event carries the same key, the one derived
		// from (source, event key, flow, step); the downstream saw exactly
		// the expected answers, so one 2xx per delivered event, none for bad.
		key := delivery.IdempotencyKey("orders", eventKey, "deliver", "post", 0)
		reqs := down.requests(key)
		var statuses []int
		for _, r := range reqs {
			require.Equal(t, eventKey, r.Body["id"], "mode %s: a request under this key came from another event", mode)
			statuses = append(statuses, r.Status)
		}
		require.Equal(t, w.requests, statuses, "mode %s: downstream answers", mode)
		require.NotContains(t, seenKeys, key, "modes %s and %s share a key", mode, seenKeys[key])
		seenKeys[key] = mode
	}
	require.ElementsMatch(t, slices.Collect(maps.Keys(seenKeys)), down.keys(), "the downstream saw requests under unexpected keys")

	// Retry-After: 2 was honoured: the retry came at least 2 s after the 429,
	// and the executor scheduled exactly that wait.
	rl := down.requests(delivery.IdempotencyKey("orders", "order-ratelimited", "deliver", "post", 0))
	require.Len(t, rl, 2)
	require.GreaterOrEqual(t, rl[1].At.Sub(rl[0].At), 2*time.Second)
	var rlWait []time.Duration
	for _, r := range reports.all() {
		if r.EventID == eventIDs["ratelimited"] && r.Outcome == store.AttemptRetry {
			rlWait = append(rlWait, r.Wait)
		}
	}
	require.Equal(t, []time.Duration{2 * time.Second}, rlWait)

	// The dead run was announced once, with the remote's reason.
	d := dead.all()
	require.Len(t, d, 1)
	require.Equal(t, eventIDs["bad"], d[0].EventID)
	require.Equal(t, deadRuns[0].ID, d[0].RunID)
	require.Equal(t, "orders", d[0].Source)
	require.Equal(t, "deliver", d[0].Flow)
	require.Equal(t, "post", d[0].Step)
	require.Equal(t, "downstream", d[0].System)
	require.Equal(t, 1, d[0].Attempts)
	require.Contains(t, d[0].Error, "400")
}

// twoStepConfig creates a contact in a CRM, then posts a message to chat
// that carries the contact id from the CRM's response.
const twoStepConfig = `
version: 1
store: sqlite:sb.db
retry: { base: 10ms, cap: 1s, attempts: 5 }
systems:
  crm:  { kind: http, base_url: "${CRM_URL}" }
  chat: { kind: http, base_url: "${CHAT_URL}" }
sources:
  signup:
    webhook:
      verify: { scheme: hmac-sha256, header: X-Signature, prefix: "sha256=", secret: "${E2E_SECRET}" }
    key: .id
flows:
  welcome:
    on: signup
    steps:
      - id: contact
        do: crm.request
        with:
          method: '"POST"'
          path: '"/contacts"'
          body: '{email: .email}'
      - id: greet
        do: chat.request
        with:
          path: '"/messages"'
          body: '{contact: $steps.contact.id, text: "Welcome \(.name)", event: $event.key}'
`

// TestEndToEndStepOutputsAndDuplicates checks that a later step reads an
// earlier step's response ($steps), that a webhook posted twice is answered
// as a duplicate and delivered once, and that a bad signature stores nothing.
func TestEndToEndStepOutputsAndDuplicates(t *testing.T) {
	t.Parallel()

	var (
		mu        sync.Mutex
		contactOf = map[string]string{} // email -> contact id the CRM made
	)
	crm := newDownstream(t, 0, func(body map[string]any, earlier []downstreamRequest) downstreamReply {
		mu.Lock()
		defer mu.Unlock()
		email, _ := body["email"].(string)
		id, ok := contactOf[email]
		if !ok {
			id = fmt.Sprintf("c_%d", len(contactOf)+1)
			contactOf[email] = id
		}
		return downstreamReply{Status: http.StatusCreated, Body: map[string]any{"id": id, "email": email}}
	})
	chat := newDownstream(t, 0, func(map[string]any, []downstreamRequest) downstreamReply {
		return downstreamReply{Status: http.StatusOK, Body: map[string]any{"ok": true}}
	})
	ts := startServer(t, twoStepConfig,
		map[string]string{"CRM_URL": crm.URL, "CHAT_URL": chat.URL, "E2E_SECRET": e2eSecret},
		app.Options{PollInterval: 20 * time.Millisecond})

	first := ts.post(t, "signup", `{"id":"u1","email":"ada@example.com","name":"Ada"}`, true)
	require.Equal(t, http.StatusAccepted, first.Status, first.Raw)
	require.False(t, first.Body.Duplicate)
	require.Empty(t, first.Header.Get("Switchboard-Duplicate"))

	// The same event again (same .id, even with another body) is a duplicate.
	dup := ts.post(t, "signup", `{"id":"u1","email":"ada@example.com","name":"Ada L."}`, true)
	require.Equal(t, http.StatusOK, dup.Status, dup.Raw)
	require.Equal(t, "true", dup.Header.Get("Switchboard-Duplicate"))
	require.True(t, dup.Body.Duplicate)
	require.Equal(t, first.Body.EventID, dup.Body.EventID)

	// A forged signature is refused before anything is stored.
	forged := ts.post(t, "signup", `{"id":"u3","email":"eve@example.com","name":"Eve"}`, false)
	require.Equal(t, http.StatusUnauthorized, forged.Status, forged.Raw)

	// A later event works as a barrier: once it is delivered, a second
	// delivery of u1 would have had every chance to happen.
	second := ts.post(t, "signup", `{"id":"u2","email":"grace@example.com","name":"Grace"}`, true)
	require.Equal(t, http.StatusAccepted, second.Status, second.Raw)

	greetU1 := delivery.IdempotencyKey("signup", "u1", "welcome", "greet", 0)
	greetU2 := delivery.IdempotencyKey("signup", "u2", "welcome", "greet", 0)
	require.Eventually(t, func() bool {
		return len(chat.requests(greetU1)) > 0 && len(chat.requests(greetU2)) > 0
	}, 20*time.Second, 20*time.Millisecond, "the chat step was not delivered")
	require.Eventually(t, func() bool {
		runs, err := ts.Server.Store.ListRuns(t.Context(), store.ListRunsParams{State: store.RunSucceeded})
		return err == nil && len(runs) == 2
	}, 20*time.Second, 20*time.Millisecond, "the runs did not succeed")

	// Step 2 received the contact id from step 1's JSON response.
	for _, c := range []struct {
		name, key, email, text string
	}{
		{name: "u1", key: "u1", email: "ada@example.com", text: "Welcome Ada"},
		{name: "u2", key: "u2", email: "grace@example.com", text: "Welcome Grace"},
	} {
		crmReqs := crm.requests(delivery.IdempotencyKey("signup", c.key, "welcome", "contact", 0))
		require.Len(t, crmReqs, 1, "%s: CRM requests", c.name)
		require.Equal(t, c.email, crmReqs[0].Body["email"])
		chatReqs := chat.requests(delivery.IdempotencyKey("signup", c.key, "welcome", "greet", 0))
		require.Len(t, chatReqs, 1, "%s: chat requests", c.name)
		mu.Lock()
		contact := contactOf[c.email]
		mu.Unlock()
		require.NotEmpty(t, contact)
		require.Equal(t, map[string]any{"contact": contact, "text": c.text, "event": c.key}, chatReqs[0].Body, c.name)
	}
	require.Len(t, crm.keys(), 2)
	require.Len(t, chat.keys(), 2)

	// The store holds two events, one run each; the duplicate and the
	// forgery left nothing.
	events, err := ts.Server.Store.ListEvents(t.Context(), store.ListEventsParams{Limit: 100})
	require.NoError(t, err)
	var keys []string
	for _, e := range events {
		keys = append(keys, e.Key)
	}
	require.ElementsMatch(t, []string{"u1", "u2"}, keys)
	runs, err := ts.Server.Store.ListRuns(t.Context(), store.ListRunsParams{EventID: first.Body.EventID})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	outputs, err := ts.Server.Store.ListOutputs(t.Context(), runs[0].ID)
	require.NoError(t, err)
	// Only steps a later step may read are checkpointed; the last step's
	// response is kept with its attempt.
	require.Len(t, outputs, 1)
	require.Equal(t, "contact", outputs[0].StepID)
	mu.Lock()
	ada := contactOf["ada@example.com"]
	mu.Unlock()
	require.JSONEq(t, fmt.Sprintf(`{"id":%q,"email":"ada@example.com"}`, ada), string(outputs[0].Output))
}

// testServer is a Server serving on a loopback port for one test.
type testServer struct {
	URL    string
	Server *app.Server
}

// startServer compiles yamlText (with env as the environment), starts the
// server on a loopback port and stops it when the test ends, requiring a
// clean shutdown.
func startServer(t testing.TB, yamlText string, env map[string]string, opts app.Options) *testServer {
	t.Helper()
	return startServerStopping(t, yamlText, env, opts, func(err error) { require.NoError(t, err, "server shutdown") })
}

// startServerStopping is startServer with stopped checking the shutdown's
// error instead.
func startServerStopping(t testing.TB, yamlText string, env map[string]string, opts app.Options, stopped func(error)) *testServer {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "switchboard.yaml"), []byte(yamlText), func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	require.NoError(t, err)
	plan, err := app.Compile(cfg)
	require.NoError(t, err)
	srv, err := app.NewServer(t.Context(), plan, opts)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Store.Close()
		require.NoError(t, err)
	}
	done := make(chan error, 1)
	// t.Context() ends just before cleanups run: that starts the shutdown.
	go func() { done <- srv.Serve(t.Context(), ln) }()
	t.Cleanup(func() {
		select {
		case err := <-done:
			stopped(err)
		case <-time.After(30 * time.Second):
			require.FailNow(t, "server did not shut down within 30s")
		}
	})
	return &testServer{URL: "http://" + ln.Addr().String(), Server: srv}
}

// postResult is a webhook's answer.
type postResult struct {
	Status int
	Header http.Header
	Body   ingest.Response
	Raw    string
}

// post sends body as a webhook to source, signed correctly or, when sign is
// false, with a signature made with the wrong secret.
func (s *testServer) post(t testing.TB, source, body string, sign bool) postResult {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+"/hooks/"+source, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	sig := signer
	if !sign {
		sig.Secret = []byte("not-the-secret")
	}
	req.Header.Set(sig.Header, sig.Sign([]byte(body)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	res := postResult{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	if resp.StatusCode/100 == 2 {
		require.NoError(t, json.Unmarshal(raw, &res.Body), string(raw))
	}
	return res
}

// downstreamRequest is one request a downstream received.
type downstreamRequest struct {
	At time.Time
	// Body is the decoded JSON body; nil if it was not JSON.
	Body map[string]any
	// Status is what it was answered; 0 when the connection was dropped.
	Status int
}

// downstreamReply is how a downstream answers one request.
type downstreamReply struct {
	// Status 0 drops the connection without any response.
	Status     int
	RetryAfter string
	// Body is sent as JSON when not nil.
	Body any
}

// downstream is a real HTTP server standing in for an external system. It
// records every request by Idempotency-Key and lets respond decide each
// answer from the body and the earlier requests under the same key.
type downstream struct {
	URL     string
	delay   time.Duration
	respond func(body map[string]any, earlier []downstreamRequest) downstreamReply

	mu    sync.Mutex
	byKey map[string][]downstreamRequest
}

// newDownstream starts a downstream that waits delay before answering each
// request (a remote's latency); it is closed when the test ends.
func newDownstream(t testing.TB, delay time.Duration, respond func(map[string]any, []downstreamRequest) downstreamReply) *downstream {
	t.Helper()
	d := &downstream{delay: delay, respond: respond, byKey: map[string][]downstreamRequest{}}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	d.URL = srv.URL
	return d
}

func (d *downstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	key := r.Header.Get("Idempotency-Key")
	var body map[string]any
	raw, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(raw, &body)
	}
	d.mu.Lock()
	reply := downstreamReply{Status: http.StatusBadRequest, Body: map[string]any{"error": "body is not a JSON object"}}
	if err == nil {
		reply = d.respond(body, slices.Clone(d.byKey[key]))
	}
	d.byKey[key] = append(d.byKey[key], downstreamRequest{At: at, Body: body, Status: reply.Status})
	d.mu.Unlock()

	if d.delay > 0 {
		time.Sleep(d.delay)
	}
	if reply.Status == 0 {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(fmt.Sprintf("downstream: hijack: %v", err))
		}
		conn.Close()
		return
	}
	if reply.RetryAfter != "" {
		w.Header().Set("Retry-After", reply.RetryAfter)
	}
	if reply.Body == nil {
		w.WriteHeader(reply.Status)
		return
	}
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(reply.Body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(reply.Status)
	_, _ = w.Write(buf.Bytes())
}

// requests returns the requests received under key, oldest first.
func (d *downstream) requests(key string) []downstreamRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.byKey[key])
}

// keys returns every Idempotency-Key received.
func (d *downstream) keys() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.byKey))
	for k := range d.byKey {
		out = append(out, k)
	}
	return out
}

// snapshot returns a copy of every request by key.
func (d *downstream) snapshot() map[string][]downstreamRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string][]downstreamRequest, len(d.byKey))
	for k, v := range d.byKey {
		out[k] = slices.Clone(v)
	}
	return out
}

// deadRecorder is a delivery.Notifier that remembers dead runs.
type deadRecorder struct {
	mu   sync.Mutex
	runs []delivery.DeadRun
}

func (d *deadRecorder) RunDead(_ context.Context, r delivery.DeadRun) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.runs = append(d.runs, r)
}

func (d *deadRecorder) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.runs)
}

func (d *deadRecorder) all() []delivery.DeadRun {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.runs)
}

// reportRecorder collects the executor's attempt reports (Options.Observe).
type reportRecorder struct {
	mu      sync.Mutex
	reports []delivery.Report
}

func (r *reportRecorder) observe(rep delivery.Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, rep)
}

func (r *reportRecorder) all() []delivery.Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reports)
}
