package watcher

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
)

// Attribute flags as the kernel sets them on the attribute type.
const (
	nlaFNested       = 0x8000 // NLA_F_NESTED
	nlaFNetByteorder = 0x4000 // NLA_F_NET_BYTEORDER

	iffBroadcast = 0x2
	iffRunning   = 0x40
	iffMulticast = 0x1000

	iflaTxqlen    = 13
	iflaProtinfo  = 12
	iflaStats64   = 23
	iflaInfoData  = 2
	arphrdEther   = 1
	vethInfoPeer  = 1
	unknownIflaID = 0x3ff0
)

// ifinfomsg returns a link message body: an ifinfomsg followed by the
// attributes encode adds, laid out the way the kernel sends them.
func ifinfomsg(t testing.TB, family uint8, index int32, flags uint32, encode func(ae *netlink.AttributeEncoder)) []byte {
	t.Helper()
	b := make([]byte, sizeofIfInfomsg)
	b[0] = family
	binary.NativeEndian.PutUint16(b[2:4], arphrdEther)
	binary.NativeEndian.PutUint32(b[4:8], uint32(index))
	binary.NativeEndian.PutUint32(b[8:12], flags)
	binary.NativeEndian.PutUint32(b[12:16], 0xffffffff) // ifi_change
	if encode == nil {
		return b
	}
	ae := netlink.NewAttributeEncoder()
	encode(ae)
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatalf("encode attributes: %v", err)
	}
	return append(b, attrs...)
}

