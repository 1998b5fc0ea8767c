package signature_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/signature"
)

// The test vector published in the Standard Webhooks specification
// (github.com/standard-webhooks/standard-webhooks, libraries' test suites).
const (
	publishedSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	publishedMsgID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	publishedTimestamp = 1614265330
	publishedBody      = `{"test": 2432232314}`
	publishedSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// otherSecret is a second valid key, used as the "wrong secret" and as the
// retired key in rotation cases.
var otherSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("switchboard-other-key-0123456789"))

func swHeader(id, ts, sig string) http.Header {
	h := http.Header{}
	if id != "" {
		h.Set("webhook-id", id)
	}
	if ts != "" {
		h.Set("webhook-timestamp", ts)
	}
	if sig != "" {
		h.Set("webhook-signature", sig)
	}
	return h
}

func newSW(tb testing.TB, secret string, tolerance time.Duration) *signature.StandardWebhooks {
	tb.Helper()
	v, err := signature.NewStandardWebhooks(secret, tolerance)
	require.NoError(tb, err)
	return v
}

// requireNoLeak checks the rule that error text never carries a secret or the
// signature the verifier expected, since errors are logged.
func requireNoLeak(tb testing.TB, err error, secrets ...string) {
	tb.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		require.NotContains(tb, err.Error(), s)
	}
}

func TestStandardWebhooksPublishedVector(t *testing.T) {
	t.Parallel()

	v := newSW(t, publishedSecret, 0)
	now := time.Unix(publishedTimestamp, 0)

	id, sentAt, err := v.Verify(swHeader(publishedMsgID, "1614265330", publishedSignature), []byte(publishedBody), now)
	require.NoError(t, err)
	require.Equal(t, publishedMsgID, id)
	require.True(t, sentAt.Equal(now))

	require.Equal(t, publishedSignature, v.Sign(publishedMsgID, now, []byte(publishedBody)))
}

