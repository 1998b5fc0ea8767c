package signature

import (
	"net/http"
)

// Scheme names for the verifiers in this package, as written in a source's
// verify.scheme setting.
const (
	SchemeHMAC             = "hmac-sha256"
	SchemeStandardWebhooks = "standard-webhooks"
	SchemeStripe           = "stripe"
	SchemeGitHub           = "github"
	SchemeShopify          = "shopify"
	SchemeTwilio           = "twilio"
)

// GitHub verifies GitHub webhook signatures
// (https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries):
// "X-Hub-Signature-256: sha256=<hex>", the HMAC-SHA256 of the raw body under
// the webhook secret. The legacy SHA-1 X-Hub-Signature header is ignored.
// There is no timestamp, and X-GitHub-Delivery is not signed, so replays are
// refused only by deduplicating on the body. The zero value is not usable:
// Secret must be set. A GitHub is safe for concurrent use.
type GitHub struct {
	// Secret is the webhook secret configured on GitHub.
	Secret string
}

// Verify reports, as a nil error, that X-Hub-Signature-256 in h is a valid
// signature of body. Otherwise the error wraps ErrMissing, ErrMalformed (no
// "sha256=" prefix, bad hex, empty Secret) or ErrMismatch. body must be the
// exact bytes received.
func (g GitHub) Verify(h http.Header, body []byte) error {
	return g.hmac().Verify(h, body)
}

// Sign returns the X-Hub-Signature-256 value Verify accepts for body,
// "sha256=<hex>". It is meant for tests and the demo sender.
func (g GitHub) Sign(body []byte) string {
	return g.hmac().Sign(body)
}

func (g GitHub) hmac() HMAC {
	return HMAC{Header: "X-Hub-Signature-256", Secret: []byte(g.Secret), Prefix: "sha256="}
}

// Shopify verifies Shopify webhook signatures
// (https://shopify.dev/docs/apps/build/webhooks/subscribe/https):
// "X-Shopify-Hmac-Sha256: <base64>", the HMAC-SHA256 of the raw body under
// the app's client secret. There is no timestamp, and X-Shopify-Webhook-Id
// is not signed, so replays are refused only by deduplicating on the body.
// The zero value is not usable: Secret must be set. A Shopify is safe for
// concurrent use.
type Shopify struct {
	// Secret is the app's client secret (or the secret shown for webhooks
	// created in the store admin).
	Secret string
}

// Verify reports, as a nil error, that X-Shopify-Hmac-Sha256 in h is a valid
// signature of body. Otherwise the error wraps ErrMissing, ErrMalformed (bad
// base64, empty Secret) or ErrMismatch. body must be the exact bytes
// received: Shopify signs them before any JSON decoding.
func (s Shopify) Verify(h http.Header, body []byte) error {
	return s.hmac().Verify(h, body)
}

// Sign returns the X-Shopify-Hmac-Sha256 value Verify accepts for body. It is
// meant for tests and the demo sender.
func (s Shopify) Sign(body []byte) string {
	return s.hmac().Sign(body)
}

func (s Shopify) hmac() HMAC {
	return HMAC{Header: "X-Shopify-Hmac-Sha256", Secret: []byte(s.Secret), Encoding: encodingBase64}
}
