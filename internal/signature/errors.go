package signature

import "errors"

// Sentinel errors let ingest choose a response and a metric label without
// parsing text. Every error a verifier returns wraps exactly one of them; the
// wrapping text names the header involved but never the secret or the
// expected signature, so errors are safe to log.
var (
	// ErrMissing means a header the scheme requires is absent or empty.
	ErrMissing = errors.New("signature missing")
	// ErrMismatch means the headers were well formed but no signature in
	// them matches the body, so the request is not authentic.
	ErrMismatch = errors.New("signature mismatch")
	// ErrExpired means the signed timestamp is older or further in the future
	// than the tolerance allows, which is how replayed requests are refused.
	ErrExpired = errors.New("signature timestamp outside tolerance")
	// ErrMalformed means a header is present but cannot be parsed (bad hex or
	// base64, bad timestamp, missing prefix), or the verifier itself is
	// misconfigured (empty or undecodable secret, unknown encoding).
	ErrMalformed = errors.New("signature malformed")
)
