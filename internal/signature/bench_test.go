package signature_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/signature"
)

var benchBody = []byte(`{"id":"e1","email":"ann@example.com","notes":"` + strings.Repeat("x", 950) + `"}`)

func BenchmarkHMACVerify(b *testing.B) {
	h := signature.HMAC{Header: "X-Signature", Secret: []byte("s3cret"), Prefix: "sha256="}
	hdr := http.Header{}
	hdr.Set("X-Signature", h.Sign(benchBody))
	for b.Loop() {
		require.NoError(b, h.Verify(hdr, benchBody))
	}
}

func BenchmarkStandardWebhooksVerify(b *testing.B) {
	sw, err := signature.NewStandardWebhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 0)
	require.NoError(b, err)
	now := time.Unix(1614265330, 0)
	hdr := http.Header{}
	hdr.Set("webhook-id", "msg_1")
	hdr.Set("webhook-timestamp", "1614265330")
	hdr.Set("webhook-signature", sw.Sign("msg_1", now, benchBody))
	for b.Loop() {
		_, _, err := sw.Verify(hdr, benchBody, now)
		require.NoError(b, err)
	}
}

func BenchmarkStripeVerify(b *testing.B) {
	s := signature.Stripe{Secret: "whsec_switchboard_bench"}
	now := time.Unix(1767225600, 0)
	hdr := http.Header{}
	hdr.Set("Stripe-Signature", s.Sign(now, benchBody))
	for b.Loop() {
		_, err := s.Verify(hdr, benchBody, now)
		require.NoError(b, err)
	}
}

func BenchmarkTwilioVerify(b *testing.B) {
	tw := signature.Twilio{AuthToken: "switchboard-bench"}
	const publicURL = "https://hooks.example.com/twilio/sms"
	form := url.Values{"Body": {string(benchBody)}, "From": {"+15005550006"}, "MessageSid": {"SM1"}, "To": {"+15005550001"}}
	hdr := http.Header{}
	hdr.Set("X-Twilio-Signature", tw.Sign(publicURL, form))
	for b.Loop() {
		require.NoError(b, tw.Verify(hdr, publicURL, form, nil))
	}
}
