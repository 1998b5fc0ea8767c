// Package signature owns webhook signature verification: it decides whether a
// request's headers authenticate its raw body under a shared secret.
// Verifiers are pure functions of headers, body, secret and clock (no I/O), so
// ingest can call them on any goroutine and tests can pin time.
//
// # Schemes
//
//   - HMAC: a generic HMAC-SHA256 of the body in one header, hex or base64.
//   - StandardWebhooks: the Standard Webhooks specification (Svix and others),
//     signing "{webhook-id}.{webhook-timestamp}.{body}".
//   - Stripe: Stripe-Signature, signing "{t}.{body}" with the whsec_ secret
//     used as-is.
//   - GitHub: X-Hub-Signature-256, "sha256=" and the hex HMAC-SHA256 of the body.
//   - Shopify: X-Shopify-Hmac-Sha256, the base64 HMAC-SHA256 of the body.
//   - Twilio: X-Twilio-Signature, the base64 HMAC-SHA1 of the public URL and
//     the sorted POST parameters (or, for a JSON body, of the URL carrying
//     bodySHA256).
//
// Every comparison of a received MAC is constant time (hmac.Equal). Every
// error wraps one of ErrMissing, ErrMalformed, ErrExpired or ErrMismatch and
// never contains the secret or the expected signature.
//
// # Replay protection
//
// A valid signature proves who sent a request, not that it is the first time
// it arrives: anyone who captures a signed request can send it again.
// StandardWebhooks and Stripe sign a timestamp, and Verify refuses one further
// than its tolerance (default 5 minutes, either direction) from now with
// ErrExpired, which bounds the replay window.
//
// HMAC, GitHub, Shopify and Twilio sign no timestamp, so a captured request
// verifies forever. For them replay protection comes only from the
// idempotency key, which must be something the signature covers: the body
// (ingest's default key for them is its SHA-256; the sender's own retries
// resend the same body) or a field of it (Twilio's MessageSid or CallSid).
// GitHub's and Shopify's delivery id headers (X-GitHub-Delivery,
// X-Shopify-Webhook-Id) are not signed: a replay could change them. The timestamped
// schemes need the same deduplication for replays inside the tolerance window
// and for the sender's retries: StandardWebhooks.Verify returns webhook-id,
// and Stripe's key is the event "id" in the body.
package signature