func TestStandardWebhooksVerify(t *testing.T) {
	t.Parallel()

	ts := time.Unix(publishedTimestamp, 0)
	body := []byte(publishedBody)
	other := newSW(t, otherSecret, 0)
	otherSig := other.Sign(publishedMsgID, ts, body)
	publishedKey := strings.TrimPrefix(publishedSecret, "whsec_")

	tests := []struct {
		name      string
		secret    string
		tolerance time.Duration
		header    http.Header
		body      string
		now       time.Time
		wantErr   error
	}{
		{
			name:   "valid",
			header: swHeader(publishedMsgID, "1614265330", publishedSignature),
		},
		{
			name:   "secret without whsec prefix",
			secret: publishedKey,
			header: swHeader(publishedMsgID, "1614265330", publishedSignature),
		},
		{
			name:    "tampered body",
			header:  swHeader(publishedMsgID, "1614265330", publishedSignature),
			body:    `{"test": 2432232315}`,
			wantErr: signature.ErrMismatch,
		},
		{
			name:    "tampered id",
			header:  swHeader("msg_other", "1614265330", publishedSignature),
			wantErr: signature.ErrMismatch,
		},
		{
			name:    "tampered timestamp",
			header:  swHeader(publishedMsgID, "1614265331", publishedSignature),
			wantErr: signature.ErrMismatch,
		},
		{
			name:    "wrong secret",
			secret:  otherSecret,
			header:  swHeader(publishedMsgID, "1614265330", publishedSignature),
			wantErr: signature.ErrMismatch,
		},
		{
			name:   "oldest accepted age",
			header: swHeader(publishedMsgID, "1614265330", publishedSignature),
			now:    ts.Add(5 * time.Minute),
		},
		{
			name:    "expired too old",
			header:  swHeader(publishedMsgID, "1614265330", publishedSignature),
			now:     ts.Add(5*time.Minute + time.Second),
			wantErr: signature.ErrExpired,
		},
		{
			name:    "expired too far in future",
			header:  swHeader(publishedMsgID, "1614265330", publishedSignature),
			now:     ts.Add(-5*time.Minute - time.Second),
			wantErr: signature.ErrExpired,
		},
		{
			name:      "custom tolerance",
			tolerance: time.Minute,
			header:    swHeader(publishedMsgID, "1614265330", publishedSignature),
			now:       ts.Add(2 * time.Minute),
			wantErr:   signature.ErrExpired,
		},
		{
			name:    "implausible timestamp",
			header:  swHeader(publishedMsgID, "9223372036854775807", publishedSignature),
			wantErr: signature.ErrExpired,
		},
		{
			name:   "second of multiple signatures matches",
			header: swHeader(publishedMsgID, "1614265330", otherSig+" "+publishedSignature),
		},
		{
			name:   "unknown version ignored",
			header: swHeader(publishedMsgID, "1614265330", "v1a,"+strings.TrimPrefix(otherSig, "v1,")+" "+publishedSignature),
		},
		{
			name:   "malformed entry skipped when another matches",
			header: swHeader(publishedMsgID, "1614265330", "v1,!!! nocomma "+publishedSignature),
		},
		{
			name:    "only unknown versions",
			header:  swHeader(publishedMsgID, "1614265330", "v1a,"+strings.TrimPrefix(publishedSignature, "v1,")),
			wantErr: signature.ErrMismatch,
		},
		{
			name:    "all signatures wrong",
			header:  swHeader(publishedMsgID, "1614265330", otherSig+" "+otherSig),
			wantErr: signature.ErrMismatch,
		},
		{
			name:    "missing id",
			header:  swHeader("", "1614265330", publishedSignature),
			wantErr: signature.ErrMissing,
		},
		{
			name:    "missing timestamp",
			header:  swHeader(publishedMsgID, "", publishedSignature),
			wantErr: signature.ErrMissing,
		},
		{
			name:    "missing signature",
			header:  swHeader(publishedMsgID, "1614265330", ""),
			wantErr: signature.ErrMissing,
		},
		{
			name:    "blank signature",
			header:  swHeader(publishedMsgID, "1614265330", "   "),
			wantErr: signature.ErrMissing,
		},
		{
			name:    "no headers",
			header:  http.Header{},
			wantErr: signature.ErrMissing,
		},
		{
			name:    "timestamp not a number",
			header:  swHeader(publishedMsgID, "yesterday", publishedSignature),
			wantErr: signature.ErrMalformed,
		},
		{
			name:    "negative timestamp",
			header:  swHeader(publishedMsgID, "-1614265330", publishedSignature),
			wantErr: signature.ErrMalformed,
		},
		{
			name:    "fractional timestamp",
			header:  swHeader(publishedMsgID, "1614265330.5", publishedSignature),
			wantErr: signature.ErrMalformed,
		},
		{
			name:    "timestamp in milliseconds overflows",
			header:  swHeader(publishedMsgID, "99999999999999999999999", publishedSignature),
			wantErr: signature.ErrMalformed,
		},
		{
			name:    "signature bad base64",
			header:  swHeader(publishedMsgID, "1614265330", "v1,not*base64"),
			wantErr: signature.ErrMalformed,
		},
		{
			name:    "signature without version",
			header:  swHeader(publishedMsgID, "1614265330", strings.TrimPrefix(publishedSignature, "v1,")),
			wantErr: signature.ErrMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			secret := tt.secret
			if secret == "" {
				secret = publishedSecret
			}
			v := newSW(t, secret, tt.tolerance)
			b := tt.body
			if b == "" {
				b = publishedBody
			}
			now := tt.now
			if now.IsZero() {
				now = ts
			}

			id, sentAt, err := v.Verify(tt.header, []byte(b), now)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Empty(t, id, "unverified id must not be returned")
				require.True(t, sentAt.IsZero(), "unverified time must not be returned")
				expected := strings.TrimPrefix(v.Sign(tt.header.Get("webhook-id"), ts, []byte(b)), "v1,")
				requireNoLeak(t, err, secret, strings.TrimPrefix(secret, "whsec_"), expected)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.header.Get("webhook-id"), id)
			require.True(t, sentAt.Equal(ts))
		})
	}
}

func TestStandardWebhooksSignRoundTrip(t *testing.T) {
	t.Parallel()

	v := newSW(t, otherSecret, 0)
	// Sub-second precision is dropped because the header carries seconds.
	sent := time.Date(2026, 3, 1, 12, 0, 0, 987654321, time.UTC)
	body := []byte(`{"lead":"ada@example.com"}`)
	h := swHeader("msg_1", "1772366400", v.Sign("msg_1", sent, body))

	id, sentAt, err := v.Verify(h, body, sent.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, "msg_1", id)
	require.Equal(t, int64(1772366400), sentAt.Unix())
}

