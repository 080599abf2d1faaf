package packet

import "fmt"

// authCodes are the AUTH reason codes (5.0 §3.15.2.1).
var authCodes = newCodeSet(Success, ContinueAuthentication, ReAuthenticate)

func decodeAuth(body []byte) (*Auth, error) {
	d := decoder{b: body, pkt: "auth"}
	rc, props, err := decodeReasonProps(&d, &authCodes, propsAuth)
	if err != nil {
		return nil, err
	}
	return &Auth{ReasonCode: rc, Properties: props}, nil
}

// Append encodes p; AUTH exists in 5.0 only, so it fails for other versions.
func (p *Auth) Append(dst []byte, v Version) ([]byte, error) {
	if v != V5 {
		return dst, fmt.Errorf("packet: AUTH: does not exist in %v", v)
	}
	return appendReasonProps(dst, AUTH, p.ReasonCode, &p.Properties)
}
