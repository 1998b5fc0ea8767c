package ingest_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/signature"
)

// TestVendorSchemes posts webhooks signed as Stripe, GitHub, Shopify and
// Twilio sign them, through the real handler: each is accepted when signed
// with the source's secret and refused with 401 otherwise; GitHub's and
// Shopify's delivery ids are the default idempotency keys.
func TestVendorSchemes(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})

	stripe := signature.Stripe{Secret: "whsec_stripe_test_secret"}
	body := `{"id":"evt_1","type":"invoice.paid"}`
	ok := jsonRequest("stripe", body).with("Stripe-Signature", stripe.Sign(swNow, []byte(body)))
	requireAccepted(t, b.post(t, ok))
	old := jsonRequest("stripe", body).with("Stripe-Signature", stripe.Sign(swNow.Add(-10*time.Minute), []byte(body)))
	require.Equal(t, http.StatusUnauthorized, b.post(t, old).status, "a replayed old Stripe event")

	gh := signature.GitHub{Secret: "github-test-secret"}
	ghBody := `{"action":"opened"}`
	first := requireAccepted(t, b.post(t, jsonRequest("github", ghBody).
		with("X-Hub-Signature-256", gh.Sign([]byte(ghBody))).with("X-GitHub-Delivery", "d-1")))
	requireDuplicate(t, b.post(t, jsonRequest("github", ghBody).
		with("X-Hub-Signature-256", gh.Sign([]byte(ghBody))).with("X-GitHub-Delivery", "d-1")), first)
	requireDuplicate(t, b.post(t, jsonRequest("github", ghBody).
		with("X-Hub-Signature-256", gh.Sign([]byte(ghBody))).with("X-GitHub-Delivery", "attacker-2")), first) // another (unsigned) id: still a duplicate
	wrong := signature.GitHub{Secret: "not-it"}
	require.Equal(t, http.StatusUnauthorized, b.post(t, jsonRequest("github", ghBody).
		with("X-Hub-Signature-256", wrong.Sign([]byte(ghBody))).with("X-GitHub-Delivery", "d-2")).status)

	sh := signature.Shopify{Secret: "shopify-test-secret"}
	shBody := `{"id":820982911946154508}`
	shFirst := requireAccepted(t, b.post(t, jsonRequest("shopify", shBody).
		with("X-Shopify-Hmac-Sha256", sh.Sign([]byte(shBody))).with("X-Shopify-Webhook-Id", "w-1")))
	requireDuplicate(t, b.post(t, jsonRequest("shopify", shBody).
		with("X-Shopify-Hmac-Sha256", sh.Sign([]byte(shBody))).with("X-Shopify-Webhook-Id", "w-9")), shFirst)
	require.Equal(t, http.StatusUnauthorized, b.post(t, jsonRequest("shopify", shBody+" ").
		with("X-Shopify-Hmac-Sha256", sh.Sign([]byte(shBody))).with("X-Shopify-Webhook-Id", "w-2")).status, "tampered body")

	tw := signature.Twilio{AuthToken: "twilio-auth-token"}
	form := url.Values{"MessageSid": {"SM1"}, "From": {"+15550100"}, "Body": {"STOP"}}
	twReq := request{source: "twilio", contentType: "application/x-www-form-urlencoded", body: form.Encode()}
	requireAccepted(t, b.post(t, twReq.with("X-Twilio-Signature", tw.Sign(b.url+"/hooks/twilio", form))))
	require.Equal(t, http.StatusUnauthorized, b.post(t, twReq.with("X-Twilio-Signature", tw.Sign("https://elsewhere.example/hooks/twilio", form))).status,
		"a signature over another URL")
}

// TestUnstorableKeysAreHashed: a key a sender controls that is very long
// or holds NUL is stored as its SHA-256, and still dedupes.
func TestUnstorableKeysAreHashed(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	long := strings.Repeat("k", 5000)
	body := `{"id":"` + long + `"}`
	first := requireAccepted(t, b.post(t, jsonRequest("keyed", body)))
	requireDuplicate(t, b.post(t, jsonRequest("keyed", body)), first)
	evs := b.events(t)
	require.Len(t, evs, 1)
	require.True(t, strings.HasPrefix(evs[0].Key, "sha256:"), evs[0].Key)
	nul := requireAccepted(t, b.post(t, jsonRequest("keyed", `{"id":"a\u0000b"}`)))
	require.NotEqual(t, first, nul)
	digits := strings.Repeat("9", 5000)
	numeric := requireAccepted(t, b.post(t, jsonRequest("keyed", `{"id":`+digits+`}`)))
	requireDuplicate(t, b.post(t, jsonRequest("keyed", `{"id":`+digits+`}`)), numeric)
	for _, e := range b.events(t) {
		require.LessOrEqual(t, len(e.Key), 256, "a long numeric key is hashed too")
	}
}

// TestRecordKeys: a source with record_id and version keys each event by
// the record's version, writing times one way (so a backstop poll and the
// webhooks agree); a payload that is not about a record version (a ping)
// falls back to the body hash instead of being refused.
func TestRecordKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	first := requireAccepted(t, b.post(t, jsonRequest("records", `{"event":"job.updated","job":{"id":42,"updated_at":"2026-02-01T11:00:00+01:00"}}`)))
	requireDuplicate(t, b.post(t, jsonRequest("records", `{"event":"job.saved","job":{"id":"42","updated_at":"2026-02-01T10:00:00.000Z"}}`)), first)
	requireAccepted(t, b.post(t, jsonRequest("records", `{"event":"ping"}`)))
	keys := map[string]bool{}
	for _, e := range b.events(t) {
		keys[e.Key] = true
	}
	require.True(t, keys["42@2026-02-01T10:00:00Z"], "%v", keys)
	require.Len(t, keys, 2)
}
