package email

import (
	"crypto/tls"

	"github.com/switchboard-dev/switchboard/internal/connector"
)

// SetTLSConfig replaces the TLS settings of an SMTP system, so a test can
// trust its server's self-signed certificate.
func SetTLSConfig(sys connector.System, cfg *tls.Config) error {
	return sys.(*system).tr.(*smtpTransport).setTLSConfig(cfg)
}
