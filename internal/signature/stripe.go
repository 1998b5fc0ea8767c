package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	stripeHeader = "Stripe-Signature"
	// stripeScheme is the only signature scheme Stripe uses for live
	// endpoints. Test-mode events also carry "v0" entries made with a
	// different key; the official libraries ignore them, and so do we.
	stripeScheme = "v1"
)

// Stripe verifies Stripe webhook signatures
// (https://docs.stripe.com/webhooks#verify-manually). Stripe sends
// "Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=<hex>]"
// where each v1 entry is the hex HMAC-SHA256 of "{t}.{body}" under the
// endpoint secret. Several v1 entries appear while a secret is being rolled;
// any one may match. The zero value is not usable: Secret must be set. A
// Stripe is safe for concurrent use.
type Stripe struct {
	// Secret is the endpoint's signing secret exactly as the dashboard or
	// CLI shows it, "whsec_…". Unlike Standard Webhooks secrets it is used
	// as-is as the HMAC key, prefix included, and is not base64-decoded.
	Secret string
	// Tolerance is how far t may be from now, in either direction, before a
	// request is refused as ErrExpired. Zero (or negative) means 5 minutes,
	// the default of Stripe's own libraries.
	Tolerance time.Duration
}

// Verify checks that the Stripe-Signature header in h authenticates body at
// time now, and on success returns the signed send time (t). On failure
// sentAt is zero and err wraps ErrMissing (no header), ErrMalformed (no or
// bad t, no decodable signature entry, empty Secret), ErrExpired (t outside
// Tolerance) or ErrMismatch. The timestamp is checked before the signature,
// as for StandardWebhooks. body must be the exact bytes received.
func (s Stripe) Verify(h http.Header, body []byte, now time.Time) (sentAt time.Time, err error) {
	if s.Secret == "" {
		return time.Time{}, fmt.Errorf("stripe: empty secret: %w", ErrMalformed)
	}
	value := strings.TrimSpace(h.Get(stripeHeader))
	if value == "" {
		return time.Time{}, fmt.Errorf("stripe: header %s: %w", stripeHeader, ErrMissing)
	}
	p, err := parseStripeHeader(value)
	if err != nil {
		return time.Time{}, err
	}
	sent, err := checkTimestamp("stripe", "header "+stripeHeader+" t=", p.timestamp, now, s.Tolerance)
	if err != nil {
		return time.Time{}, err
	}

	want := s.mac(p.timestamp, body)
	for _, got := range p.signatures {
		if hmac.Equal(got, want) {
			return sent, nil
		}
	}
	if !p.wellFormed {
		return time.Time{}, fmt.Errorf("stripe: header %s has no parsable signature entry: %w", stripeHeader, ErrMalformed)
	}
	return time.Time{}, fmt.Errorf("stripe: header %s: %w", stripeHeader, ErrMismatch)
}

// Sign returns a Stripe-Signature header value, "t=<unix>,v1=<hex>", for body
// sent at ts (truncated to whole seconds). It is meant for tests and the demo
// sender. With an empty Secret it still returns a value, which Verify then
// refuses as ErrMalformed.
func (s Stripe) Sign(ts time.Time, body []byte) string {
	t := strconv.FormatInt(ts.Unix(), 10)
	return "t=" + t + "," + stripeScheme + "=" + hex.EncodeToString(s.mac(t, body))
}

// mac signs the timestamp text as sent, not a reformatted number, because
// that text is what Stripe put in the signed payload.
func (s Stripe) mac(timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(s.Secret))
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

type stripeHeaderValue struct {
	timestamp  string
	signatures [][]byte
	// wellFormed is whether at least one entry besides t parsed: a decodable
	// v1 or an entry of another scheme. A header with only those other
	// schemes is well formed but unverifiable, so it is ErrMismatch.
	wellFormed bool
}

// parseStripeHeader splits "k=v,k=v" the way Stripe's libraries do: entries
// without "=" and v1 entries that are not hex are skipped rather than fatal,
// so one garbled entry cannot hide a good one. A missing or repeated t is
// ErrMalformed; a repeated t would make "which t was signed" ambiguous.
func parseStripeHeader(value string) (stripeHeaderValue, error) {
	var (
		p     stripeHeaderValue
		haveT bool
	)
	for item := range strings.SplitSeq(value, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || key == "" {
			continue
		}
		switch key {
		case "t":
			if haveT {
				return stripeHeaderValue{}, fmt.Errorf("stripe: header %s has more than one t=: %w", stripeHeader, ErrMalformed)
			}
			haveT = true
			p.timestamp = val
		case stripeScheme:
			sig, err := hex.DecodeString(val)
			if err != nil || len(sig) == 0 {
				continue
			}
			p.signatures = append(p.signatures, sig)
			p.wellFormed = true
		default:
			p.wellFormed = true
		}
	}
	if !haveT {
		return stripeHeaderValue{}, fmt.Errorf("stripe: header %s has no t= timestamp: %w", stripeHeader, ErrMalformed)
	}
	return p, nil
}