func TestStandardWebhooksLiteral(t *testing.T) {
	t.Parallel()

	// A struct literal skips NewStandardWebhooks; it must still work, and a
	// bad secret must surface as ErrMalformed rather than a panic.
	t.Run("valid secret", func(t *testing.T) {
		t.Parallel()

		v := &signature.StandardWebhooks{Secret: publishedSecret}
		now := time.Unix(publishedTimestamp, 0)
		require.Equal(t, publishedSignature, v.Sign(publishedMsgID, now, []byte(publishedBody)))
		id, _, err := v.Verify(swHeader(publishedMsgID, "1614265330", publishedSignature), []byte(publishedBody), now)
		require.NoError(t, err)
		require.Equal(t, publishedMsgID, id)
	})
	t.Run("bad secret", func(t *testing.T) {
		t.Parallel()

		v := &signature.StandardWebhooks{Secret: "whsec_%%%"}
		require.Empty(t, v.Sign(publishedMsgID, time.Unix(publishedTimestamp, 0), []byte(publishedBody)))
		_, _, err := v.Verify(swHeader(publishedMsgID, "1614265330", publishedSignature), []byte(publishedBody), time.Unix(publishedTimestamp, 0))
		require.ErrorIs(t, err, signature.ErrMalformed)
	})
}

func TestNewStandardWebhooks(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name      string
		secret    string
		tolerance time.Duration
		wantErr   error
	}{
		{name: "with prefix", secret: publishedSecret},
		{name: "without prefix", secret: strings.TrimPrefix(publishedSecret, "whsec_")},
		{name: "custom tolerance", secret: publishedSecret, tolerance: time.Hour},
		{name: "empty", secret: "", wantErr: signature.ErrMalformed},
		{name: "prefix only", secret: "whsec_", wantErr: signature.ErrMalformed},
		{name: "bad base64", secret: "whsec_MfKQ9r8GKYqrTwjU*D8ILPZIo2LaLaSw", wantErr: signature.ErrMalformed},
		{name: "key needing no padding", secret: "whsec_c2VjcmV0"},
		{name: "missing padding", secret: "whsec_c2VjcmV", wantErr: signature.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			v, err := signature.NewStandardWebhooks(tt.secret, tt.tolerance)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Nil(t, v)
				requireNoLeak(t, err, tt.secret, strings.TrimPrefix(tt.secret, "whsec_"))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.secret, v.Secret)
			require.Equal(t, tt.tolerance, v.Tolerance)
		})
	}

	t.Run("negative tolerance", func(t *testing.T) {
		t.Parallel()

		v, err := signature.NewStandardWebhooks(publishedSecret, -time.Second)
		require.Error(t, err)
		require.Nil(t, v)
		requireNoLeak(t, err, publishedSecret)
	})
}

// GitHub's documented example for X-Hub-Signature-256
// (docs.github.com, "Validating webhook deliveries").
const (
	githubSecret    = "It's a Secret to Everybody"
	githubBody      = "Hello, World!"
	githubSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
)

