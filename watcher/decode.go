package watcher

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Kernel ABI constants from <linux/rtnetlink.h> and <linux/if_link.h>. They are
// spelled out here, instead of taken from x/sys/unix, so that the pure
// decoding and state code builds and is tested on every platform.
const (
	rtmNewLink = 16 // RTM_NEWLINK
	rtmDelLink = 17 // RTM_DELLINK

	afUnspec = 0 // AF_UNSPEC: the device itself
	afBridge = 7 // AF_BRIDGE: a bridge port message, not a device event

	sizeofIfInfomsg = 16

	iflaAddress          = 1
	iflaIfname           = 3
	iflaMTU              = 4
	iflaMaster           = 10
	iflaOperstate        = 16
	iflaLinkinfo         = 18
	iflaIfalias          = 20
	iflaCarrier          = 33
	iflaCarrierChanges   = 35
	iflaCarrierUpCount   = 47
	iflaCarrierDownCount = 48

	iflaInfoKind = 1

	nlaTypeMask = 0x3fff // strips NLA_F_NESTED and NLA_F_NET_BYTEORDER

	iffUp      = 0x1
	iffLowerUp = 0x10000
)

// OperState is a link's operational state as defined by RFC 2863 and reported
// by the kernel in IFLA_OPERSTATE.
type OperState uint8

// The operational states, in the kernel's numbering.
const (
	OperUnknown OperState = iota
	OperNotPresent
	OperDown
	OperLowerLayerDown
	OperTesting
	OperDormant
	OperUp
)

// OperStates lists every operational state in the kernel's order.
var OperStates = []OperState{
	OperUnknown, OperNotPresent, OperDown, OperLowerLayerDown, OperTesting, OperDormant, OperUp,
}

var operStateNames = [...]string{
	"unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up",
}

// String returns the state's name as used by iproute2 and node_exporter.
func (s OperState) String() string {
	if int(s) < len(operStateNames) {
		return operStateNames[s]
	}
	return fmt.Sprintf("state%d", uint8(s))
}

// An update is one decoded RTM_NEWLINK or RTM_DELLINK message. Its byte slices
// point into the message buffer and are only valid until the next receive, so
// that decoding allocates nothing; apply copies what it keeps.
type update struct {
	deleted bool
	family  uint8
	index   int32
	flags   uint32

	name    []byte
	kind    []byte
	alias   []byte
	address []byte

	mtu       uint32
	master    int32
	operState OperState
	carrier   bool

	hasOperState bool
	hasCarrier   bool
	hasCounters  bool

	carrierChanges uint32
	carrierUp      uint32
	carrierDown    uint32
}

// errShort reports a message or attribute that is cut off.
var errShort = errors.New("message too short")

// decodeLink decodes the body of an RTM_NEWLINK or RTM_DELLINK message (an
// ifinfomsg followed by attributes) into u. Attributes it does not know are
// skipped, so a kernel that adds or grows attributes cannot break decoding.
func decodeLink(msgType uint16, b []byte, u *update) error {
	*u = update{}
	if len(b) < sizeofIfInfomsg {
		return fmt.Errorf("decode ifinfomsg: %w", errShort)
	}
	u.deleted = msgType == rtmDelLink
	u.family = b[0]
	u.index = int32(binary.NativeEndian.Uint32(b[4:8]))
	u.flags = binary.NativeEndian.Uint32(b[8:12])

	var up, down uint32
	var hasUp, hasDown bool
	err := walkAttrs(b[sizeofIfInfomsg:], func(typ uint16, v []byte) error {
		var err error
		switch typ {
		case iflaIfname:
			u.name = cString(v)
		case iflaAddress:
			u.address = v
		case iflaIfalias:
			u.alias = cString(v)
		case iflaMTU:
			u.mtu, err = attrU32(v)
		case iflaMaster:
			var m uint32
			m, err = attrU32(v)
			u.master = int32(m)
		case iflaOperstate:
			if len(v) < 1 {
				return errShort
			}
			u.operState, u.hasOperState = OperState(v[0]), true
		case iflaCarrier:
			if len(v) < 1 {
				return errShort
			}
			u.carrier, u.hasCarrier = v[0] != 0, true
		case iflaCarrierChanges:
			u.carrierChanges, err = attrU32(v)
		case iflaCarrierUpCount:
			up, err = attrU32(v)
			hasUp = true
		case iflaCarrierDownCount:
			down, err = attrU32(v)
			hasDown = true
		case iflaLinkinfo:
			err = walkAttrs(v, func(typ uint16, v []byte) error {
				if typ == iflaInfoKind {
					u.kind = cString(v)
				}
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("attribute %d: %w", typ, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("decode link %d: %w", u.index, err)
	}
	if hasUp && hasDown {
		u.carrierUp, u.carrierDown, u.hasCounters = up, down, true
	}
	if !u.hasCarrier {
		u.carrier = u.flags&iffLowerUp != 0
	}
	return nil
}

// walkAttrs calls fn for each netlink attribute in b.
func walkAttrs(b []byte, fn func(typ uint16, v []byte) error) error {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < 4 || l > len(b) {
			return fmt.Errorf("attribute length %d of %d bytes: %w", l, len(b), errShort)
		}
		if err := fn(binary.NativeEndian.Uint16(b[2:4])&nlaTypeMask, b[4:l]); err != nil {
			return err
		}
		l = (l + 3) &^ 3
		if l >= len(b) {
			return nil
		}
		b = b[l:]
	}
	return nil
}

func attrU32(v []byte) (uint32, error) {
	if len(v) < 4 {
		return 0, errShort
	}
	return binary.NativeEndian.Uint32(v), nil
}

// cString trims the NUL terminator, and anything after it, from a string
// attribute.
func cString(v []byte) []byte {
	for i, c := range v {
		if c == 0 {
			return v[:i]
		}
	}
	return v
}
