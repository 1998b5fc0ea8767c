package flow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchboard-dev/switchboard/internal/transform"
)

// MaxKey is the longest idempotency key stored as given; longer ones are
// hashed.
const MaxKey = 256

// StorableKey keeps a key every store can index: one a sender controls may
// be long, hold NUL (PostgreSQL text refuses it) or be invalid UTF-8, and
// would then fail the whole group commit it shares with other events.
// Such a key is replaced by its SHA-256, which dedupes the same way.
func StorableKey(k string) string {
	if len(k) <= MaxKey && utf8.ValidString(k) && !strings.ContainsRune(k, 0) {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ErrNoValue means a key expression gave null or a blank string.
var ErrNoValue = errors.New("no value")

// noValue is an ErrNoValue that names the expression.
type noValue struct{ msg string }

func (e noValue) Error() string        { return e.msg }
func (e noValue) Is(target error) bool { return target == ErrNoValue }

// KeyText renders a key part (an idempotency key, an id, a version) that
// jq gave: strings as they are, numbers exactly, anything else as JSON.
// Null or blank is an error naming the expression (errors.Is ErrNoValue).
func KeyText(e *transform.Expr, v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", noValue{fmt.Sprintf("%s is null for this payload", e)}
	case string:
		if strings.TrimSpace(v) == "" {
			return "", noValue{fmt.Sprintf("%s is empty for this payload", e)}
		}
		return v, nil
	case json.Number:
		return v.String(), nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// RecordVersion is a record's version: version's value, or, when version
// is nil, the SHA-256 of the record as canonical JSON (keys sorted), so any
// change of any field is a new version.
func RecordVersion(ctx context.Context, version *transform.Expr, record any) (string, error) {
	if version == nil {
		b, err := json.Marshal(record)
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(b)
		return "sha256:" + hex.EncodeToString(sum[:16]), nil
	}
	v, err := version.Eval(ctx, record)
	if err != nil {
		return "", err
	}
	s, err := KeyText(version, v)
	if err != nil {
		return "", err
	}
	// The webhook and the poll of a backstop must agree on a version's
	// text: "…T10:00:00Z", "…T10:00:00.000Z" and "…T11:00:00+01:00" are the
	// same instant, so times are written one way.
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	return s, nil
}

// RecordKey is the idempotency key of a record's version: id@version.
// Webhook sources with record_id and version, and the polls that back them
// up, key events this way, so each sees what the other stored.
func RecordKey(id, version string) string { return StorableKey(id + "@" + version) }

// RecordOf evaluates a webhook source's record_id and version over a
// payload, for its RecordKey.
func (s *Source) RecordOf(ctx context.Context, value any) (id, version string, err error) {
	v, err := s.RecordID.Eval(ctx, value)
	if err != nil {
		return "", "", err
	}
	if id, err = KeyText(s.RecordID, v); err != nil {
		return "", "", err
	}
	version, err = RecordVersion(ctx, s.Version, value)
	return id, version, err
}

// RecordID renders a record id the way fingerprints store it, whoever
// writes or looks it up (delivery for our writes, the engine for inbound
// events): strings as they are, numbers and others as JSON (42, not 42.0),
// made storable (StorableKey hashes an id PostgreSQL would refuse, with a
// NUL, or a very long one).
func RecordID(v any) string {
	if s, ok := v.(string); ok {
		return StorableKey(s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return StorableKey(fmt.Sprint(v))
	}
	return StorableKey(string(b))
}
