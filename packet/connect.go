package packet

import "fmt"

// Connect flag bits (3.1.1 §3.1.2.3).
const (
	connectReserved     = 0x01
	connectCleanStart   = 0x02
	connectWill         = 0x04
	connectWillQoSShift = 3
	connectWillRetain   = 0x20
	connectPassword     = 0x40
	connectUsername     = 0x80
)

func decodeConnect(body []byte) (*Connect, error) {
	d := decoder{b: body, pkt: "connect"}
	name, err := d.readStringAlias("protocol name")
	if err != nil {
		return nil, err
	}
	level, err := d.readByte("protocol level")
	if err != nil {
		return nil, err
	}
	c := &Connect{Version: Version(level)}
	switch string(name) {
	case "MQTT":
		c.ProtocolName = "MQTT"
		if level != byte(V311) && level != byte(V5) {
			return nil, d.errorf(ErrUnsupportedVersion, "protocol level %d with protocol name MQTT [MQTT-3.1.2-2]", level) // [MQTT-3.1.2-2]
		}
	case "MQIsdp":
		c.ProtocolName = "MQIsdp"
		if level != byte(V31) {
			return nil, d.errorf(ErrUnsupportedVersion, "protocol level %d with protocol name MQIsdp [MQTT-3.1.2-2]", level) // [MQTT-3.1.2-2]
		}
	default:
		return nil, d.errorf(ErrProtocolError, "protocol name %q [MQTT-3.1.2-1]", name) // [MQTT-3.1.2-1]
	}
	v := c.Version
	flags, err := d.readByte("connect flags")
	if err != nil {
		return nil, err
	}
	if flags&connectReserved != 0 {
		return nil, d.errorf(ErrMalformedPacket, "reserved flag set [MQTT-3.1.2-3]") // [MQTT-3.1.2-3]
	}
	c.CleanStart = flags&connectCleanStart != 0
	willQoS := flags >> connectWillQoSShift & 3
	willRetain := flags&connectWillRetain != 0
	if flags&connectWill == 0 {
		if willQoS != 0 {
			return nil, d.errorf(ErrMalformedPacket, "will QoS %d without will flag [MQTT-3.1.2-11][MQTT-3.1.2-13]", willQoS) // [MQTT-3.1.2-11][MQTT-3.1.2-13]
		}
		if willRetain {
			return nil, d.errorf(ErrMalformedPacket, "will retain without will flag [MQTT-3.1.2-15]") // [MQTT-3.1.2-15]
		}
	} else if willQoS == 3 {
		return nil, d.errorf(ErrMalformedPacket, "will QoS 3 [MQTT-3.1.2-14]") // [MQTT-3.1.2-14]
	}
	c.UsernameFlag = flags&connectUsername != 0
	c.PasswordFlag = flags&connectPassword != 0
	if v != V5 && c.PasswordFlag && !c.UsernameFlag {
		return nil, d.errorf(ErrMalformedPacket, "password flag without user name flag [MQTT-3.1.2-22]") // [MQTT-3.1.2-22] (allowed in 5.0)
	}
	if c.KeepAlive, err = d.readUint16("keep alive"); err != nil {
		return nil, err
	}
	if v == V5 {
		if err := c.Properties.decode(&d, propsConnect); err != nil {
			return nil, err
		}
	}
	// An empty client identifier is left to the broker ([MQTT-3.1.3-6], [MQTT-3.1.3-8]).
	if c.ClientID, err = d.readString("client identifier"); err != nil { // [MQTT-3.1.3-4]
		return nil, err
	}
	if flags&connectWill != 0 {
		w := &Will{QoS: willQoS, Retain: willRetain}
		if v == V5 {
			d.pkt = "connect will"
			if err := w.Properties.decode(&d, propsWill); err != nil {
				return nil, err
			}
			d.pkt = "connect"
		}
		if w.Topic, err = d.readString("will topic"); err != nil {
			return nil, err
		}
		if w.Payload, err = d.readBinary("will payload"); err != nil {
			return nil, err
		}
		c.Will = w
	}
	if c.UsernameFlag {
		if c.Username, err = d.readString("user name"); err != nil { // [MQTT-3.1.2-19]
			return nil, err
		}
	}
	if c.PasswordFlag {
		if c.Password, err = d.readBinary("password"); err != nil { // [MQTT-3.1.2-21]
			return nil, err
		}
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return c, nil
}

// Append encodes p for version v; the protocol name and level written come
// from v ("MQIsdp" 3 for V31, "MQTT" 4 or 5 otherwise), not from
// p.ProtocolName and p.Version. The user name and password are sent when
// their flag is set or their value is non-empty. Will and CONNECT properties
// are sent in 5.0 only.
func (p *Connect) Append(dst []byte, v Version) ([]byte, error) {
	name := "MQTT"
	if v == V31 {
		name = "MQIsdp"
	}
	username := p.UsernameFlag || p.Username != ""
	password := p.PasswordFlag || p.Password != nil
	flags := byte(0)
	if p.CleanStart {
		flags |= connectCleanStart
	}
	if username {
		flags |= connectUsername
	}
	if password {
		flags |= connectPassword
	}
	var s sizer
	s.str("protocol name", len(name))
	s.n += 4 // level, flags, keep alive
	plen := s.props(&p.Properties, v)
	s.str("client identifier", len(p.ClientID))
	wlen := 0
	if w := p.Will; w != nil {
		if w.QoS > 2 {
			s.fail(fmt.Errorf("will QoS %d", w.QoS))
		}
		flags |= connectWill | (w.QoS&3)<<connectWillQoSShift
		if w.Retain {
			flags |= connectWillRetain
		}
		wlen = s.props(&w.Properties, v)
		s.str("will topic", len(w.Topic))
		s.str("will payload", len(w.Payload))
	}
	if username {
		s.str("user name", len(p.Username))
	}
	if password {
		if v != V5 && !username {
			s.fail(fmt.Errorf("password without user name in %v", v))
		}
		s.str("password", len(p.Password))
	}
	if err := s.check(CONNECT, v); err != nil {
		return dst, err
	}
	dst = appendHeader(dst, byte(CONNECT)<<4, s.n)
	dst = appendString(dst, name)
	dst = append(dst, byte(v), flags)
	dst = appendUint16(dst, p.KeepAlive)
	if v == V5 {
		dst = p.Properties.appendTo(dst, plen)
	}
	dst = appendString(dst, p.ClientID)
	if w := p.Will; w != nil {
		if v == V5 {
			dst = w.Properties.appendTo(dst, wlen)
		}
		dst = appendString(dst, w.Topic)
		dst = appendBinary(dst, w.Payload)
	}
	if username {
		dst = appendString(dst, p.Username)
	}
	if password {
		dst = appendBinary(dst, p.Password)
	}
	return dst, nil
}
