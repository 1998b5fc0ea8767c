// Package all is the one list of every connector kind built into the
// binary. Adding a connector means adding one line here.
package all

import (
	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/email"
	"github.com/switchboard-dev/switchboard/internal/connector/httpcall"
	"github.com/switchboard-dev/switchboard/internal/connector/hubspot"
	"github.com/switchboard-dev/switchboard/internal/connector/slack"
	"github.com/switchboard-dev/switchboard/internal/connector/twilio"
)

// Register adds every built-in kind to r.
func Register(r *connector.Registry) {
	email.Register(r)
	httpcall.Register(r)
	hubspot.Register(r)
	slack.Register(r)
	twilio.Register(r)
}

// Registry returns a registry holding every built-in kind.
func Registry() *connector.Registry {
	r := connector.NewRegistry()
	Register(r)
	return r
}
