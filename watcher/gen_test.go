package watcher

import (
	"reflect"
	"testing"
	"time"
)

// TestGenCoversEveryField changes each field of a Link in turn and checks
// that sameAs notices, so that a field added to Link cannot be forgotten
// there (and so leave a consumer's cache stale).
func TestGenCoversEveryField(t *testing.T) {
	t.Parallel()
	orig := Link{
		Index: 3, Name: "eth0", Kind: "veth", Address: "02:00:00:00:00:01", Master: "br0", Alias: "a", MTU: 1500,
		AdminUp: true, Carrier: true, OperState: OperUp, Up: true,
		HasCounters: true, CarrierChanges: 3, CarrierUpCount: 2, CarrierDownCount: 1,
		TransitionsUp: 1, TransitionsDown: 1,
		FirstSeen: base, LastChange: base.Add(time.Second),
		DownDurations: Histogram{Count: 1, Sum: 1, Buckets: []uint64{1}},
		UpDurations:   Histogram{Count: 2, Sum: 2, Buckets: []uint64{2}},
		UntimedDown:   1, Gen: 7,
	}
	ignored := map[string]bool{"Gen": true, "Master": true}
	typ := reflect.TypeFor[Link]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		changed := orig
		v := reflect.ValueOf(&changed).Elem().Field(i)
		switch x := v.Addr().Interface().(type) {
		case *string:
			*x += "x"
		case *bool:
			*x = !*x
		case *int32:
			*x++
		case *uint32:
			*x++
		case *uint64:
			*x++
		case *OperState:
			*x++
		case *time.Time:
			*x = x.Add(time.Millisecond)
		case *Histogram:
			x.Count++ // every observation changes the count
		default:
			t.Fatalf("field %s of type %s: teach this test how to change it", f.Name, f.Type)
		}
		if same := changed.sameAs(&orig); same != ignored[f.Name] {
			t.Errorf("changing %s: sameAs = %v, want %v", f.Name, same, ignored[f.Name])
		}
	}
}

func TestGen(t *testing.T) {
	t.Parallel()
	tb := newTable(testBounds, false, filter{})
	gen := func(index int32) uint64 { return tb.links[index].Gen }
	seen := map[uint64]bool{}
	// changes applies u and reports whether the link's Gen changed; every
	// Gen must be new.
	changes := func(d time.Duration, u *update, exact bool) bool {
		t.Helper()
		before := uint64(0)
		if l := tb.links[u.index]; l != nil {
			before = l.Gen
		}
		tb.apply(u, at(d), exact)
		after := gen(u.index)
		if after == before {
			return false
		}
		if seen[after] {
			t.Errorf("Gen %d handed out twice", after)
		}
		seen[after] = true
		return true
	}
	eth0 := newlink(1, "eth0", true, 1, 0)
	if !changes(0, eth0, true) || !changes(0, newlink(2, "eth1", true, 1, 0), true) {
		t.Fatal("new links got no Gen")
	}
	for _, tc := range []struct {
		name string
		d    time.Duration
		u    *update
		want bool
	}{
		{"the same state again, as a dump repeats it", time.Second, eth0, false},
		{"carrier loss", 2 * time.Second, newlink(1, "eth0", false, 1, 1), true},
		{"the same loss again", 3 * time.Second, newlink(1, "eth0", false, 1, 1), false},
		{"carrier back: closes a timed period", 4 * time.Second, newlink(1, "eth0", true, 2, 1), true},
		{"MTU", 5 * time.Second, with(newlink(1, "eth0", true, 2, 1), func(u *update) { u.mtu = 9000 }), true},
		{"alias", 6 * time.Second, with(newlink(1, "eth0", true, 2, 1), func(u *update) { u.mtu, u.alias = 9000, []byte("x") }), true},
		{"master", 7 * time.Second, with(newlink(1, "eth0", true, 2, 1), func(u *update) { u.mtu, u.alias, u.master = 9000, []byte("x"), 2 }), true},
		{"rename", 8 * time.Second, with(newlink(1, "eth9", true, 2, 1), func(u *update) { u.mtu, u.alias, u.master = 9000, []byte("x"), 2 }), true},
		{"a new device on the same ifindex", 9 * time.Second, with(newlink(1, "eth9", true, 1, 0), func(u *update) { u.kind = []byte("dummy") }), true},
	} {
		if got := changes(tc.d, tc.u, true); got != tc.want {
			t.Errorf("%s: Gen changed = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSnapshotIsACopy checks that later observations do not change a
// snapshot or a lookup, although the watcher updates its buckets in place.
func TestSnapshotIsACopy(t *testing.T) {
	t.Parallel()
	tb := newTable(testBounds, false, filter{})
	run(tb, []step{
		{u: newlink(1, "eth0", true, 1, 0), exact: true},
		{at: 2 * time.Second, u: newlink(1, "eth0", false, 1, 1), exact: true},
		{at: 4 * time.Second, u: newlink(1, "eth0", true, 2, 1), exact: true},
	})
	snap := tb.snapshot(nil)
	looked, _ := tb.lookup("eth0")
	want := []uint64{0, 1, 1}
	run(tb, []step{
		{at: 5 * time.Second, u: newlink(1, "eth0", false, 2, 2), exact: true},
		{at: 5500 * time.Millisecond, u: newlink(1, "eth0", true, 3, 2), exact: true},
	})
	if got := tb.links[1].DownDurations.Buckets; !reflect.DeepEqual(got, []uint64{1, 2, 2}) {
		t.Fatalf("live buckets %v", got)
	}
	if got := snap[0].DownDurations.Buckets; !reflect.DeepEqual(got, want) {
		t.Errorf("snapshot buckets changed to %v, want %v", got, want)
	}
	if got := looked.DownDurations.Buckets; !reflect.DeepEqual(got, want) {
		t.Errorf("looked-up buckets changed to %v, want %v", got, want)
	}
}