// rawAttr hand-rolls one attribute whose header claims length l (4+len(data)
// if l is 0), padded to 4 bytes, for malformed messages the encoder refuses
// to build.
func rawAttr(typ uint16, l uint16, data []byte) []byte {
	if l == 0 {
		l = uint16(4 + len(data))
	}
	b := make([]byte, 4, 4+len(data)+3)
	binary.NativeEndian.PutUint16(b[0:2], l)
	binary.NativeEndian.PutUint16(b[2:4], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// linkAttrs encodes the usual attributes of a device with carrier counters.
func linkAttrs(name string, carrier bool, up, down uint32) func(ae *netlink.AttributeEncoder) {
	return func(ae *netlink.AttributeEncoder) {
		ae.String(iflaIfname, name)
		ae.Uint32(iflaMTU, 1500)
		op := uint8(OperDown)
		if carrier {
			op = uint8(OperUp)
		}
		ae.Uint8(iflaOperstate, op)
		var c uint8
		if carrier {
			c = 1
		}
		ae.Uint8(iflaCarrier, c)
		ae.Uint32(iflaCarrierChanges, up+down)
		ae.Uint32(iflaCarrierUpCount, up)
		ae.Uint32(iflaCarrierDownCount, down)
	}
}

var updateOpts = []cmp.Option{cmp.AllowUnexported(update{}), cmpopts.EquateEmpty()}

func TestDecodeLink(t *testing.T) {
	t.Parallel()
	mac := []byte{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	upFlags := uint32(iffUp | iffBroadcast | iffRunning | iffMulticast | iffLowerUp)

	tests := []struct {
		name    string
		msgType uint16
		body    []byte
		want    update
		wantErr bool
	}{
		{
			name:    "full veth newlink",
			msgType: rtmNewLink,
			body: ifinfomsg(t, afUnspec, 7, upFlags, func(ae *netlink.AttributeEncoder) {
				ae.String(iflaIfname, "veth0")
				ae.Uint32(iflaTxqlen, 1000) // unknown to the decoder
				ae.Bytes(iflaAddress, mac)
				ae.Uint32(iflaMTU, 9000)
				ae.Uint32(iflaMaster, 3)
				ae.Uint8(iflaOperstate, uint8(OperUp))
				ae.Uint8(iflaCarrier, 1)
				ae.Uint32(iflaCarrierChanges, 5)
				ae.Uint32(iflaCarrierUpCount, 3)
				ae.Uint32(iflaCarrierDownCount, 2)
				ae.Bytes(iflaStats64, make([]byte, 200))
				ae.Nested(iflaLinkinfo, func(nae *netlink.AttributeEncoder) error {
					nae.String(iflaInfoKind, "veth")
					nae.Nested(iflaInfoData, func(nae *netlink.AttributeEncoder) error {
						nae.Uint32(vethInfoPeer, 8)
						return nil
					})
					return nil
				})
				ae.String(iflaIfalias, "uplink to ns1")
			}),
			want: update{
				index: 7, flags: upFlags,
				name: []byte("veth0"), kind: []byte("veth"), alias: []byte("uplink to ns1"), address: mac,
				mtu: 9000, master: 3, operState: OperUp, carrier: true,
				hasOperState: true, hasCarrier: true, hasCounters: true,
				carrierChanges: 5, carrierUp: 3, carrierDown: 2,
			},
		},
		{
			name:    "dellink",
			msgType: rtmDelLink,
			body: ifinfomsg(t, afUnspec, 9, iffBroadcast, func(ae *netlink.AttributeEncoder) {
				ae.String(iflaIfname, "gone0")
			}),
			want: update{deleted: true, index: 9, flags: iffBroadcast, name: []byte("gone0")},
		},
		{
			name:    "bridge port message keeps its family",
			msgType: rtmDelLink,
			body: ifinfomsg(t, afBridge, 4, upFlags, func(ae *netlink.AttributeEncoder) {
				ae.String(iflaIfname, "veth1")
				ae.Uint32(iflaMaster, 2)
				ae.Nested(iflaProtinfo, func(nae *netlink.AttributeEncoder) error {
					nae.Uint8(1, 3) // IFLA_BRPORT_STATE
					return nil
				})
			}),
			want: update{
				deleted: true, family: afBridge, index: 4, flags: upFlags,
				name: []byte("veth1"), master: 2, carrier: true,
			},
		},
		{
			name:    "no carrier attribute falls back to lower up flag",
			msgType: rtmNewLink,
			body: ifinfomsg(t, afUnspec, 1, iffUp|iffLowerUp, func(ae *netlink.AttributeEncoder) {
				ae.String(iflaIfname, "lo")
			}),
			want: update{index: 1, flags: iffUp | iffLowerUp, name: []byte("lo"), carrier: true},
		},
		{
			name:    "no carrier attribute and no lower up flag",
			msgType: rtmNewLink,
			body: ifinfomsg(t, afUnspec, 1, iffUp, func(ae *netlink.AttributeEncoder) {
				ae.String(iflaIfname, "tun0")
			}),
			want: update{index: 1, flags: iffUp, name: []byte("tun0")},
		},
		{
			name:    "carrier attribute wins over lower up flag",
			msgType: rtmNewLink,
			body: ifinfomsg(t, afUnspec, 2, iffUp|iffLowerUp, func(ae *netlink.AttributeEncoder) {
				ae.Uint8(iflaCarrier, 0)
			}),
			want: update{index: 2, flags: iffUp | iffLowerUp, hasCarrier: true},
		},
		{
			name:    "only the up counter",
			msgType: rtmNewLink,
			body: ifinfomsg(t, afUnspec, 2, 0, func(ae *netlink.AttributeEncoder) {
				ae.Uint32(iflaCarrierChanges, 4)
				ae.Uint32(iflaCarrierUpCount, 2)
			}),
			want: update{index: 2, carrierChanges: 4},
		},
		{
			name:    "only the down counter",
			msgType: rtmNewLink,
			body: ifinfomsg(t, afUnspec, 2, 0, func(ae *netlink.AttributeEncoder) {
				ae.Uint32(iflaCarrierDownCount, 2)
			}),
			want: update{index: 2},
		},
		{
			name:    "zero counters are counters",
			msgType: rtmNewLink,
			body: ifinfomsg(t, afUnspec, 2, 0, func(ae *netlink.AttributeEncoder) {
				ae.Uint32(iflaCarrierUpCount, 0)
				ae.Uint32(iflaCarrierDownCount, 0)
			}),
			want: update{index: 2, hasCounters: true},
		},
		{
			name:    "unknown attributes and attribute flags are skipped or masked",
			msgType: rtmNewLink,
			body: ifinfomsg(t, afUnspec, 3, 0, func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unknownIflaID, []byte{1, 2, 3, 4, 5})
				ae.Bytes(unknownIflaID|nlaFNested, rawAttr(1, 0, []byte{9}))
				ae.String(iflaIfalias|nlaFNetByteorder, "flagged")
				ae.String(iflaIfname, "eth0")
				ae.Flag(unknownIflaID+1, true) // zero-length attribute
				ae.Do(iflaLinkinfo|nlaFNested, func() ([]byte, error) {
					return append(rawAttr(7, 0, []byte{1}), rawAttr(iflaInfoKind, 0, []byte("vlan\x00"))...), nil
				})
			}),
			want: update{index: 3, name: []byte("eth0"), alias: []byte("flagged"), kind: []byte("vlan")},
		},
		{
			name:    "name with trailing nul and garbage",
			msgType: rtmNewLink,
			body: ifinfomsg(t, afUnspec, 5, 0, func(ae *netlink.AttributeEncoder) {
				ae.Bytes(iflaIfname, []byte("eth1\x00\x00junk"))
				ae.Bytes(iflaIfalias, []byte("no terminator"))
			}),
			want: update{index: 5, name: []byte("eth1"), alias: []byte("no terminator")},
		},
		{
			name:    "trailing bytes shorter than an attribute header are ignored",
			msgType: rtmNewLink,
			body: append(ifinfomsg(t, afUnspec, 5, 0, func(ae *netlink.AttributeEncoder) {
				ae.String(iflaIfname, "eth2")
			}), 0, 0),
			want: update{index: 5, name: []byte("eth2")},
		},
		{
			name:    "negative index and master",
			msgType: rtmNewLink,
			body: ifinfomsg(t, afUnspec, -1, 0, func(ae *netlink.AttributeEncoder) {
				ae.Uint32(iflaMaster, 0xffffffff)
			}),
			want: update{index: -1, master: -1},
		},
		{
			name:    "truncated ifinfomsg",
			msgType: rtmNewLink,
			body:    ifinfomsg(t, afUnspec, 1, 0, nil)[:sizeofIfInfomsg-1],
			wantErr: true,
		},
		{
			name:    "empty body",
			msgType: rtmNewLink,
			wantErr: true,
		},
		{
			name:    "attribute length runs past the buffer",
			msgType: rtmNewLink,
			body:    append(ifinfomsg(t, afUnspec, 1, 0, nil), rawAttr(iflaIfname, 40, []byte("eth0"))...),
			wantErr: true,
		},
		{
			name:    "attribute length shorter than its header",
			msgType: rtmNewLink,
			body:    append(ifinfomsg(t, afUnspec, 1, 0, nil), rawAttr(iflaIfname, 2, []byte("eth0"))...),
			wantErr: true,
		},
		{
			name:    "too short u32 attribute",
			msgType: rtmNewLink,
			body:    append(ifinfomsg(t, afUnspec, 1, 0, nil), rawAttr(iflaMTU, 0, []byte{0xdc, 0x05})...),
			wantErr: true,
		},
		{
			name:    "too short counter attribute",
			msgType: rtmNewLink,
			body: append(ifinfomsg(t, afUnspec, 1, 0, linkAttrs("eth0", true, 1, 0)),
				rawAttr(iflaCarrierDownCount, 0, []byte{1})...),
			wantErr: true,
		},
		{
			name:    "empty operstate attribute",
			msgType: rtmNewLink,
			body:    append(ifinfomsg(t, afUnspec, 1, 0, nil), rawAttr(iflaOperstate, 0, nil)...),
			wantErr: true,
		},
		{
			name:    "empty carrier attribute",
			msgType: rtmNewLink,
			body:    append(ifinfomsg(t, afUnspec, 1, 0, nil), rawAttr(iflaCarrier, 0, nil)...),
			wantErr: true,
		},
		{
			name:    "malformed nested linkinfo",
			msgType: rtmNewLink,
			body: append(ifinfomsg(t, afUnspec, 1, 0, nil),
				rawAttr(iflaLinkinfo|nlaFNested, 0, rawAttr(iflaInfoKind, 64, []byte("veth\x00")))...),
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// A reused update must not leak fields of the previous message.
			got := update{name: []byte("stale"), hasCounters: true, carrierDown: 99, deleted: true}
			err := decodeLink(tt.msgType, tt.body, &got)
			if tt.wantErr {
				if !errors.Is(err, errShort) {
					t.Fatalf("decodeLink error = %v, want one wrapping %v", err, errShort)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeLink: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, updateOpts...); diff != "" {
				t.Errorf("unexpected update (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeLinkDoesNotAllocate guards the promise that decoding points into
// the message buffer.
func TestDecodeLinkDoesNotAllocate(t *testing.T) {
	body := ifinfomsg(t, afUnspec, 7, iffUp, linkAttrs("eth0", true, 3, 2))
	var u update
	allocs := testing.AllocsPerRun(100, func() {
		if err := decodeLink(rtmNewLink, body, &u); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("decodeLink allocated %v times per message, want 0", allocs)
	}
}

// TestDecodeLinkRtnetlink cross-checks decodeLink against the independent
// encoder and decoder of github.com/jsimonetti/rtnetlink.
func TestDecodeLinkRtnetlink(t *testing.T) {
	t.Parallel()

	t.Run("marshaled by rtnetlink", func(t *testing.T) {
		t.Parallel()
		alias, master := "to the core", uint32(12)
		carrier, up, down, changes := uint8(1), uint32(4), uint32(3), uint32(7)
		m := rtnetlink.LinkMessage{
			Family: afUnspec,
			Type:   arphrdEther,
			Index:  42,
			Flags:  iffUp | iffLowerUp | iffBroadcast,
			Attributes: &rtnetlink.LinkAttributes{
				Name:             "veth42",
				Address:          net.HardwareAddr{0x0e, 1, 2, 3, 4, 5},
				MTU:              1400,
				OperationalState: rtnetlink.OperStateDormant,
				Alias:            &alias,
				Master:           &master,
				Info:             &rtnetlink.LinkInfo{Kind: "veth"},
				// rtnetlink's MarshalBinary (v2.3.0) does not encode these
				// read-only attributes, so they cannot be cross-checked in
				// this direction: the decoder must report them absent. The
				// reverse direction below checks them.
				Carrier:          &carrier,
				CarrierUpCount:   &up,
				CarrierDownCount: &down,
				CarrierChanges:   &changes,
			},
		}
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var got update
		if err := decodeLink(rtmNewLink, b, &got); err != nil {
			t.Fatalf("decodeLink: %v", err)
		}
		want := update{
			index: 42, flags: m.Flags,
			name: []byte("veth42"), kind: []byte("veth"), alias: []byte(alias), address: m.Attributes.Address,
			mtu: 1400, master: 12, operState: OperDormant, hasOperState: true,
			carrier: true, // from IFF_LOWER_UP, as IFLA_CARRIER is not encoded
		}
		if diff := cmp.Diff(want, got, updateOpts...); diff != "" {
			t.Errorf("unexpected update (-want +got):\n%s", diff)
		}
	})

	t.Run("unmarshaled by rtnetlink", func(t *testing.T) {
		t.Parallel()
		body := ifinfomsg(t, afUnspec, 42, iffUp|iffLowerUp, func(ae *netlink.AttributeEncoder) {
			linkAttrs("veth42", false, 9, 10)(ae)
			ae.String(iflaIfalias, "to the core")
			ae.Uint32(iflaMaster, 12)
			ae.Bytes(iflaAddress, []byte{0x0e, 1, 2, 3, 4, 5})
			ae.Nested(iflaLinkinfo, func(nae *netlink.AttributeEncoder) error {
				nae.String(iflaInfoKind, "veth")
				return nil
			})
		})
		var m rtnetlink.LinkMessage
		if err := m.UnmarshalBinary(body); err != nil {
			t.Fatalf("rtnetlink unmarshal: %v", err)
		}
		var u update
		if err := decodeLink(rtmNewLink, body, &u); err != nil {
			t.Fatalf("decodeLink: %v", err)
		}
		a := m.Attributes
		if a.Carrier == nil || a.CarrierUpCount == nil || a.CarrierDownCount == nil || a.CarrierChanges == nil ||
			a.Alias == nil || a.Master == nil || a.Info == nil {
			t.Fatalf("rtnetlink did not decode every attribute: %+v", a)
		}
		type fields struct {
			Index                   int32
			Flags                   uint32
			Name, Kind, Alias       string
			Address                 string
			MTU, Master             uint32
			OperState               uint8
			Carrier                 bool
			Changes, UpCnt, DownCnt uint32
		}
		want := fields{
			Index: int32(m.Index), Flags: m.Flags,
			Name: a.Name, Kind: a.Info.Kind, Alias: *a.Alias, Address: a.Address.String(),
			MTU: a.MTU, Master: *a.Master, OperState: uint8(a.OperationalState),
			Carrier: *a.Carrier != 0, Changes: *a.CarrierChanges, UpCnt: *a.CarrierUpCount, DownCnt: *a.CarrierDownCount,
		}
		got := fields{
			Index: u.index, Flags: u.flags,
			Name: string(u.name), Kind: string(u.kind), Alias: string(u.alias), Address: net.HardwareAddr(u.address).String(),
			MTU: u.mtu, Master: uint32(u.master), OperState: uint8(u.operState),
			Carrier: u.carrier, Changes: u.carrierChanges, UpCnt: u.carrierUp, DownCnt: u.carrierDown,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("decodeLink disagrees with rtnetlink (-want +got):\n%s", diff)
		}
		if got.Carrier || got.UpCnt != 9 || got.DownCnt != 10 {
			t.Errorf("carrier %v, counts %d/%d; want false, 9/10", got.Carrier, got.UpCnt, got.DownCnt)
		}
	})
}

func TestOperStateString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		state OperState
		want  string
	}{
		{name: "unknown", state: OperUnknown, want: "unknown"},
		{name: "lower layer down", state: OperLowerLayerDown, want: "lowerlayerdown"},
		{name: "up", state: OperUp, want: "up"},
		{name: "out of range", state: 7, want: "state7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.state.String(); got != tt.want {
				t.Errorf("OperState(%d).String() = %q, want %q", uint8(tt.state), got, tt.want)
			}
		})
	}
	if len(OperStates) != len(operStateNames) {
		t.Errorf("OperStates has %d states, names %d", len(OperStates), len(operStateNames))
	}
}
