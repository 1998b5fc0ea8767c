package signature_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/signature"
)

// The example in Twilio's security docs
// (twilio.com/docs/usage/security, "Validating requests"), checked with
//
//	printf '%s' "${twilioURL}CallSidCA1234567890ABCDECaller+12349013030Digits1234From+12349013030To+18005551212" |
//	  openssl dgst -sha1 -hmac 12345 -binary | base64
const (
	twilioToken     = "12345"
	twilioURL       = "https://mycompany.com/myapp.php?foo=1&bar=2"
	twilioSignature = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
)

func twilioDocsParams() url.Values {
	return url.Values{
		"CallSid": {"CA1234567890ABCDE"},
		"Caller":  {"+12349013030"},
		"Digits":  {"1234"},
		"From":    {"+12349013030"},
		"To":      {"+18005551212"},
	}
}

// The vectors in the test suites of Twilio's helper libraries
// (twilio-python tests/unit/test_request_validator.py, twilio-node,
// twilio-csharp): the same URL and token with other phone numbers, and a JSON
// body signed through bodySHA256. Each was rechecked with openssl.
const (
	twilioLibSignature      = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
	twilioLibPort443        = "kvajT1Ptam85bY51eRf/AJRuM3w=" // URL with :443
	twilioLibHTTPPort80     = "0ZXoZLH/DfblKGATFgpif+LLRf4=" // http URL with :80
	twilioLibHTTPPort1234   = "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=" // http URL with :1234
	twilioLibDuplicates     = "IK+Dwps556ElfBT0I3Rgjkr1wJU="
	twilioJSONBody          = `{"property": "value", "boolean": true}`
	twilioJSONBodyHash      = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
	twilioJSONURL           = twilioURL + "&bodySHA256=" + twilioJSONBodyHash
	twilioJSONSignature     = "a9nBmqA0ju/hNViExpshrM61xv4="
	twilioJSONContentType   = "application/json"
	twilioFormContentType   = "application/x-www-form-urlencoded"
	twilioDuplicateFormBody = "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234"
)

func twilioLibParams() url.Values {
	return url.Values{
		"CallSid": {"CA1234567890ABCDE"},
		"Caller":  {"+14158675309"},
		"Digits":  {"1234"},
		"From":    {"+14158675309"},
		"To":      {"+18005551212"},
	}
}

func twilioH(sig, contentType string) http.Header {
	h := http.Header{}
	if sig != "" {
		h.Set("X-Twilio-Signature", sig)
	}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return h
}

func TestTwilioPublishedExample(t *testing.T) {
	t.Parallel()

	v := signature.Twilio{AuthToken: twilioToken}
	require.Equal(t, twilioSignature, v.Sign(twilioURL, twilioDocsParams()), "Sign must reproduce Twilio's documented example")
	require.NoError(t, v.Verify(twilioH(twilioSignature, twilioFormContentType), twilioURL, twilioDocsParams(), nil))
}

