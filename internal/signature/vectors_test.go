package signature_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/signature"
)

// vectorsPath holds fixed inputs and signatures for both schemes. Stored
// values (not recomputed ones) are what the table test verifies, so a change
// to Sign that alters the wire format fails here even if Sign and Verify
// still agree with each other. Regenerate with:
//
//	SWITCHBOARD_UPDATE_VECTORS=1 go test ./internal/signature -run TestVectors
//
// Entries with source "published" are copied from their specification and
// are written verbatim, never recomputed.
const vectorsPath = "testdata/vectors.json"

type vectorFile struct {
	Comment          string     `json:"comment"`
	StandardWebhooks []swVector `json:"standard_webhooks"`
	HMAC             []hmVector `json:"hmac"`
}

type swVector struct {
	Name      string `json:"name"`
	Source    string `json:"source"`
	Secret    string `json:"secret"`
	MsgID     string `json:"msg_id"`
	Timestamp int64  `json:"timestamp"`
	Body      string `json:"body"`
	Signature string `json:"signature"`
	Now       int64  `json:"now"`
	Want      string `json:"want"`
}

type hmVector struct {
	Name      string `json:"name"`
	Source    string `json:"source"`
	Header    string `json:"header"`
	Secret    string `json:"secret"`
	Encoding  string `json:"encoding,omitempty"`
	Prefix    string `json:"prefix,omitempty"`
	Body      string `json:"body"`
	Signature string `json:"signature"`
	Want      string `json:"want"`
}

var wantErrs = map[string]error{
	"valid":    nil,
	"mismatch": signature.ErrMismatch,
	"expired":  signature.ErrExpired,
}

// publishedSW is the Standard Webhooks specification's test vector, kept
// apart from generated entries so regeneration cannot rewrite it.
var publishedSW = swVector{
	Name:      "published valid",
	Source:    "published",
	Secret:    publishedSecret,
	MsgID:     publishedMsgID,
	Timestamp: publishedTimestamp,
	Body:      publishedBody,
	Signature: publishedSignature,
	Now:       publishedTimestamp,
	Want:      "valid",
}

// publishedHMAC is GitHub's documented X-Hub-Signature-256 example.
var publishedHMAC = hmVector{
	Name:      "github published valid",
	Source:    "published",
	Header:    "X-Hub-Signature-256",
	Secret:    githubSecret,
	Prefix:    "sha256=",
	Body:      githubBody,
	Signature: githubSignature,
	Want:      "valid",
}

