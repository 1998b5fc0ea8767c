package flow_test

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/signature"
)

// TestTwilioPublicURLWithQuery: Twilio signs the whole URL it calls, query
// included. A public_url that names that query (a tenant parameter, say)
// verifies a genuine request: the query is the request's, once (it was
// appended a second time, and every request was refused).
func TestTwilioPublicURLWithQuery(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, "tw.yaml", `version: 1
sources:
  sms:
    webhook:
      format: form
      verify: { scheme: twilio, secret: "${FORM_SECRET}", public_url: "https://sb.example.com/hooks/sms?tenant=acme" }
`)
	form := url.Values{"From": {"+15550001"}, "Body": {"hi"}}
	tw := signature.Twilio{AuthToken: testEnv["FORM_SECRET"]}
	r := httptest.NewRequest("POST", "http://10.0.0.5:8080/hooks/sms?tenant=acme", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Twilio-Signature", tw.Sign("https://sb.example.com/hooks/sms?tenant=acme", form))
	_, err := p.Sources["sms"].Webhook.Verifier.Verify(r, []byte(form.Encode()), time.Now())
	require.NoError(t, err)

	r.Header.Set("X-Twilio-Signature", tw.Sign("https://sb.example.com/hooks/sms?tenant=other", form))
	_, err = p.Sources["sms"].Webhook.Verifier.Verify(r, []byte(form.Encode()), time.Now())
	require.Error(t, err, "signed for another URL")
}
