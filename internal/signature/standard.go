package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names and constants from the Standard Webhooks specification
// (https://www.standardwebhooks.com, "Verifying webhook authenticity").
const (
	headerID        = "webhook-id"
	headerTimestamp = "webhook-timestamp"
	headerSignature = "webhook-signature"

	secretPrefix     = "whsec_"
	signatureVersion = "v1"

	// defaultTolerance is the window the specification's reference libraries
	// use; it absorbs clock skew and queueing without making replays cheap.
	defaultTolerance = 5 * time.Minute

	// maxTimestamp (about year 36800) bounds webhook-timestamp so that
	// time.Unix and time.Sub cannot overflow on hostile input; anything
	// beyond it is far outside any tolerance anyway.
	maxTimestamp = 1 << 40
)

// StandardWebhooks verifies signatures in the Standard Webhooks format
// (https://www.standardwebhooks.com), used by Svix and a growing list of
// senders. The sender signs "{webhook-id}.{webhook-timestamp}.{body}" with
// HMAC-SHA256 and puts space-separated "v1,<base64>" entries in
// webhook-signature, so secrets can be rotated by sending several entries.
// Build one with NewStandardWebhooks, which decodes the key once and rejects a
// bad secret at startup. A *StandardWebhooks is safe for concurrent use.
type StandardWebhooks struct {
	// Secret is the shared secret as the sender displays it: "whsec_" (which
	// may be omitted) followed by the base64 key.
	Secret string
	// Tolerance is how far webhook-timestamp may be from now, in either
	// direction, before a request is refused as ErrExpired. Zero means 5m.
	Tolerance time.Duration

	// key is Secret decoded by NewStandardWebhooks. It is nil when the
	// struct was built as a literal, in which case each call decodes Secret
	// itself instead of caching, so the value stays safe to share.
	key []byte
}

// NewStandardWebhooks returns a verifier for secret ("whsec_<base64>", prefix
// optional). A zero tolerance means 5 minutes. It returns an error wrapping
// ErrMalformed when the secret is empty or not valid base64, and an error for
// a negative tolerance; neither error contains the secret.
func NewStandardWebhooks(secret string, tolerance time.Duration) (*StandardWebhooks, error) {
	if tolerance < 0 {
		return nil, fmt.Errorf("standard webhooks: negative tolerance %s", tolerance)
	}
	key, err := decodeSecret(secret)
	if err != nil {
		return nil, err
	}
	return &StandardWebhooks{Secret: secret, Tolerance: tolerance, key: key}, nil
}

// Verify checks that header authenticates body at time now. On success it
// returns the sender's message id (use it to deduplicate retries) and the
// signed send time. On failure msgID and sentAt are zero, because unverified
// values must not be trusted, and err wraps ErrMissing, ErrMalformed,
// ErrExpired or ErrMismatch. The timestamp is checked before the signature,
// as the reference libraries do. body must be the exact bytes received.
func (s *StandardWebhooks) Verify(header http.Header, body []byte, now time.Time) (msgID string, sentAt time.Time, err error) {
	key, err := s.signingKey()
	if err != nil {
		return "", time.Time{}, err
	}
	id := header.Get(headerID)
	rawTS := header.Get(headerTimestamp)
	sigs := header.Get(headerSignature)
	for _, h := range []struct{ name, value string }{
		{headerID, id}, {headerTimestamp, rawTS}, {headerSignature, sigs},
	} {
		if strings.TrimSpace(h.value) == "" {
			return "", time.Time{}, fmt.Errorf("standard webhooks: header %s: %w", h.name, ErrMissing)
		}
	}

	sent, err := checkTimestamp("standard webhooks", "header "+headerTimestamp, rawTS, now, s.Tolerance)
	if err != nil {
		return "", time.Time{}, err
	}

	want := sign(key, id, rawTS, body)
	wellFormed := false
	for entry := range strings.FieldsSeq(sigs) {
		version, encoded, ok := strings.Cut(entry, ",")
		if !ok {
			continue
		}
		if version != signatureVersion {
			// Other versions (v1a is Ed25519) are for other verifiers; the
			// specification says to skip them, not to fail.
			wellFormed = true
			continue
		}
		got, decodeErr := base64.StdEncoding.DecodeString(encoded)
		if decodeErr != nil {
			continue
		}
		wellFormed = true
		if hmac.Equal(got, want) {
			return id, sent, nil
		}
	}
	if !wellFormed {
		return "", time.Time{}, fmt.Errorf("standard webhooks: header %s has no parsable \"version,base64\" entry: %w", headerSignature, ErrMalformed)
	}
	return "", time.Time{}, fmt.Errorf("standard webhooks: header %s: %w", headerSignature, ErrMismatch)
}

// Sign returns a webhook-signature header value, "v1,<base64>", for a message
// with id msgID sent at ts (truncated to whole seconds, as the header
// carries). It is meant for tests and the demo sender. It returns "" when
// Secret cannot be decoded, which only happens for a literal that skipped
// NewStandardWebhooks; a receiver given that empty header reports ErrMissing.
func (s *StandardWebhooks) Sign(msgID string, ts time.Time, body []byte) string {
	key, err := s.signingKey()
	if err != nil {
		return ""
	}
	mac := sign(key, msgID, strconv.FormatInt(ts.Unix(), 10), body)
	return signatureVersion + "," + base64.StdEncoding.EncodeToString(mac)
}

func (s *StandardWebhooks) signingKey() ([]byte, error) {
	if s.key != nil {
		return s.key, nil
	}
	return decodeSecret(s.Secret)
}

// decodeSecret turns "whsec_<base64>" into the HMAC key. The error never
// quotes the secret, because config errors end up in logs.
func decodeSecret(secret string) ([]byte, error) {
	encoded := strings.TrimPrefix(secret, secretPrefix)
	if encoded == "" {
		return nil, fmt.Errorf("standard webhooks: empty secret: %w", ErrMalformed)
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		// base64.CorruptInputError is only an offset, but report nothing of
		// it: even one position narrows down a secret.
		return nil, fmt.Errorf("standard webhooks: secret is not \"whsec_\" followed by base64: %w", ErrMalformed)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("standard webhooks: empty secret: %w", ErrMalformed)
	}
	return key, nil
}

// sign computes the MAC over "{id}.{timestamp}.{body}" exactly as the
// specification's reference libraries do, using the timestamp text as sent.
func sign(key []byte, id, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}
