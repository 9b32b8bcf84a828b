// Package linkmsg builds realistic rtnetlink link messages for tests and
// benchmarks. Its templates are real RTM_NEWLINK bodies (ifinfomsg and
// attributes, 1476 bytes) that Linux 6.18 sent about a veth device when its
// peer went down and up again: with statistics, AF_SPEC, link info and every
// other attribute the kernel includes, so that decoding costs what it costs in
// production.
package linkmsg

import (
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// Kernel ABI values used to patch the templates.
const (
	sizeofIfInfomsg = 16

	iflaAddress          = 1
	iflaIfname           = 3
	iflaOperstate        = 16
	iflaCarrier          = 33
	iflaCarrierChanges   = 35
	iflaCarrierUpCount   = 47
	iflaCarrierDownCount = 48

	nlaTypeMask = 0x3fff

	iffRunning = 0x40
	iffLowerUp = 0x10000

	operLowerLayerDown = 3
	operUp             = 6
)

// The captured messages, as hex: vA0 (ifindex 3) losing carrier when its peer
// went down, and getting it back.
var (
	//go:embed veth-down.hex
	vethDownHex string
	//go:embed veth-up.hex
	vethUpHex string
)

// VethDown returns a copy of the captured message of a veth losing carrier.
func VethDown() []byte { return mustHex(vethDownHex) }

// VethUp returns a copy of the captured message of a veth getting carrier.
func VethUp() []byte { return mustHex(vethUpHex) }

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil {
		panic("linkmsg: bad template: " + err.Error())
	}
	return b
}

// A Msg is an RTM_NEWLINK body made from the captured "up" message, whose
// carrier state and counters can be changed in place without allocating.
type Msg struct {
	Data []byte

	operOff, carrierOff, changesOff, upOff, downOff int

	// Changes, Up and Down are the carrier counters the message carries.
	Changes, Up, Down uint32
}

// New returns the captured up message as it would be for a veth with the
// given ifindex and name, a hardware address derived from the index, and
// carrier counters 1, 1, 0 (a veth whose peer came up once).
func New(index int32, name string) *Msg {
	tmpl := VethUp()
	out := make([]byte, sizeofIfInfomsg, len(tmpl)+16)
	copy(out, tmpl[:sizeofIfInfomsg])
	binary.NativeEndian.PutUint32(out[4:8], uint32(index))
	walk(tmpl[sizeofIfInfomsg:], func(typ uint16, raw []byte) {
		switch typ {
		case iflaIfname:
			v := append([]byte(name), 0)
			out = appendAttr(out, binary.NativeEndian.Uint16(raw[2:4]), v)
		case iflaAddress:
			start := len(out)
			out = append(out, raw...)
			out[start+4], out[start+5] = 0x02, 0x00 // locally administered
			binary.BigEndian.PutUint32(out[start+4+2:], uint32(index))
		default:
			out = append(out, raw...)
		}
	})
	m := &Msg{Data: out}
	pos := sizeofIfInfomsg
	walk(out[sizeofIfInfomsg:], func(typ uint16, raw []byte) {
		switch typ {
		case iflaOperstate:
			m.operOff = pos + 4
		case iflaCarrier:
			m.carrierOff = pos + 4
		case iflaCarrierChanges:
			m.changesOff = pos + 4
		case iflaCarrierUpCount:
			m.upOff = pos + 4
		case iflaCarrierDownCount:
			m.downOff = pos + 4
		}
		pos += len(raw)
	})
	if m.operOff == 0 || m.carrierOff == 0 || m.changesOff == 0 || m.upOff == 0 || m.downOff == 0 {
		panic("linkmsg: template lacks a carrier attribute")
	}
	m.SetCarrier(true)
	m.SetCounters(1, 1, 0)
	return m
}

// SetCarrier sets the flags, operational state and IFLA_CARRIER of a veth
// that has (operstate up) or has lost (lowerlayerdown) carrier.
func (m *Msg) SetCarrier(carrier bool) {
	flags := binary.NativeEndian.Uint32(m.Data[8:12])
	if carrier {
		flags |= iffRunning | iffLowerUp
		m.Data[m.operOff], m.Data[m.carrierOff] = operUp, 1
	} else {
		flags &^= iffRunning | iffLowerUp
		m.Data[m.operOff], m.Data[m.carrierOff] = operLowerLayerDown, 0
	}
	binary.NativeEndian.PutUint32(m.Data[8:12], flags)
}

// Carrier reports the carrier state the message carries.
func (m *Msg) Carrier() bool { return m.Data[m.carrierOff] != 0 }

// SetCounters sets IFLA_CARRIER_CHANGES, IFLA_CARRIER_UP_COUNT and
// IFLA_CARRIER_DOWN_COUNT.
func (m *Msg) SetCounters(changes, up, down uint32) {
	m.Changes, m.Up, m.Down = changes, up, down
	binary.NativeEndian.PutUint32(m.Data[m.changesOff:], changes)
	binary.NativeEndian.PutUint32(m.Data[m.upOff:], up)
	binary.NativeEndian.PutUint32(m.Data[m.downOff:], down)
}

// Flip turns the message into the next one the kernel sends for the device
// when its carrier changes once: carrier toggled, counters advanced by one.
func (m *Msg) Flip() {
	if m.Carrier() {
		m.SetCarrier(false)
		m.SetCounters(m.Changes+1, m.Up, m.Down+1)
	} else {
		m.SetCarrier(true)
		m.SetCounters(m.Changes+1, m.Up+1, m.Down)
	}
}

// walk calls fn with the type and the raw bytes, header and padding
// included, of each attribute in b.
func walk(b []byte, fn func(typ uint16, raw []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < 4 || l > len(b) {
			panic("linkmsg: malformed template")
		}
		padded := min((l+3)&^3, len(b))
		fn(binary.NativeEndian.Uint16(b[2:4])&nlaTypeMask, b[:padded])
		b = b[padded:]
	}
}

// appendAttr appends an attribute with the raw type field typ (flags kept)
// and value v, padded to 4 bytes.
func appendAttr(b []byte, typ uint16, v []byte) []byte {
	var h [4]byte
	binary.NativeEndian.PutUint16(h[0:2], uint16(4+len(v)))
	binary.NativeEndian.PutUint16(h[2:4], typ)
	b = append(b, h[:]...)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// Index returns the ifindex the message carries.
func (m *Msg) Index() int32 { return int32(binary.NativeEndian.Uint32(m.Data[4:8])) }
