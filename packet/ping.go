package packet

// Append encodes p; PINGREQ is the same in every version.
func (p *Pingreq) Append(dst []byte, v Version) ([]byte, error) {
	var s sizer
	if err := s.check(PINGREQ, v); err != nil {
		return dst, err
	}
	return append(dst, byte(PINGREQ)<<4, 0), nil
}

// Append encodes p; PINGRESP is the same in every version.
func (p *Pingresp) Append(dst []byte, v Version) ([]byte, error) {
	var s sizer
	if err := s.check(PINGRESP, v); err != nil {
		return dst, err
	}
	return append(dst, byte(PINGRESP)<<4, 0), nil
}
