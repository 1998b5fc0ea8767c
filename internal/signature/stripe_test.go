package signature_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/signature"
)

// Stripe publishes no fixed test vector, so this one was computed by hand
// from the documented scheme and checked outside Go:
//
//	printf '%s.%s' 1767225600 "$stripeBody" | openssl dgst -sha256 -hmac whsec_switchboard_stripe_handchecked
const (
	stripeSecret    = "whsec_switchboard_stripe_handchecked"
	stripeTimestamp = 1767225600 // 2026-01-01T00:00:00Z
	stripeBody      = `{"id":"evt_1SwitchboardTest","object":"event","type":"payment_intent.succeeded"}`
	stripeSignature = "80d40bf001cdf1b0ff58dbacfc8ccd6c09a7bc6161fa994a3e6ba1a171d49de3"
	stripeHeader    = "t=1767225600,v1=" + stripeSignature
)

func stripeH(value string) http.Header {
	h := http.Header{}
	if value != "" {
		h.Set("Stripe-Signature", value)
	}
	return h
}

func TestStripeHandCheckedVector(t *testing.T) {
	t.Parallel()

	v := signature.Stripe{Secret: stripeSecret}
	ts := time.Unix(stripeTimestamp, 0)

	require.Equal(t, stripeHeader, v.Sign(ts, []byte(stripeBody)))
	sentAt, err := v.Verify(stripeH(stripeHeader), []byte(stripeBody), ts)
	require.NoError(t, err)
	require.True(t, sentAt.Equal(ts))
}

func TestStripeVerify(t *testing.T) {
	t.Parallel()

	ts := time.Unix(stripeTimestamp, 0)
	body := []byte(stripeBody)
	otherSig := strings.TrimPrefix(signature.Stripe{Secret: "whsec_retired"}.Sign(ts, body), "t=1767225600,v1=")

	tests := []struct {
		name      string
		secret    string
		tolerance time.Duration
		header    string
		body      string
		now       time.Time
		wantErr   error
	}{
		{name: "valid", header: stripeHeader},
		{name: "oldest accepted age", header: stripeHeader, now: ts.Add(5 * time.Minute)},
		{name: "furthest accepted future", header: stripeHeader, now: ts.Add(-5 * time.Minute)},
		{name: "second v1 matches during secret roll", header: "t=1767225600,v1=" + otherSig + ",v1=" + stripeSignature},
		{name: "v0 test mode entry ignored", header: "t=1767225600,v1=" + stripeSignature + ",v0=" + otherSig},
		{name: "timestamp after signatures", header: "v0=" + otherSig + ",v1=" + stripeSignature + ",t=1767225600"},
		{name: "garbled entries skipped", header: "t=1767225600,v1=zz,junk,v1=" + stripeSignature},
		{name: "spaces around entries", header: " t=1767225600 , v1=" + stripeSignature + " "},
		{name: "upper case hex", header: "t=1767225600,v1=" + strings.ToUpper(stripeSignature)},
		{name: "custom tolerance accepts", tolerance: time.Hour, header: stripeHeader, now: ts.Add(30 * time.Minute)},
		{name: "tampered body", header: stripeHeader, body: stripeBody + " ", wantErr: signature.ErrMismatch},
		{name: "tampered timestamp", header: "t=1767225601,v1=" + stripeSignature, wantErr: signature.ErrMismatch},
		{name: "wrong secret", secret: "whsec_other", header: stripeHeader, wantErr: signature.ErrMismatch},
		{
			// Stripe secrets are used as-is; dropping the prefix (as for
			// Standard Webhooks) yields a different key.
			name: "secret without whsec prefix", secret: strings.TrimPrefix(stripeSecret, "whsec_"),
			header: stripeHeader, wantErr: signature.ErrMismatch,
		},
		{name: "all v1 wrong", header: "t=1767225600,v1=" + otherSig + ",v1=" + otherSig, wantErr: signature.ErrMismatch},
		{name: "only v0 entries", header: "t=1767225600,v0=" + stripeSignature, wantErr: signature.ErrMismatch},
		{name: "truncated signature", header: "t=1767225600,v1=" + stripeSignature[:32], wantErr: signature.ErrMismatch},
		{name: "expired too old", header: stripeHeader, now: ts.Add(5*time.Minute + time.Second), wantErr: signature.ErrExpired},
		{name: "expired too far in future", header: stripeHeader, now: ts.Add(-5*time.Minute - time.Second), wantErr: signature.ErrExpired},
		{name: "custom tolerance refuses", tolerance: time.Minute, header: stripeHeader, now: ts.Add(2 * time.Minute), wantErr: signature.ErrExpired},
		{name: "implausible timestamp", header: "t=9223372036854775807,v1=" + stripeSignature, wantErr: signature.ErrExpired},
		{name: "missing header", header: "", wantErr: signature.ErrMissing},
		{name: "blank header", header: "  ", wantErr: signature.ErrMissing},
		{name: "no timestamp", header: "v1=" + stripeSignature, wantErr: signature.ErrMalformed},
		{name: "timestamp only", header: "t=1767225600", wantErr: signature.ErrMalformed},
		{name: "timestamp not a number", header: "t=yesterday,v1=" + stripeSignature, wantErr: signature.ErrMalformed},
		{name: "negative timestamp", header: "t=-1767225600,v1=" + stripeSignature, wantErr: signature.ErrMalformed},
		{name: "fractional timestamp", header: "t=1767225600.5,v1=" + stripeSignature, wantErr: signature.ErrMalformed},
		{name: "empty timestamp", header: "t=,v1=" + stripeSignature, wantErr: signature.ErrMalformed},
		{name: "repeated timestamp", header: "t=1767225600,t=1767225600,v1=" + stripeSignature, wantErr: signature.ErrMalformed},
		{name: "v1 not hex", header: "t=1767225600,v1=not-hex", wantErr: signature.ErrMalformed},
		{name: "v1 empty", header: "t=1767225600,v1=", wantErr: signature.ErrMalformed},
		{name: "v1 odd length hex", header: "t=1767225600,v1=" + stripeSignature[1:], wantErr: signature.ErrMalformed},
		{name: "separators only", header: ",,,=,", wantErr: signature.ErrMalformed},
		{name: "empty secret", secret: "-", header: stripeHeader, wantErr: signature.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			secret := orDefault(tt.secret, stripeSecret)
			v := signature.Stripe{Secret: secret, Tolerance: tt.tolerance}
			b := orDefault(tt.body, stripeBody)
			now := tt.now
			if now.IsZero() {
				now = ts
			}

			sentAt, err := v.Verify(stripeH(tt.header), []byte(b), now)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.True(t, sentAt.IsZero(), "unverified time must not be returned")
				expected := strings.TrimPrefix(signature.Stripe{Secret: secret}.Sign(ts, []byte(b)), "t=1767225600,v1=")
				requireNoLeak(t, err, secret, expected)
				return
			}
			require.NoError(t, err)
			require.True(t, sentAt.Equal(ts))
		})
	}
}

