package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// HMAC verifies a generic HMAC-SHA256 signature of the raw body carried in a
// single header, the scheme used by GitHub ("X-Hub-Signature-256: sha256=<hex>")
// and many smaller senders. It has no timestamp, so it cannot refuse replays;
// prefer StandardWebhooks when the sender supports it. The zero value is not
// usable: Header and Secret must be set. An HMAC is safe for concurrent use.
type HMAC struct {
	// Header is the request header carrying the signature, e.g. "X-Signature".
	Header string
	// Secret is the shared HMAC key. An empty secret is refused rather than
	// accepted, because an empty key would let anyone forge signatures.
	Secret []byte
	// Encoding is how the MAC is written in the header: "hex" (the default
	// when empty) or "base64" (standard alphabet, padded).
	Encoding string
	// Prefix, when set, must start the header value and is stripped before
	// decoding, e.g. "sha256=". A value without it is ErrMalformed.
	Prefix string
}

const (
	encodingHex    = "hex"
	encodingBase64 = "base64"
)

// Verify reports, as a nil error, that header carries a valid signature of
// body. Otherwise it returns an error wrapping ErrMissing, ErrMalformed or
// ErrMismatch. body must be the exact bytes received, before any decoding.
func (h HMAC) Verify(header http.Header, body []byte) error {
	if h.Header == "" {
		return fmt.Errorf("hmac: no header name configured: %w", ErrMalformed)
	}
	if len(h.Secret) == 0 {
		return fmt.Errorf("hmac: empty secret: %w", ErrMalformed)
	}
	value := strings.TrimSpace(header.Get(h.Header))
	if value == "" {
		return fmt.Errorf("hmac: header %s: %w", h.Header, ErrMissing)
	}
	encoded, ok := strings.CutPrefix(value, h.Prefix)
	if !ok {
		return fmt.Errorf("hmac: header %s lacks prefix %q: %w", h.Header, h.Prefix, ErrMalformed)
	}
	var (
		got []byte
		err error
	)
	switch h.Encoding {
	case "", encodingHex:
		got, err = hex.DecodeString(encoded)
	case encodingBase64:
		got, err = base64.StdEncoding.DecodeString(encoded)
	default:
		return fmt.Errorf("hmac: unknown encoding %q: %w", h.Encoding, ErrMalformed)
	}
	if err != nil {
		// The decoder's error describes only the received value (a byte or an
		// offset), never the secret, so it is safe to keep as context.
		return fmt.Errorf("hmac: header %s: decode %s: %w: %w", h.Header, h.encoding(), err, ErrMalformed)
	}
	if !hmac.Equal(got, h.mac(body)) {
		return fmt.Errorf("hmac: header %s: %w", h.Header, ErrMismatch)
	}
	return nil
}

// Sign returns the header value Verify accepts for body: Prefix followed by
// the MAC in Encoding. It is meant for tests and the demo sender. An unknown
// Encoding falls back to hex, which Verify will then refuse as ErrMalformed.
func (h HMAC) Sign(body []byte) string {
	mac := h.mac(body)
	if h.Encoding == encodingBase64 {
		return h.Prefix + base64.StdEncoding.EncodeToString(mac)
	}
	return h.Prefix + hex.EncodeToString(mac)
}

func (h HMAC) mac(body []byte) []byte {
	m := hmac.New(sha256.New, h.Secret)
	m.Write(body)
	return m.Sum(nil)
}

func (h HMAC) encoding() string {
	if h.Encoding == "" {
		return encodingHex
	}
	return h.Encoding
}
