package flow

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/signature"
)

const schemes = "hmac-sha256, standard-webhooks, stripe, github, shopify or twilio"

// verifier compiles a source's verify: block.
func (cp *compiler) verifier(path string, v *config.Verify) Verifier {
	n := cp.node(path)
	if v.Secret.IsZero() {
		cp.errorf(n, path+".secret", "required")
		return nil
	}
	cp.positive(path+".tolerance", v.Tolerance)
	secret := v.Secret.Reveal()
	switch v.Scheme {
	case signature.SchemeHMAC:
		if v.Header == "" {
			cp.errorf(n, path+".header", "required for hmac-sha256")
			return nil
		}
		if v.Encoding != "" && v.Encoding != "hex" && v.Encoding != "base64" {
			cp.errorf(cp.node(path+".encoding"), path+".encoding", "want hex or base64, got %q", v.Encoding)
			return nil
		}
		h := signature.HMAC{Header: v.Header, Secret: []byte(secret), Encoding: v.Encoding, Prefix: v.Prefix}
		return headerVerifier{verify: h.Verify}
	case signature.SchemeStandardWebhooks:
		sw, err := signature.NewStandardWebhooks(secret, v.Tolerance)
		if err != nil {
			cp.errorf(cp.node(path+".secret"), path+".secret", "%v", err)
			return nil
		}
		return swVerifier{sw}
	case signature.SchemeStripe:
		return stripeVerifier{signature.Stripe{Secret: secret, Tolerance: v.Tolerance}}
	case signature.SchemeGitHub:
		return headerVerifier{verify: signature.GitHub{Secret: secret}.Verify}
	case signature.SchemeShopify:
		return headerVerifier{verify: signature.Shopify{Secret: secret}.Verify}
	case signature.SchemeTwilio:
		public := v.PublicURL
		if public != "" {
			u, err := url.Parse(public)
			if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
				cp.errorf(cp.node(path+".public_url"), path+".public_url", "want the absolute URL Twilio calls, such as https://sb.example.com/hooks/sms")
				return nil
			}
			// The query Twilio signs is the one it calls with, which each
			// request carries: a query written here would be there twice.
			u.RawQuery, u.ForceQuery, u.Fragment = "", false, ""
			public = u.String()
		}
		return twilioVerifier{tw: signature.Twilio{AuthToken: secret}, publicURL: public}
	case "":
		cp.errorf(n, path+".scheme", "required (%s)", schemes)
	default:
		cp.errorf(cp.node(path+".scheme"), path+".scheme", "unknown scheme %q (want %s)", v.Scheme, schemes)
	}
	return nil
}

// headerVerifier checks an HMAC over the body carried in one header (the
// generic scheme, GitHub, Shopify). It names no message id: GitHub's and
// Shopify's delivery ids (X-GitHub-Delivery, X-Shopify-Webhook-Id) are not
// covered by the signature, and these schemes sign no timestamp, so keyed
// on them a captured delivery resent with a new id would be a new event.
// Their default key is the body's SHA-256, which the sender's own
// redeliveries (the same body) share and a replay cannot change.
type headerVerifier struct {
	verify func(http.Header, []byte) error
}

func (h headerVerifier) Verify(r *http.Request, body []byte, _ time.Time) (Verified, error) {
	return Verified{}, h.verify(r.Header, body)
}

type swVerifier struct{ *signature.StandardWebhooks }

func (s swVerifier) Verify(r *http.Request, body []byte, now time.Time) (Verified, error) {
	id, at, err := s.StandardWebhooks.Verify(r.Header, body, now)
	return Verified{MessageID: id, SentAt: at}, err
}

type stripeVerifier struct{ signature.Stripe }

func (s stripeVerifier) Verify(r *http.Request, body []byte, now time.Time) (Verified, error) {
	at, err := s.Stripe.Verify(r.Header, body, now)
	return Verified{SentAt: at}, err
}

// twilioVerifier checks X-Twilio-Signature over the URL Twilio called and
// the form parameters.
type twilioVerifier struct {
	tw        signature.Twilio
	publicURL string
}

func (t twilioVerifier) Verify(r *http.Request, body []byte, _ time.Time) (Verified, error) {
	u := t.publicURL
	if u == "" {
		u = requestURL(r)
	} else if r.URL.RawQuery != "" {
		u = strings.TrimSuffix(u, "?") + "?" + r.URL.RawQuery
	}
	var form url.Values
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var err error
		if form, err = url.ParseQuery(string(body)); err != nil {
			return Verified{}, fmt.Errorf("twilio: form body: %w", signature.ErrMalformed)
		}
	}
	return Verified{}, t.tw.Verify(r.Header, u, form, body)
}

// requestURL rebuilds the URL the sender called, trusting the proxy's
// X-Forwarded-Proto for the scheme.
func requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	u := scheme + "://" + r.Host + r.URL.Path
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	return u
}