func TestVectors(t *testing.T) {
	t.Parallel()

	if os.Getenv("SWITCHBOARD_UPDATE_VECTORS") == "1" {
		writeVectors(t)
	}

	raw, err := os.ReadFile(vectorsPath)
	require.NoError(t, err)
	var file vectorFile
	require.NoError(t, json.Unmarshal(raw, &file))
	require.Contains(t, file.StandardWebhooks, publishedSW, "published vector must stay verbatim")
	require.Contains(t, file.HMAC, publishedHMAC, "published vector must stay verbatim")

	requireCoverage(t, "standard_webhooks", file.StandardWebhooks, func(v swVector) string { return v.Want }, "valid", "mismatch", "expired")
	requireCoverage(t, "hmac", file.HMAC, func(v hmVector) string { return v.Want }, "valid", "mismatch")

	for _, vec := range file.StandardWebhooks {
		t.Run("standard webhooks/"+vec.Name, func(t *testing.T) {
			t.Parallel()

			wantErr, ok := wantErrs[vec.Want]
			require.True(t, ok, "unknown want %q", vec.Want)
			v, err := signature.NewStandardWebhooks(vec.Secret, 0)
			require.NoError(t, err)
			h := swHeader(vec.MsgID, strconv.FormatInt(vec.Timestamp, 10), vec.Signature)

			id, sentAt, err := v.Verify(h, []byte(vec.Body), time.Unix(vec.Now, 0))
			if wantErr != nil {
				require.ErrorIs(t, err, wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, vec.MsgID, id)
			require.Equal(t, vec.Timestamp, sentAt.Unix())
		})
	}
	for _, vec := range file.HMAC {
		t.Run("hmac/"+vec.Name, func(t *testing.T) {
			t.Parallel()

			wantErr, ok := wantErrs[vec.Want]
			require.True(t, ok, "unknown want %q", vec.Want)
			v := signature.HMAC{Header: vec.Header, Secret: []byte(vec.Secret), Encoding: vec.Encoding, Prefix: vec.Prefix}
			h := http.Header{}
			h.Set(vec.Header, vec.Signature)

			err := v.Verify(h, []byte(vec.Body))
			if wantErr != nil {
				require.ErrorIs(t, err, wantErr)
				return
			}
			require.NoError(t, err)
		})
	}
}

func requireCoverage[V any](tb testing.TB, scheme string, vecs []V, want func(V) string, kinds ...string) {
	tb.Helper()
	seen := map[string]bool{}
	for _, v := range vecs {
		seen[want(v)] = true
	}
	for _, k := range kinds {
		require.True(tb, seen[k], "%s vectors lack a %q case", scheme, k)
	}
}

// writeVectors regenerates vectorsPath from fixed inputs. Only the
// published entries are copied; every other signature comes from Sign.
func writeVectors(tb testing.TB) {
	tb.Helper()

	// rotated is the retired key in the rotation case: the sender signs with
	// both while receivers move over, and any one entry may match.
	rotated := "whsec_" + base64.StdEncoding.EncodeToString([]byte("switchboard-retired-key-01234567"))
	current := otherSecret
	const (
		ts   = 1767225600 // 2026-01-01T00:00:00Z
		id   = "msg_2aVhXw1Zc9switchboard"
		body = `{"type":"lead.created","data":{"email":"ada@example.com"}}`
	)
	signSW := func(secret, id string, ts int64, body string) string {
		v, err := signature.NewStandardWebhooks(secret, 0)
		require.NoError(tb, err)
		return v.Sign(id, time.Unix(ts, 0), []byte(body))
	}
	genSig := signSW(current, id, ts, body)

	sw := []swVector{
		publishedSW,
		withSW(publishedSW, func(v *swVector) {
			v.Name, v.Body, v.Want = "published tampered body", `{"test": 2432232315}`, "mismatch"
		}),
		withSW(publishedSW, func(v *swVector) {
			v.Name, v.Now, v.Want = "published expired too old", publishedTimestamp+5*60+1, "expired"
		}),
		withSW(publishedSW, func(v *swVector) {
			v.Name, v.Now, v.Want = "published expired in future", publishedTimestamp-5*60-1, "expired"
		}),
		{
			Name: "generated valid", Source: "generated", Secret: current, MsgID: id, Timestamp: ts,
			Body: body, Signature: genSig, Now: ts + 60, Want: "valid",
		},
		{
			Name: "generated key rotation second entry matches", Source: "generated", Secret: current, MsgID: id, Timestamp: ts,
			Body: body, Signature: signSW(rotated, id, ts, body) + " " + genSig, Now: ts, Want: "valid",
		},
		{
			Name: "generated wrong secret", Source: "generated", Secret: rotated, MsgID: id, Timestamp: ts,
			Body: body, Signature: genSig, Now: ts, Want: "mismatch",
		},
		{
			Name: "generated tampered body", Source: "generated", Secret: current, MsgID: id, Timestamp: ts,
			Body: body + " ", Signature: genSig, Now: ts, Want: "mismatch",
		},
		{
			Name: "generated expired", Source: "generated", Secret: current, MsgID: id, Timestamp: ts,
			Body: body, Signature: genSig, Now: ts + 3600, Want: "expired",
		},
	}

	hexV := signature.HMAC{Header: "X-Signature", Secret: []byte("switchboard-hmac-secret")}
	b64V := signature.HMAC{Header: "X-Signature", Secret: []byte("switchboard-hmac-secret"), Encoding: "base64", Prefix: "sha256="}
	hm := []hmVector{
		publishedHMAC,
		withHM(publishedHMAC, func(v *hmVector) {
			v.Name, v.Body, v.Want = "github published tampered body", "Hello, World?", "mismatch"
		}),
		{
			Name: "generated hex valid", Source: "generated", Header: hexV.Header, Secret: string(hexV.Secret),
			Body: body, Signature: hexV.Sign([]byte(body)), Want: "valid",
		},
		{
			Name: "generated hex tampered body", Source: "generated", Header: hexV.Header, Secret: string(hexV.Secret),
			Body: body + " ", Signature: hexV.Sign([]byte(body)), Want: "mismatch",
		},
		{
			Name: "generated base64 with prefix valid", Source: "generated", Header: b64V.Header, Secret: string(b64V.Secret),
			Encoding: b64V.Encoding, Prefix: b64V.Prefix, Body: body, Signature: b64V.Sign([]byte(body)), Want: "valid",
		},
		{
			Name: "generated base64 with prefix tampered body", Source: "generated", Header: b64V.Header, Secret: string(b64V.Secret),
			Encoding: b64V.Encoding, Prefix: b64V.Prefix, Body: `{"type":"lead.deleted"}`, Signature: b64V.Sign([]byte(body)), Want: "mismatch",
		},
	}

	file := vectorFile{
		Comment: "Signature test vectors; see vectors_test.go. Entries with source \"published\" are copied verbatim " +
			"from the Standard Webhooks specification and GitHub's docs. Timestamps and now are Unix seconds; " +
			"HMAC has no timestamp, so it has no expired cases. Regenerate: SWITCHBOARD_UPDATE_VECTORS=1 go test ./internal/signature -run TestVectors",
		StandardWebhooks: sw,
		HMAC:             hm,
	}
	out, err := json.MarshalIndent(file, "", "  ")
	require.NoError(tb, err)
	require.NoError(tb, os.MkdirAll(filepath.Dir(vectorsPath), 0o755))
	require.NoError(tb, os.WriteFile(vectorsPath, append(out, '\n'), 0o644))
}

func withSW(v swVector, edit func(*swVector)) swVector {
	v.Source = "derived from published"
	edit(&v)
	return v
}

func withHM(v hmVector, edit func(*hmVector)) hmVector {
	v.Source = "derived from published"
	edit(&v)
	return v
}
