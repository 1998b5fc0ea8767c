package signature_test

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/signature"
)

// Shopify publishes no fixed test vector, so this one was computed by hand
// and checked outside Go:
//
//	printf '%s' "$shopifyBody" | openssl dgst -sha256 -hmac shpss_switchboard_handchecked -binary | base64
const (
	shopifySecret    = "shpss_switchboard_handchecked"
	shopifyBody      = `{"id":820982911946154508,"email":"jon@example.com","topic":"orders/create"}`
	shopifySignature = "1Dwvng4gecaIoc1KVAAnZnzH8obNQsUdPk6Y1bS7gEQ="
)

func singleHeader(name, value string) http.Header {
	h := http.Header{}
	if value != "" {
		h.Set(name, value)
	}
	return h
}

func TestGitHubVerify(t *testing.T) {
	t.Parallel()

	v := signature.GitHub{Secret: githubSecret}
	require.Equal(t, githubSignature, v.Sign([]byte(githubBody)), "Sign must reproduce GitHub's published example")

	githubHex := strings.TrimPrefix(githubSignature, "sha256=")
	tests := []struct {
		name    string
		secret  string
		header  http.Header
		body    string
		wantErr error
	}{
		{name: "published example", header: singleHeader("X-Hub-Signature-256", githubSignature)},
		{name: "tampered body", header: singleHeader("X-Hub-Signature-256", githubSignature), body: "Hello, World?", wantErr: signature.ErrMismatch},
		{name: "wrong secret", secret: "It's a Secret to Nobody", header: singleHeader("X-Hub-Signature-256", githubSignature), wantErr: signature.ErrMismatch},
		{name: "missing header", header: http.Header{}, wantErr: signature.ErrMissing},
		{
			// The SHA-1 header alone is not accepted: it is legacy and
			// verifying it would weaken the scheme.
			name: "only legacy sha1 header", header: singleHeader("X-Hub-Signature", "sha1="+githubHex[:40]),
			wantErr: signature.ErrMissing,
		},
		{name: "sha1 prefix", header: singleHeader("X-Hub-Signature-256", "sha1="+githubHex), wantErr: signature.ErrMalformed},
		{name: "no prefix", header: singleHeader("X-Hub-Signature-256", githubHex), wantErr: signature.ErrMalformed},
		{name: "bad hex", header: singleHeader("X-Hub-Signature-256", "sha256=zz"+githubHex[2:]), wantErr: signature.ErrMalformed},
		{name: "empty secret", secret: "-", header: singleHeader("X-Hub-Signature-256", githubSignature), wantErr: signature.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			secret := orDefault(tt.secret, githubSecret)
			body := orDefault(tt.body, githubBody)
			v := signature.GitHub{Secret: secret}

			err := v.Verify(tt.header, []byte(body))
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				requireNoLeak(t, err, secret, strings.TrimPrefix(v.Sign([]byte(body)), "sha256="))
				return
			}
			require.NoError(t, err)
		})
	}
}

func TestShopifyVerify(t *testing.T) {
	t.Parallel()

	v := signature.Shopify{Secret: shopifySecret}
	require.Equal(t, shopifySignature, v.Sign([]byte(shopifyBody)), "Sign must reproduce the openssl-checked vector")

	mac, err := base64.StdEncoding.DecodeString(shopifySignature)
	require.NoError(t, err)
	hexSig := hex.EncodeToString(mac)
	tests := []struct {
		name    string
		secret  string
		header  http.Header
		body    string
		wantErr error
	}{
		{name: "hand checked vector", header: singleHeader("X-Shopify-Hmac-Sha256", shopifySignature)},
		{name: "surrounding space", header: singleHeader("X-Shopify-Hmac-Sha256", " "+shopifySignature+" ")},
		{name: "tampered body", header: singleHeader("X-Shopify-Hmac-Sha256", shopifySignature), body: strings.Replace(shopifyBody, "jon", "jan", 1), wantErr: signature.ErrMismatch},
		{name: "re-encoded json", header: singleHeader("X-Shopify-Hmac-Sha256", shopifySignature), body: strings.ReplaceAll(shopifyBody, ",", ", "), wantErr: signature.ErrMismatch},
		{name: "wrong secret", secret: "shpss_other", header: singleHeader("X-Shopify-Hmac-Sha256", shopifySignature), wantErr: signature.ErrMismatch},
		{name: "hex instead of base64", header: singleHeader("X-Shopify-Hmac-Sha256", hexSig), wantErr: signature.ErrMismatch},
		{name: "missing header", header: singleHeader("X-Hub-Signature-256", shopifySignature), wantErr: signature.ErrMissing},
		{name: "empty header", header: singleHeader("X-Shopify-Hmac-Sha256", "   "), wantErr: signature.ErrMissing},
		{name: "bad base64", header: singleHeader("X-Shopify-Hmac-Sha256", "***"), wantErr: signature.ErrMalformed},
		{name: "unpadded base64", header: singleHeader("X-Shopify-Hmac-Sha256", strings.TrimRight(shopifySignature, "=")), wantErr: signature.ErrMalformed},
		{name: "empty secret", secret: "-", header: singleHeader("X-Shopify-Hmac-Sha256", shopifySignature), wantErr: signature.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			secret := orDefault(tt.secret, shopifySecret)
			body := orDefault(tt.body, shopifyBody)
			v := signature.Shopify{Secret: secret}

			err := v.Verify(tt.header, []byte(body))
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				requireNoLeak(t, err, secret, v.Sign([]byte(body)))
				return
			}
			require.NoError(t, err)
		})
	}
}

// orDefault returns def for "", "" for the marker "-" (so a table can ask
// for an empty value), and v otherwise.
func orDefault(v, def string) string {
	switch v {
	case "":
		return def
	case "-":
		return ""
	default:
		return v
	}
}
