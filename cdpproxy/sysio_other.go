//go:build !linux

package cdpproxy

import (
	"errors"
	"net"
)

// sysIO is Linux only; elsewhere every read and write goes through the
// net.Conn.
type sysIO struct{}

const rawMax = 0

var errNoSysIO = errors.New("raw socket I/O is not available")

func newSysIO(net.Conn) *sysIO { return nil }

func (*sysIO) Read([]byte) (int, error)        { return 0, errNoSysIO }
func (*sysIO) write([]byte) (int, error)       { return 0, errNoSysIO }
func (*sysIO) writev(_, _ []byte) (int, error) { return 0, errNoSysIO }
