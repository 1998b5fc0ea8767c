package signature

import (
	"crypto/hmac"
	"crypto/sha1" // Twilio's scheme; HMAC does not rely on SHA-1's collision resistance.
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

const (
	twilioHeader = "X-Twilio-Signature"
	// twilioBodyHashParam is the query parameter Twilio adds to the URL of
	// requests with a JSON body, carrying the body's hex SHA-256.
	twilioBodyHashParam = "bodySHA256"
)

// Twilio verifies Twilio request signatures
// (https://www.twilio.com/docs/usage/security#validating-requests):
// "X-Twilio-Signature: <base64>", the HMAC-SHA1 under the account's auth
// token of the full URL Twilio requested followed by every POST parameter,
// sorted by name, as name+value with no delimiters. For a JSON body Twilio
// signs the URL alone and adds a bodySHA256 query parameter holding the hex
// SHA-256 of the body, which Verify also checks. There is no timestamp, so
// replays are refused only by deduplicating on the body's MessageSid or
// CallSid. The zero value is not usable: AuthToken must be set. A Twilio is
// safe for concurrent use.
type Twilio struct {
	// AuthToken is the account's auth token. While it is being rotated,
	// use one verifier per token and accept a request if either passes.
	AuthToken string
}

// Verify reports, as a nil error, that X-Twilio-Signature in h authenticates
// a request to publicURL with POST parameters form and raw body body.
//
// publicURL is the URL exactly as Twilio called it: scheme, host, path and
// query, as configured in Twilio's console. Behind a proxy it differs from
// what the server sees, which is why the caller supplies it. form is the
// parsed urlencoded body only (http.Request.PostForm, never Form, which
// mixes in the query string); it is ignored for a JSON body. Like Twilio's
// own libraries, Verify also accepts the signature of publicURL without its
// port, or with the scheme's default port added, because Twilio does not
// sign the port consistently.
//
// A request is treated as having a JSON body when h's Content-Type is
// application/json or publicURL carries bodySHA256; then the URL alone is
// signed and body must hash to bodySHA256. Keying on the parameter too
// stops a signed JSON request's URL being replayed with another body under a
// different Content-Type.
//
// On failure the error wraps ErrMissing (no signature header, or a JSON body
// whose URL lacks bodySHA256), ErrMalformed (bad base64 or hex, a publicURL
// that is not absolute, empty AuthToken) or ErrMismatch (signature or body
// hash).
func (t Twilio) Verify(h http.Header, publicURL string, form url.Values, body []byte) error {
	if t.AuthToken == "" {
		return fmt.Errorf("twilio: empty auth token: %w", ErrMalformed)
	}
	value := strings.TrimSpace(h.Get(twilioHeader))
	if value == "" {
		return fmt.Errorf("twilio: header %s: %w", twilioHeader, ErrMissing)
	}
	got, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return fmt.Errorf("twilio: header %s: decode base64: %w: %w", twilioHeader, err, ErrMalformed)
	}
	// The URL is configuration, not a secret, but it can carry basic-auth
	// credentials, so it is never quoted in errors.
	u, err := url.Parse(publicURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("twilio: public URL is not an absolute URL: %w", ErrMalformed)
	}

	var wantBodyHash []byte
	bodyHashes, hasBodyHash := u.Query()[twilioBodyHashParam]
	if hasBodyHash || isJSON(h.Get("Content-Type")) {
		switch {
		case len(bodyHashes) == 0:
			return fmt.Errorf("twilio: JSON body but public URL has no %s query parameter: %w", twilioBodyHashParam, ErrMissing)
		case len(bodyHashes) > 1:
			return fmt.Errorf("twilio: public URL has more than one %s query parameter: %w", twilioBodyHashParam, ErrMalformed)
		}
		wantBodyHash, err = hex.DecodeString(bodyHashes[0])
		if err != nil {
			return fmt.Errorf("twilio: %s query parameter is not hex: %w", twilioBodyHashParam, ErrMalformed)
		}
		form = nil
	}

	matched := false
	for _, candidate := range twilioURLVariants(publicURL, u) {
		// Every candidate is computed and compared, so timing does not
		// reveal which port variant, if any, matched.
		if hmac.Equal(got, twilioMAC(t.AuthToken, candidate, form)) {
			matched = true
		}
	}
	if !matched {
		return fmt.Errorf("twilio: header %s: %w", twilioHeader, ErrMismatch)
	}
	if wantBodyHash != nil {
		sum := sha256.Sum256(body)
		if !hmac.Equal(sum[:], wantBodyHash) {
			return fmt.Errorf("twilio: body does not match %s: %w", twilioBodyHashParam, ErrMismatch)
		}
	}
	return nil
}

// Sign returns the X-Twilio-Signature value for a request to publicURL with
// POST parameters form, signing publicURL exactly as given. For a JSON body,
// pass a publicURL that already carries bodySHA256 and a nil form. It is
// meant for tests and the demo sender.
func (t Twilio) Sign(publicURL string, form url.Values) string {
	return base64.StdEncoding.EncodeToString(twilioMAC(t.AuthToken, publicURL, form))
}

// twilioMAC follows Twilio's helper libraries: parameter names sorted, and
// a name sent several times contributes each distinct value once, sorted.
func twilioMAC(authToken, rawURL string, form url.Values) []byte {
	m := hmac.New(sha1.New, []byte(authToken))
	m.Write([]byte(rawURL))
	for _, name := range slices.Sorted(maps.Keys(form)) {
		values := slices.Clone(form[name])
		slices.Sort(values)
		for _, v := range slices.Compact(values) {
			m.Write([]byte(name))
			m.Write([]byte(v))
		}
	}
	return m.Sum(nil)
}

// twilioURLVariants returns raw, raw without its port, and raw with the
// scheme's default port added when it has none: the same set Twilio's
// helper libraries try. Only the authority is rewritten, so the path and
// query stay byte for byte as configured.
func twilioURLVariants(raw string, u *url.URL) []string {
	variants := []string{raw}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return variants
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo := ""
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo, authority = authority[:i+1], authority[i+1:]
	}
	rebuild := func(host string) string { return scheme + "://" + userinfo + host + tail }

	if port := u.Port(); port != "" {
		variants = append(variants, rebuild(strings.TrimSuffix(authority, ":"+port)))
	} else if def := defaultPort(u.Scheme); def != "" {
		variants = append(variants, rebuild(authority+":"+def))
	}
	return variants
}

func defaultPort(scheme string) string {
	switch strings.ToLower(scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	default:
		return ""
	}
}

func isJSON(contentType string) bool {
	mediaType, _, err := mime.ParseMediaType(contentType)
	return err == nil && mediaType == "application/json"
}
