package postgres

import (
	"context"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/switchboard-dev/switchboard/internal/store/storetest"
)

// TestConnectionsDetectADeadDatabase: the pool's connections carry the
// keepalive and TCP_USER_TIMEOUT that make a connection to a database that
// vanished fail within about a minute, instead of the many minutes of TCP's
// retransmissions. (What the kernel then does cannot be shown here without
// a packet filter; that the options are on the real connections can.)
func TestConnectionsDetectADeadDatabase(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), storetest.PostgresDSN(t), Options{Migrate: true, MaxConns: 2})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	conn, err := s.pool.Acquire(context.Background())
	require.NoError(t, err)
	defer conn.Release()
	raw, err := conn.Conn().PgConn().Conn().(interface {
		SyscallConn() (syscall.RawConn, error)
	}).SyscallConn()
	require.NoError(t, err)
	var userTimeoutMS, keepalive, idle int
	var serr error
	require.NoError(t, raw.Control(func(fd uintptr) {
		userTimeoutMS, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		if serr == nil {
			keepalive, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		}
		if serr == nil {
			idle, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		}
	}))
	require.NoError(t, serr)
	require.Equal(t, int(userTimeout.Milliseconds()), userTimeoutMS)
	require.Equal(t, 1, keepalive)
	require.Equal(t, 15, idle)
}
