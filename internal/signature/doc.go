// Package signature owns webhook signature verification: it decides whether a
// request's headers authenticate its raw body under a shared secret.
// Verifiers are pure functions of headers, body, secret and clock (no I/O), so
// ingest can call them on any goroutine and tests can pin time.
package signature