func TestHMACVerify(t *testing.T) {
	t.Parallel()

	hexV := signature.HMAC{Header: "X-Signature", Secret: []byte("s3cret")}
	b64V := signature.HMAC{Header: "X-Signature", Secret: []byte("s3cret"), Encoding: "base64"}
	github := signature.HMAC{Header: "X-Hub-Signature-256", Secret: []byte(githubSecret), Prefix: "sha256="}
	b64Prefixed := signature.HMAC{Header: "X-Signature", Secret: []byte("s3cret"), Encoding: "base64", Prefix: "sha256="}
	body := []byte(`{"event":"lead.created"}`)

	header := func(name, value string) http.Header {
		h := http.Header{}
		h.Set(name, value)
		return h
	}

	tests := []struct {
		name     string
		verifier signature.HMAC
		header   http.Header
		body     []byte
		wantErr  error
	}{
		{
			name:     "hex",
			verifier: hexV,
			header:   header("X-Signature", hexV.Sign(body)),
			body:     body,
		},
		{
			name:     "explicit hex",
			verifier: signature.HMAC{Header: "X-Signature", Secret: []byte("s3cret"), Encoding: "hex"},
			header:   header("X-Signature", hexV.Sign(body)),
			body:     body,
		},
		{
			name:     "upper case hex",
			verifier: hexV,
			header:   header("X-Signature", strings.ToUpper(hexV.Sign(body))),
			body:     body,
		},
		{
			name:     "base64",
			verifier: b64V,
			header:   header("X-Signature", b64V.Sign(body)),
			body:     body,
		},
		{
			name:     "base64 with prefix",
			verifier: b64Prefixed,
			header:   header("X-Signature", b64Prefixed.Sign(body)),
			body:     body,
		},
		{
			name:     "github published vector",
			verifier: github,
			header:   header("X-Hub-Signature-256", githubSignature),
			body:     []byte(githubBody),
		},
		{
			name:     "header name is case insensitive",
			verifier: signature.HMAC{Header: "x-hub-signature-256", Secret: []byte(githubSecret), Prefix: "sha256="},
			header:   header("X-Hub-Signature-256", githubSignature),
			body:     []byte(githubBody),
		},
		{
			name:     "tampered hex",
			verifier: hexV,
			header:   header("X-Signature", hexV.Sign(body)),
			body:     []byte(`{"event":"lead.deleted"}`),
			wantErr:  signature.ErrMismatch,
		},
		{
			name:     "tampered base64",
			verifier: b64V,
			header:   header("X-Signature", b64V.Sign(body)),
			body:     []byte(`{"event":"lead.deleted"}`),
			wantErr:  signature.ErrMismatch,
		},
		{
			name:     "tampered with prefix",
			verifier: github,
			header:   header("X-Hub-Signature-256", githubSignature),
			body:     []byte("Hello, World?"),
			wantErr:  signature.ErrMismatch,
		},
		{
			name:     "wrong secret",
			verifier: signature.HMAC{Header: "X-Signature", Secret: []byte("other")},
			header:   header("X-Signature", hexV.Sign(body)),
			body:     body,
			wantErr:  signature.ErrMismatch,
		},
		{
			name:     "truncated signature",
			verifier: hexV,
			header:   header("X-Signature", hexV.Sign(body)[:32]),
			body:     body,
			wantErr:  signature.ErrMismatch,
		},
		{
			name:     "missing header",
			verifier: hexV,
			header:   header("X-Other", hexV.Sign(body)),
			body:     body,
			wantErr:  signature.ErrMissing,
		},
		{
			name:     "empty header",
			verifier: hexV,
			header:   header("X-Signature", ""),
			body:     body,
			wantErr:  signature.ErrMissing,
		},
		{
			name:     "wrong prefix",
			verifier: github,
			header:   header("X-Hub-Signature-256", "sha1="+strings.TrimPrefix(githubSignature, "sha256=")),
			body:     []byte(githubBody),
			wantErr:  signature.ErrMalformed,
		},
		{
			name:     "prefix absent",
			verifier: github,
			header:   header("X-Hub-Signature-256", strings.TrimPrefix(githubSignature, "sha256=")),
			body:     []byte(githubBody),
			wantErr:  signature.ErrMalformed,
		},
		{
			name:     "bad hex",
			verifier: hexV,
			header:   header("X-Signature", "zz"+hexV.Sign(body)[2:]),
			body:     body,
			wantErr:  signature.ErrMalformed,
		},
		{
			name:     "bad base64",
			verifier: b64V,
			header:   header("X-Signature", "***"),
			body:     body,
			wantErr:  signature.ErrMalformed,
		},
		{
			name:     "hex sent to base64 verifier",
			verifier: b64V,
			header:   header("X-Signature", hexV.Sign(body)),
			body:     body,
			wantErr:  signature.ErrMismatch,
		},
		{
			name:     "empty secret",
			verifier: signature.HMAC{Header: "X-Signature"},
			header:   header("X-Signature", signature.HMAC{Header: "X-Signature"}.Sign(body)),
			body:     body,
			wantErr:  signature.ErrMalformed,
		},
		{
			name:     "unknown encoding",
			verifier: signature.HMAC{Header: "X-Signature", Secret: []byte("s3cret"), Encoding: "base32"},
			header:   header("X-Signature", hexV.Sign(body)),
			body:     body,
			wantErr:  signature.ErrMalformed,
		},
		{
			name:     "no header configured",
			verifier: signature.HMAC{Secret: []byte("s3cret")},
			header:   header("X-Signature", hexV.Sign(body)),
			body:     body,
			wantErr:  signature.ErrMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			err := tt.verifier.Verify(tt.header, tt.body)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				expected := tt.verifier.Sign(tt.body)
				requireNoLeak(t, err, string(tt.verifier.Secret), strings.TrimPrefix(expected, tt.verifier.Prefix))
				return
			}
			require.NoError(t, err)
		})
	}
}

