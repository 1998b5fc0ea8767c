package signature_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/switchboard-dev/switchboard/internal/signature"
)

func ExampleHMAC() {
	v := signature.HMAC{
		Header: "X-Hub-Signature-256",
		Secret: []byte("It's a Secret to Everybody"),
		Prefix: "sha256=",
	}
	body := []byte("Hello, World!")

	// The sender signs the raw body and puts the result in the header.
	h := http.Header{}
	h.Set(v.Header, v.Sign(body))
	fmt.Println(h.Get("X-Hub-Signature-256"))

	// The receiver verifies the exact bytes it read.
	fmt.Println(v.Verify(h, body))
	fmt.Println(errors.Is(v.Verify(h, []byte("Hello, World?")), signature.ErrMismatch))
	// Output:
	// sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17
	// <nil>
	// true
}

func ExampleStandardWebhooks_Verify() {
	v, err := signature.NewStandardWebhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 5*time.Minute)
	if err != nil {
		fmt.Println(err)
		return
	}
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	body := []byte(`{"test": 2432232314}`)

	id, sentAt, err := v.Verify(h, body, time.Unix(1614265330, 0).Add(time.Minute))
	fmt.Println(id, sentAt.UTC().Format(time.RFC3339), err)

	_, _, err = v.Verify(h, body, time.Unix(1614265330, 0).Add(time.Hour))
	fmt.Println(errors.Is(err, signature.ErrExpired))
	// Output:
	// msg_p5jXN8AQM9LWM0D4loKWxJek 2021-02-25T15:02:10Z <nil>
	// true
}

func ExampleStripe_Verify() {
	v := signature.Stripe{Secret: "whsec_switchboard_stripe_handchecked"}
	body := []byte(`{"id":"evt_1SwitchboardTest","object":"event","type":"payment_intent.succeeded"}`)
	sent := time.Unix(1767225600, 0)

	// Stripe signs "{t}.{body}" and sends t with the hex MAC.
	h := http.Header{}
	h.Set("Stripe-Signature", v.Sign(sent, body))
	fmt.Println(h.Get("Stripe-Signature"))

	sentAt, err := v.Verify(h, body, sent.Add(time.Minute))
	fmt.Println(sentAt.UTC().Format(time.RFC3339), err)

	// A replay after the 5 minute tolerance is refused.
	_, err = v.Verify(h, body, sent.Add(time.Hour))
	fmt.Println(errors.Is(err, signature.ErrExpired))
	// Output:
	// t=1767225600,v1=80d40bf001cdf1b0ff58dbacfc8ccd6c09a7bc6161fa994a3e6ba1a171d49de3
	// 2026-01-01T00:00:00Z <nil>
	// true
}

func ExampleTwilio_Verify() {
	// The example from Twilio's security documentation.
	v := signature.Twilio{AuthToken: "12345"}
	publicURL := "https://mycompany.com/myapp.php?foo=1&bar=2"
	form := url.Values{
		"CallSid": {"CA1234567890ABCDE"},
		"Caller":  {"+12349013030"},
		"Digits":  {"1234"},
		"From":    {"+12349013030"},
		"To":      {"+18005551212"},
	}
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("X-Twilio-Signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")

	// form is the parsed POST body (r.PostForm); body is only read for JSON.
	fmt.Println(v.Verify(h, publicURL, form, nil))

	form.Set("Digits", "9999")
	fmt.Println(errors.Is(v.Verify(h, publicURL, form, nil), signature.ErrMismatch))
	// Output:
	// <nil>
	// true
}
