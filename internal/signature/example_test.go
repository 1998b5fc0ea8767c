package signature_test

import (
	"errors"
	"fmt"
	"net/http"
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