func TestHMACSign(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		verifier signature.HMAC
		want     string
	}{
		{
			name:     "github hex with prefix",
			verifier: signature.HMAC{Secret: []byte(githubSecret), Prefix: "sha256="},
			want:     githubSignature,
		},
		{
			name:     "base64",
			verifier: signature.HMAC{Secret: []byte(githubSecret), Encoding: "base64"},
			want:     "dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc=",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			require.Equal(t, tt.want, tt.verifier.Sign([]byte(githubBody)))
		})
	}
}

// requireSentinel is the property every fuzz target checks: whatever the
// input, a failure is one of the documented sentinels, so ingest can always
// classify it.
func requireSentinel(tb testing.TB, err error) {
	tb.Helper()
	for _, s := range []error{signature.ErrMissing, signature.ErrMismatch, signature.ErrExpired, signature.ErrMalformed} {
		if errors.Is(err, s) {
			return
		}
	}
	require.Failf(tb, "error wraps no sentinel", "%v", err)
}

func FuzzStandardWebhooksVerify(f *testing.F) {
	f.Add(publishedMsgID, "1614265330", publishedSignature, []byte(publishedBody))
	f.Add(publishedMsgID, "1614265330", "v1a,abc v1, v1,"+strings.TrimPrefix(publishedSignature, "v1,"), []byte(publishedBody))
	f.Add("", "", "", []byte(nil))
	f.Add("msg", "-1", "v1,!!!", []byte("x"))
	f.Add("msg", "99999999999999999999", ",,, v1", []byte("{}"))
	f.Add("msg", "1614265330", "   v1,AAAA   v2,BBBB\tv1,====", []byte("{}"))
	f.Add("msg", "0", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE", []byte("{}"))

	v, err := signature.NewStandardWebhooks(publishedSecret, 0)
	require.NoError(f, err)
	now := time.Unix(publishedTimestamp, 0)

	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", sig)

		gotID, sentAt, err := v.Verify(h, body, now)
		if err != nil {
			requireSentinel(t, err)
			require.Empty(t, gotID)
			require.True(t, sentAt.IsZero())
			requireNoLeak(t, err, publishedSecret, strings.TrimPrefix(publishedSecret, "whsec_"))
			return
		}
		require.Equal(t, id, gotID)
		require.LessOrEqual(t, now.Sub(sentAt).Abs(), 5*time.Minute)
	})
}

func FuzzHMACVerify(f *testing.F) {
	github := signature.HMAC{Header: "X-Hub-Signature-256", Secret: []byte(githubSecret), Prefix: "sha256="}
	f.Add(githubSignature, []byte(githubBody))
	f.Add("sha256=", []byte(nil))
	f.Add("sha256=zz", []byte("x"))
	f.Add("dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc=", []byte(githubBody))
	f.Add("dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc", []byte(githubBody))
	f.Add("  \t", []byte("{}"))

	verifiers := []signature.HMAC{
		github,
		{Header: "X-Hub-Signature-256", Secret: []byte(githubSecret)},
		{Header: "X-Hub-Signature-256", Secret: []byte(githubSecret), Encoding: "base64"},
		{Header: "X-Hub-Signature-256", Secret: []byte(githubSecret), Encoding: "base64", Prefix: "sha256="},
	}

	// The vendor presets wrap HMAC; fuzz them with the same values.
	vendors := []interface {
		Verify(http.Header, []byte) error
	}{
		signature.GitHub{Secret: githubSecret},
		signature.Shopify{Secret: githubSecret},
	}

	f.Fuzz(func(t *testing.T, value string, body []byte) {
		h := http.Header{}
		h.Set("X-Hub-Signature-256", value)
		h.Set("X-Shopify-Hmac-Sha256", value)
		for _, v := range verifiers {
			err := v.Verify(h, body)
			if err != nil {
				requireSentinel(t, err)
				requireNoLeak(t, err, githubSecret)
			}
		}
		for _, v := range vendors {
			err := v.Verify(h, body)
			if err != nil {
				requireSentinel(t, err)
				requireNoLeak(t, err, githubSecret)
			}
		}
	})
}