func TestTwilioVerify(t *testing.T) {
	t.Parallel()

	dup, err := url.ParseQuery(twilioDuplicateFormBody)
	require.NoError(t, err)
	with := func(edit func(url.Values)) url.Values {
		v := twilioDocsParams()
		edit(v)
		return v
	}

	tests := []struct {
		name        string
		token       string
		sig         string
		contentType string
		url         string
		form        url.Values
		body        string
		wantErr     error
	}{
		{name: "docs example", sig: twilioSignature, url: twilioURL, form: twilioDocsParams()},
		{name: "library example", sig: twilioLibSignature, url: twilioURL, form: twilioLibParams()},
		{name: "repeated names sorted and deduplicated", sig: twilioLibDuplicates, url: twilioURL, form: dup},
		{name: "signed with default port added", sig: twilioLibPort443, url: twilioURL, form: twilioLibParams()},
		{
			name: "signed without configured port", sig: twilioLibSignature,
			url: strings.Replace(twilioURL, ".com", ".com:1234", 1), form: twilioLibParams(),
		},
		{
			name: "http signed with default port added", sig: twilioLibHTTPPort80,
			url: strings.Replace(twilioURL, "https", "http", 1), form: twilioLibParams(),
		},
		{
			name: "http with explicit port", sig: twilioLibHTTPPort1234,
			url: strings.Replace(strings.Replace(twilioURL, "https", "http", 1), ".com", ".com:1234", 1), form: twilioLibParams(),
		},
		{
			name: "default port configured, signed without", sig: twilioLibSignature,
			url: strings.Replace(twilioURL, ".com", ".com:443", 1), form: twilioLibParams(),
		},
		{name: "get request signs url only", sig: signature.Twilio{AuthToken: twilioToken}.Sign(twilioURL, nil), url: twilioURL},
		{
			name: "json body", sig: twilioJSONSignature, contentType: twilioJSONContentType,
			url: twilioJSONURL, body: twilioJSONBody,
		},
		{
			name: "json body with charset", sig: twilioJSONSignature, contentType: "application/json; charset=utf-8",
			url: twilioJSONURL, body: twilioJSONBody,
		},
		{
			name: "json detected by bodySHA256 alone", sig: twilioJSONSignature,
			url: twilioJSONURL, body: twilioJSONBody,
		},
		{
			name: "json ignores form", sig: twilioJSONSignature, contentType: twilioJSONContentType,
			url: twilioJSONURL, form: twilioDocsParams(), body: twilioJSONBody,
		},
		{
			name: "upper case body hash", sig: signature.Twilio{AuthToken: twilioToken}.Sign(twilioURL+"&bodySHA256="+strings.ToUpper(twilioJSONBodyHash), nil),
			contentType: twilioJSONContentType, url: twilioURL + "&bodySHA256=" + strings.ToUpper(twilioJSONBodyHash), body: twilioJSONBody,
		},
		{
			name: "tampered param", sig: twilioSignature, url: twilioURL,
			form: with(func(v url.Values) { v.Set("Digits", "1235") }), wantErr: signature.ErrMismatch,
		},
		{
			name: "extra param", sig: twilioSignature, url: twilioURL,
			form: with(func(v url.Values) { v.Set("Body", "hi") }), wantErr: signature.ErrMismatch,
		},
		{
			name: "missing param", sig: twilioSignature, url: twilioURL,
			form: with(func(v url.Values) { v.Del("Caller") }), wantErr: signature.ErrMismatch,
		},
		{
			// http.Request.Form merges the query into the body params,
			// which Twilio does not sign.
			name: "query merged into form", sig: twilioSignature, url: twilioURL,
			form: with(func(v url.Values) { v.Set("foo", "1"); v.Set("bar", "2") }), wantErr: signature.ErrMismatch,
		},
		{name: "different path", sig: twilioSignature, url: strings.Replace(twilioURL, "myapp", "other", 1), form: twilioDocsParams(), wantErr: signature.ErrMismatch},
		{name: "query dropped", sig: twilioSignature, url: "https://mycompany.com/myapp.php", form: twilioDocsParams(), wantErr: signature.ErrMismatch},
		{name: "different scheme", sig: twilioSignature, url: strings.Replace(twilioURL, "https", "http", 1), form: twilioDocsParams(), wantErr: signature.ErrMismatch},
		{name: "wrong token", token: "54321", sig: twilioSignature, url: twilioURL, form: twilioDocsParams(), wantErr: signature.ErrMismatch},
		{
			name: "json tampered body", sig: twilioJSONSignature, contentType: twilioJSONContentType,
			url: twilioJSONURL, body: twilioJSONBody + " ", wantErr: signature.ErrMismatch,
		},
		{
			// A captured JSON request's URL signature covers no body, so
			// resending it as another content type must still check the
			// body against bodySHA256.
			name: "json url replayed as text with another body", sig: twilioJSONSignature, contentType: "text/plain",
			url: twilioJSONURL, body: "anything", wantErr: signature.ErrMismatch,
		},
		{
			name: "json url with bodySHA256 removed", sig: twilioJSONSignature, contentType: twilioJSONContentType,
			url: twilioURL, body: twilioJSONBody, wantErr: signature.ErrMissing,
		},
		{
			name: "bodySHA256 not hex", sig: twilioJSONSignature, contentType: twilioJSONContentType,
			url: twilioURL + "&bodySHA256=xyz", body: twilioJSONBody, wantErr: signature.ErrMalformed,
		},
		{
			name: "bodySHA256 repeated", sig: twilioJSONSignature, contentType: twilioJSONContentType,
			url: twilioJSONURL + "&bodySHA256=" + twilioJSONBodyHash, body: twilioJSONBody, wantErr: signature.ErrMalformed,
		},
		{name: "missing header", url: twilioURL, form: twilioDocsParams(), wantErr: signature.ErrMissing},
		{name: "blank header", sig: "  ", url: twilioURL, form: twilioDocsParams(), wantErr: signature.ErrMissing},
		{name: "bad base64", sig: "0/KCTR6DLpKmkAf8muzZqo1nDgQ", url: twilioURL, form: twilioDocsParams(), wantErr: signature.ErrMalformed},
		{name: "relative url", sig: twilioSignature, url: "/myapp.php?foo=1&bar=2", form: twilioDocsParams(), wantErr: signature.ErrMalformed},
		{name: "unparsable url", sig: twilioSignature, url: "https://[::1/myapp.php", form: twilioDocsParams(), wantErr: signature.ErrMalformed},
		{name: "empty auth token", token: "-", sig: twilioSignature, url: twilioURL, form: twilioDocsParams(), wantErr: signature.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			token := orDefault(tt.token, twilioToken)
			v := signature.Twilio{AuthToken: token}
			contentType := tt.contentType
			if contentType == "" && tt.body == "" {
				contentType = twilioFormContentType
			}

			err := v.Verify(twilioH(tt.sig, contentType), tt.url, tt.form, []byte(tt.body))
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				requireNoLeak(t, err, token, v.Sign(tt.url, tt.form), v.Sign(tt.url, nil))
				return
			}
			require.NoError(t, err)
		})
	}
}

func FuzzTwilioVerify(f *testing.F) {
	// The token is long and distinctive so that the leak check cannot be
	// tripped by a number that merely happens to appear in an error.
	const token = "fuzz-twilio-auth-token"
	v := signature.Twilio{AuthToken: token}

	f.Add(v.Sign(twilioURL, url.Values{"Digits": {"1234"}}), twilioURL, twilioFormContentType, "Digits", "1234", []byte(nil))
	f.Add(v.Sign(twilioJSONURL, nil), twilioJSONURL, twilioJSONContentType, "", "", []byte(twilioJSONBody))
	f.Add("", "", "", "", "", []byte(nil))
	f.Add("!!!", "https://[::1]:443/x?bodySHA256=zz&bodySHA256=", "application/json; charset", "a", "b", []byte("{}"))
	f.Add("AAAA", "https://user:pw@host:/p", "text/plain", "k", "", []byte("x"))
	f.Add("AAAA", "mailto:a@b", ";;", "", "", []byte(nil))

	f.Fuzz(func(t *testing.T, sig, rawURL, contentType, key, value string, body []byte) {
		form := url.Values{}
		if key != "" {
			form.Add(key, value)
		}
		err := v.Verify(twilioH(sig, contentType), rawURL, form, body)
		if err != nil {
			requireSentinel(t, err)
			requireNoLeak(t, err, token)
		}
	})
}