func TestStripeSignRoundTrip(t *testing.T) {
	t.Parallel()

	v := signature.Stripe{Secret: "whsec_round_trip"}
	// Sub-second precision is dropped because the header carries seconds.
	sent := time.Date(2026, 3, 1, 12, 0, 0, 987654321, time.UTC)
	body := []byte(`{"id":"evt_round_trip"}`)
	header := v.Sign(sent, body)
	require.True(t, strings.HasPrefix(header, "t="+strconv.FormatInt(sent.Unix(), 10)+",v1="))

	sentAt, err := v.Verify(stripeH(header), body, sent.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, sent.Unix(), sentAt.Unix())
}

func FuzzStripeVerify(f *testing.F) {
	f.Add(stripeHeader, []byte(stripeBody))
	f.Add("t=1767225600,v1=zz,v1=,v0="+stripeSignature+",v1="+stripeSignature, []byte(stripeBody))
	f.Add("", []byte(nil))
	f.Add("t=-1,v1=!!!", []byte("x"))
	f.Add("t=99999999999999999999,v1=00", []byte("{}"))
	f.Add(",,=,t,v1,t=,=v1", []byte("{}"))
	f.Add("t=1767225600,t=1767225601,v1="+stripeSignature, []byte(stripeBody))
	f.Add("t=1767225600=1,v1=="+stripeSignature, []byte(stripeBody))

	v := signature.Stripe{Secret: stripeSecret}
	now := time.Unix(stripeTimestamp, 0)

	f.Fuzz(func(t *testing.T, header string, body []byte) {
		h := http.Header{}
		h.Set("Stripe-Signature", header)

		sentAt, err := v.Verify(h, body, now)
		if err != nil {
			requireSentinel(t, err)
			require.True(t, sentAt.IsZero())
			requireNoLeak(t, err, stripeSecret)
			return
		}
		require.LessOrEqual(t, now.Sub(sentAt).Abs(), 5*time.Minute)
	})
}
