package connectortest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
)

// SMTPMessage is one message an SMTPServer accepted.
type SMTPMessage struct {
	From   string
	Rcpts  []string
	Data   []byte
	TLS    bool   // the message came over STARTTLS
	AuthAs string // the AUTH PLAIN user, "" without AUTH
}

// SMTPOptions configure NewSMTPServer.
type SMTPOptions struct {
	// Username and Password are the only credentials AUTH PLAIN accepts.
	Username, Password string
	// TLS offers STARTTLS under a self-signed certificate for 127.0.0.1;
	// SMTPServer.ClientTLS trusts it.
	TLS bool
	// InsecureAuth offers AUTH without TLS.
	InsecureAuth bool
	// NoAuth accepts mail without AUTH.
	NoAuth bool
	// MailErrs answers MAIL FROM, one reply per transaction, before the
	// server accepts mail.
	MailErrs []*smtp.SMTPError
	// AuthErr, when set, answers every AUTH; RcptErr every RCPT TO.
	AuthErr, RcptErr *smtp.SMTPError
}

// SMTPServer is an in-process SMTP server (go-smtp) on 127.0.0.1 that
// accepts AUTH PLAIN, with STARTTLS or in clear text.
type SMTPServer struct {
	Host string
	Port int
	// ClientTLS trusts the server's certificate (nil without TLS).
	ClientTLS *tls.Config
	// Arrived gets every accepted message while it has room (it buffers
	// 100); Messages and Take have them all.
	Arrived chan SMTPMessage

	opts SMTPOptions

	mu       sync.Mutex // guards the fields below
	mailErrs []*smtp.SMTPError
	tries    int // MAIL FROM commands, and AUTH ones answered by AuthErr
	msgs     []SMTPMessage
	taken    int // msgs[:taken] were returned by Take
}

// NewSMTPServer starts an SMTP server that stops when tb's test ends.
func NewSMTPServer(tb testing.TB, opts SMTPOptions) *SMTPServer {
	tb.Helper()
	ts := &SMTPServer{
		Host:     "127.0.0.1",
		Arrived:  make(chan SMTPMessage, 100),
		opts:     opts,
		mailErrs: append([]*smtp.SMTPError(nil), opts.MailErrs...),
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{srv: ts, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.AllowInsecureAuth = opts.InsecureAuth
	if opts.TLS {
		cert, pool := selfSigned(tb)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ts.ClientTLS = &tls.Config{RootCAs: pool, ServerName: ts.Host, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	ts.Port = ln.Addr().(*net.TCPAddr).Port
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	tb.Cleanup(func() {
		_ = srv.Close()
		// go-smtp's Close only closes listeners its Serve has recorded:
		// when nothing ever connected, cleanup can run before Serve starts,
		// which would then block in Accept for good.
		_ = ln.Close()
		<-done
	})
	return ts
}

// Messages returns every message accepted so far.
func (ts *SMTPServer) Messages() []SMTPMessage {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]SMTPMessage(nil), ts.msgs...)
}

// Take returns the messages accepted since the last Take.
func (ts *SMTPServer) Take() []SMTPMessage {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	msgs := append([]SMTPMessage(nil), ts.msgs[ts.taken:]...)
	ts.taken = len(ts.msgs)
	if len(msgs) == 0 {
		return nil
	}
	return msgs
}

// Tries counts the MAIL FROM commands seen, and the AUTH ones answered by
// SMTPOptions.AuthErr.
func (ts *SMTPServer) Tries() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.tries
}

// smtpSession is one SMTP connection's transaction.
type smtpSession struct {
	srv    *SMTPServer
	conn   *smtp.Conn
	authAs string
	msg    SMTPMessage
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		opts := &s.srv.opts
		if opts.AuthErr != nil {
			s.srv.mu.Lock()
			s.srv.tries++
			s.srv.mu.Unlock()
			return opts.AuthErr
		}
		if username != opts.Username || password != opts.Password {
			return errors.New("invalid credentials")
		}
		s.authAs = username
		return nil
	}), nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.tries++
	if len(s.srv.mailErrs) > 0 {
		err := s.srv.mailErrs[0]
		s.srv.mailErrs = s.srv.mailErrs[1:]
		return err
	}
	if s.authAs == "" && !s.srv.opts.NoAuth {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.msg = SMTPMessage{From: from, TLS: isTLS, AuthAs: s.authAs}
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.srv.opts.RcptErr != nil {
		return s.srv.opts.RcptErr
	}
	s.msg.Rcpts = append(s.msg.Rcpts, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.msg.Data = data
	s.srv.mu.Lock()
	s.srv.msgs = append(s.srv.msgs, s.msg)
	s.srv.mu.Unlock()
	select {
	case s.srv.Arrived <- s.msg:
	default:
	}
	return nil
}

func (s *smtpSession) Reset()        { s.msg = SMTPMessage{} }
func (s *smtpSession) Logout() error { return nil }

// selfSigned makes a certificate for 127.0.0.1 and localhost and a pool
// trusting it.
func selfSigned(tb testing.TB) (tls.Certificate, *x509.CertPool) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(tb, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "switchboard test SMTP"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(tb, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(tb, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
