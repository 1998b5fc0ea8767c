package postgres

import (
	"net"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// userTimeout is how long data sent to the database may stay
// unacknowledged before the kernel closes the connection (TCP_USER_TIMEOUT).
// It covers the keepalive probes too, so a connection waiting for an answer
// from a database that vanished (a failover that moved its address, a
// partition dropping packets) fails within about idle + userTimeout, where
// TCP's retransmissions would hold it for many minutes. A live database's
// kernel acknowledges at once, so a long query is not affected.
const userTimeout = 45 * time.Second

// dialer returns the dialer of the pool's connections: keepalive probes
// after 15 s of silence, every 5 s, and userTimeout on TCP connections.
// It is the backstop under every call the node makes (the LISTEN
// connection, polls, retention, the console), most of which have no
// deadline of their own; the group commits have theirs
// (store.CommitTimeout).
func dialer() *net.Dialer {
	return &net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 9},
		Control: func(network, _ string, c syscall.RawConn) error {
			if !strings.HasPrefix(network, "tcp") {
				return nil // a Unix socket: the database is on this machine
			}
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout.Milliseconds()))
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
}
