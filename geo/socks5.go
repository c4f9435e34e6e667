package geo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"

	"github.com/awnumar/memguard"
)

// A small SOCKS5 client (RFC 1928 CONNECT, RFC 1929 username/password), so
// the upstream password never becomes a Go string: it is copied from the
// credential's LockedBuffer into the one authentication message, which is
// wiped as soon as it is written. Hostnames go to the upstream as ATYP
// DOMAINNAME: they are resolved there, never here.

const (
	socksVersion  = 5
	socksNoAuth   = 0x00
	socksUserPass = 0x02
	socksConnect  = 1
	atypIPv4      = 1
	atypDomain    = 3
	atypIPv6      = 4
)

// socksReplyError is a non-zero REP of the CONNECT reply: the upstream
// works but would not or could not reach the target.
type socksReplyError byte

func (e socksReplyError) Error() string {
	switch e {
	case 1:
		return "socks5: general failure"
	case 2:
		return "socks5: connection not allowed by ruleset"
	case 3:
		return "socks5: network unreachable"
	case 4:
		return "socks5: host unreachable"
	case 5:
		return "socks5: connection refused"
	case 6:
		return "socks5: TTL expired"
	case 7:
		return "socks5: command not supported"
	case 8:
		return "socks5: address type not supported"
	}
	return "socks5: reply " + strconv.Itoa(int(e))
}

var (
	errSOCKSAuth     = errors.New("socks5: authentication refused")
	errSOCKSMethod   = errors.New("socks5: no acceptable authentication method")
	errSOCKSProtocol = errors.New("socks5: malformed reply")
)

// socksRequest encodes the CONNECT request for target (host:port).
func socksRequest(target string) ([]byte, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return nil, err
	}
	pn, err := strconv.Atoi(port)
	if err != nil || pn < 1 || pn > 65535 {
		return nil, errors.New("socks5: invalid port")
	}
	req := []byte{socksVersion, socksConnect, 0}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Zone() == "" {
		if ip.Is4() || ip.Is4In6() {
			a := ip.Unmap().As4()
			req = append(append(req, atypIPv4), a[:]...)
		} else {
			a := ip.As16()
			req = append(append(req, atypIPv6), a[:]...)
		}
	} else {
		if host == "" || len(host) > 255 {
			return nil, errors.New("socks5: host name empty or longer than 255 bytes")
		}
		req = append(append(req, atypDomain, byte(len(host))), host...)
	}
	return binary.BigEndian.AppendUint16(req, uint16(pn)), nil
}

// socksExchange writes msg to c and reads len(reply) bytes into reply.
func socksExchange(c net.Conn, msg, reply []byte, step string) error {
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("socks5 %s: %w", step, err)
	}
	if _, err := io.ReadFull(c, reply); err != nil {
		return fmt.Errorf("socks5 %s: %w", step, err)
	}
	return nil
}

// socksGreet offers the server one method (username/password when auth,
// else none) and checks that the server chose it. The health check's probe
// runs this alone.
func socksGreet(c net.Conn, auth bool) error {
	method := byte(socksNoAuth)
	if auth {
		method = socksUserPass
	}
	var b [2]byte
	if err := socksExchange(c, []byte{socksVersion, 1, method}, b[:], "greeting"); err != nil {
		return err
	}
	if b[0] != socksVersion {
		return errSOCKSProtocol
	}
	if b[1] != method { // 0xff too: no acceptable method
		return errSOCKSMethod
	}
	return nil
}

// socksHandshake negotiates on c (already connected to the SOCKS server) a
// CONNECT request req (socksRequest's). pw is the password (nil: no
// authentication); it is copied into the authentication message only, which
// is wiped after the write. user must be set exactly when pw is.
func socksHandshake(c net.Conn, user string, pw []byte, req []byte) error {
	if err := socksGreet(c, pw != nil); err != nil {
		return err
	}
	if pw != nil {
		if len(user) == 0 || len(user) > 255 || len(pw) == 0 || len(pw) > 255 {
			return errors.New("socks5: username and password must be 1-255 bytes")
		}
		msg := make([]byte, 0, 3+len(user)+len(pw))
		msg = append(msg, 1, byte(len(user)))
		msg = append(msg, user...)
		msg = append(msg, byte(len(pw)))
		msg = append(msg, pw...)
		var b [2]byte
		err := socksExchange(c, msg, b[:], "authentication")
		memguard.WipeBytes(msg)
		if err != nil {
			return err
		}
		if b[1] != 0 {
			return errSOCKSAuth
		}
	}
	var rep [4]byte
	if err := socksExchange(c, req, rep[:], "connect"); err != nil {
		return err
	}
	if rep[0] != socksVersion {
		return errSOCKSProtocol
	}
	if rep[1] != 0 {
		return socksReplyError(rep[1])
	}
	var skip int
	switch rep[3] {
	case atypIPv4:
		skip = 4 + 2
	case atypIPv6:
		skip = 16 + 2
	case atypDomain:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return fmt.Errorf("socks5 connect: %w", err)
		}
		skip = int(l[0]) + 2
	default:
		return errSOCKSProtocol
	}
	var bnd [257]byte
	if _, err := io.ReadFull(c, bnd[:skip]); err != nil {
		return fmt.Errorf("socks5 connect: %w", err)
	}
	return nil
}

// dialSOCKS opens a tunnel to target through the SOCKS5 upstream u. A
// target the CONNECT request cannot carry is refused before u is dialed.
func (u *upstream) dialSOCKS(ctx context.Context, target string) (net.Conn, error) {
	req, err := socksRequest(target)
	if err != nil {
		return nil, u.fail(failTarget, "socks5 target", err)
	}
	return u.dialHandshake(ctx, func(c net.Conn) (net.Conn, error) {
		// The password is copied out of the credential's LockedBuffer into
		// a []byte (so the handshake does not hold the credential's lock),
		// used for the one authentication message and wiped when the
		// handshake ends.
		var pw []byte
		if err := u.withCred(ctx, func(b []byte) {
			if b != nil {
				pw = make([]byte, len(b))
				copy(pw, b)
			}
		}); err != nil {
			return nil, err
		}
		user := ""
		if pw != nil {
			user = u.cfg.Username
		}
		herr := socksHandshake(c, user, pw, req)
		memguard.WipeBytes(pw)
		var rep socksReplyError
		switch {
		case herr == nil:
			return c, nil
		case errors.Is(herr, errSOCKSAuth):
			u.dropCred(false)
			return nil, u.fail(failAuth, "socks5 authentication refused", nil)
		case errors.As(herr, &rep):
			return nil, u.fail(failTarget, "socks5 connect refused", herr)
		default:
			return nil, u.fail(failUpstream, "socks5 handshake", herr)
		}
	})
}
