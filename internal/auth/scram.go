package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// SCRAMMethod is the MQTT 5.0 Authentication Method Petrel supports.
const SCRAMMethod = "SCRAM-SHA-256"

// StartAuth begins a SCRAM-SHA-256 exchange (RFC 5802, RFC 7677) against
// the users file's scram_sha256 credentials. Channel binding is not
// supported (gs2 flag "n" or "y" only).
func (s *Service) StartAuth(_ context.Context, ci *broker.ConnectInfo, method string) (broker.AuthExchange, error) {
	if method != SCRAMMethod {
		return nil, packet.BadAuthenticationMethod
	}
	return &scramExchange{s: s, e: s.cur.Load(), ci: ci}, nil
}

// scramExchange is one server-side SCRAM conversation.
type scramExchange struct {
	s  *Service
	e  *engine
	ci *broker.ConnectInfo

	step            int
	attempt         Attempt // the username and address, for the failure limits
	user            *User   // nil for an unknown user: the exchange fails at the proof
	creds           SCRAMCredentials
	gs2Header       string
	clientFirstBare string
	serverFirst     string
	nonce           string
}

var errSCRAM = errors.New("auth: malformed SCRAM message")

// Step answers client-first with server-first, then client-final with
// server-final and the identity.
func (x *scramExchange) Step(_ context.Context, data []byte) ([]byte, *broker.Identity, error) {
	x.step++
	switch x.step {
	case 1:
		out, err := x.first(string(data))
		if err != nil {
			x.s.refused(x.ci, "scram", packet.NotAuthorized, err)
			return nil, nil, packet.NotAuthorized
		}
		// The failure limits of password checks hold for proofs too.
		if err := x.s.checks.admit(x.attempt); err != nil {
			x.s.refused(x.ci, "scram", packet.ConnectionRateExceeded, err)
			return nil, nil, packet.ConnectionRateExceeded
		}
		return []byte(out), nil, nil
	case 2:
		out, id, code, err := x.final(string(data))
		if code == packet.BadUsernameOrPassword {
			x.s.checks.record(x.attempt, false)
		}
		if err != nil {
			x.s.refused(x.ci, "scram", code, err)
			return nil, nil, code
		}
		x.s.checks.record(x.attempt, true)
		id, err = x.s.finish(x.e, x.ci, "scram", id, x.user.SCRAM)
		if err != nil {
			return nil, nil, err
		}
		return []byte(out), id, nil
	}
	return nil, nil, packet.NotAuthorized
}

func (x *scramExchange) first(msg string) (string, error) {
	// gs2-header: gs2-cbind-flag "," [authzid] ","
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok || (flag != "n" && flag != "y") {
		return "", fmt.Errorf("%w: channel binding %q not supported", errSCRAM, flag)
	}
	authz, bare, ok := strings.Cut(rest, ",")
	if !ok || authz != "" {
		return "", fmt.Errorf("%w: authorization identity not supported", errSCRAM)
	}
	x.gs2Header = flag + "," + authz + ","
	x.clientFirstBare = bare
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return "", fmt.Errorf("%w: client-first-message", errSCRAM)
	}
	name, err := saslName(attrs[0][2:])
	if err != nil {
		return "", err
	}
	x.attempt = Attempt{Name: name, Addr: AddrOf(x.ci.RemoteAddr)}
	cnonce := attrs[1][2:]
	if cnonce == "" || strings.ContainsAny(cnonce, ",") {
		return "", fmt.Errorf("%w: nonce", errSCRAM)
	}
	if u, ok := x.e.users[name]; ok && u.scram != nil {
		x.user, x.creds = u, *u.scram
	} else {
		// An unknown user gets a stable fake salt, so the answer does not
		// tell which usernames exist (RFC 5802 section 5.1 "e=").
		x.creds = SCRAMCredentials{Salt: hmacSHA256(x.e.fake, []byte(name))[:16], Iterations: DefaultSCRAMIterations}
	}
	var sn [18]byte
	randRead(sn[:])
	x.nonce = cnonce + base64.RawStdEncoding.EncodeToString(sn[:])
	x.serverFirst = fmt.Sprintf("r=%s,s=%s,i=%d", x.nonce, base64.StdEncoding.EncodeToString(x.creds.Salt), x.creds.Iterations)
	return x.serverFirst, nil
}

func (x *scramExchange) final(msg string) (string, *broker.Identity, packet.ReasonCode, error) {
	withoutProof, proofAttr, ok := cutLast(msg, ",p=")
	if !ok {
		return "", nil, packet.NotAuthorized, fmt.Errorf("%w: client-final-message has no proof", errSCRAM)
	}
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return "", nil, packet.NotAuthorized, fmt.Errorf("%w: client-final-message", errSCRAM)
	}
	cb, err := base64.StdEncoding.DecodeString(attrs[0][2:])
	if err != nil || string(cb) != x.gs2Header {
		return "", nil, packet.NotAuthorized, fmt.Errorf("%w: channel binding does not repeat the gs2 header", errSCRAM)
	}
	if attrs[1][2:] != x.nonce {
		return "", nil, packet.NotAuthorized, fmt.Errorf("%w: nonce mismatch", errSCRAM)
	}
	proof, err := base64.StdEncoding.DecodeString(proofAttr)
	if err != nil || len(proof) != sha256.Size {
		return "", nil, packet.NotAuthorized, fmt.Errorf("%w: proof", errSCRAM)
	}
	authMessage := []byte(x.clientFirstBare + "," + x.serverFirst + "," + withoutProof)
	if x.user == nil {
		return "", nil, packet.BadUsernameOrPassword, errors.New("auth: SCRAM: unknown user")
	}
	sig := hmacSHA256(x.creds.StoredKey, authMessage)
	clientKey := make([]byte, len(proof))
	subtle.XORBytes(clientKey, proof, sig)
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], x.creds.StoredKey) != 1 {
		return "", nil, packet.BadUsernameOrPassword, errors.New("auth: SCRAM: proof does not match")
	}
	serverSig := hmacSHA256(x.creds.ServerKey, authMessage)
	return "v=" + base64.StdEncoding.EncodeToString(serverSig), x.e.userIdentity(x.user), 0, nil
}

// saslName decodes a SCRAM username: "=2C" is ',' and "=3D" is '='.
func saslName(s string) (string, error) {
	if !strings.Contains(s, "=") {
		if s == "" {
			return "", fmt.Errorf("%w: empty username", errSCRAM)
		}
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", fmt.Errorf("%w: bad escape in username", errSCRAM)
		}
		i += 2
	}
	return b.String(), nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
