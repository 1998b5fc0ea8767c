// Package secret holds values that must never be printed: tokens, passwords,
// signing keys. A Value redacts itself in every textual form (fmt, slog, JSON),
// so a config or error that embeds one cannot leak it by accident.
package secret

import (
	"encoding/json"
	"log/slog"
)

// Value is a secret string read from the config (usually through ${NAME}).
// Use Reveal to get the plain text, only where it is sent to its destination.
type Value string

const redacted = "[redacted]"

// Reveal returns the plain secret.
func (v Value) Reveal() string { return string(v) }

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return v == "" }

// String redacts the value.
func (v Value) String() string {
	if v == "" {
		return ""
	}
	return redacted
}

// GoString redacts the value under %#v.
func (v Value) GoString() string { return v.String() }

// LogValue redacts the value in slog output.
func (v Value) LogValue() slog.Value { return slog.StringValue(v.String()) }

// MarshalJSON redacts the value in JSON output.
func (v Value) MarshalJSON() ([]byte, error) { return json.Marshal(v.String()) }

// MarshalText redacts the value in text encodings (YAML, XML).
func (v Value) MarshalText() ([]byte, error) { return []byte(v.String()), nil }
