package integration

import (
	"fmt"
	"testing"
	"time"
)

// TestChurn creates and deletes hundreds of links under a running exporter,
// and renames one, and checks that the exported series follow.
func TestChurn(t *testing.T) {
	requireRoot(t)
	const pairs = 200
	ns := newNetns(t, "churn")
	e := startExporter(t, ns)
	start := e.scrape(t).get(t, "linkwatch_links")
	t.Logf("linkwatch_links at start: %v", start)

	var create, del []string
	names := make(map[string]bool)
	for i := range pairs {
		a, b := fmt.Sprintf("lwt-c%d", i), fmt.Sprintf("lwt-d%d", i)
		create = append(create, fmt.Sprintf("link add %s type veth peer name %s", a, b))
		del = append(del, "link del "+a) // deletes the peer too
		names[a], names[b] = true, true
	}

	created := time.Now()
	ipBatch(t, ns, create)
	took := eventually(t, 30*time.Second, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		if err := f.want("linkwatch_links", start+2*pairs); err != nil {
			return err
		}
		have := f.devices("linkwatch_link_up")
		for n := range names {
			if !have[n] {
				return fmt.Errorf("no linkwatch_link_up series for %s", n)
			}
		}
		return nil
	})
	t.Logf("%d links created and exported after %v (polled %v)", 2*pairs,
		time.Since(created).Round(time.Millisecond), took.Round(time.Millisecond))

	deleted := time.Now()
	ipBatch(t, ns, del)
	eventually(t, 30*time.Second, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		if err := f.want("linkwatch_links", start); err != nil {
			return err
		}
		if left := f.linkSeriesOf(names); len(left) > 0 {
			return fmt.Errorf("%d series of deleted links remain, e.g. %s", len(left), left[0])
		}
		return nil
	})
	t.Logf("%d links deleted and gone from the metrics after %v", 2*pairs, time.Since(deleted).Round(time.Millisecond))

	// Rename: lwt-r1 keeps its history under its new name lwt-rn.
	ipBatch(t, ns, []string{
		"link add lwt-r1 index 301 type veth peer name lwt-r2 index 302",
		"link set lwt-r1 up",
		"link set lwt-r2 up",
	})
	eventually(t, 10*time.Second, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		return f.want("linkwatch_link_up", 1, "device", "lwt-r1")
	})
	ip(t, ns, "link", "set", "lwt-r2", "down")
	time.Sleep(200 * time.Millisecond)
	ip(t, ns, "link", "set", "lwt-r2", "up")
	var downs, ups float64
	var ifindex string
	eventually(t, 10*time.Second, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		if err := f.want("linkwatch_link_up", 1, "device", "lwt-r1"); err != nil {
			return err
		}
		if downs, err = f.num("linkwatch_link_transitions_total", "device", "lwt-r1", "to", "down"); err != nil {
			return err
		}
		if ups, err = f.num("linkwatch_link_transitions_total", "device", "lwt-r1", "to", "up"); err != nil {
			return err
		}
		if downs < 1 {
			return fmt.Errorf("lwt-r1 has %v transitions to down after its peer flapped", downs)
		}
		info, err := f.find("linkwatch_link_info", "device", "lwt-r1")
		if err != nil {
			return err
		}
		ifindex = labelsOf(info)["ifindex"]
		return nil
	})
	if ifindex != "301" {
		t.Errorf("lwt-r1 ifindex label %q, want 301", ifindex)
	}
	t.Logf("lwt-r1 before the rename: ifindex %s, transitions down %v, up %v", ifindex, downs, ups)

	ipBatch(t, ns, []string{
		"link set lwt-r1 down",
		"link set lwt-r1 name lwt-rn",
		"link set lwt-rn up",
	})
	eventually(t, 10*time.Second, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		if left := f.linkSeriesOf(map[string]bool{"lwt-r1": true}); len(left) > 0 {
			return fmt.Errorf("series of the old name remain: %v", left)
		}
		if err := f.want("linkwatch_link_up", 1, "device", "lwt-rn"); err != nil {
			return err
		}
		info, err := f.find("linkwatch_link_info", "device", "lwt-rn")
		if err != nil {
			return err
		}
		if got := labelsOf(info)["ifindex"]; got != ifindex {
			return fmt.Errorf("lwt-rn ifindex label %q, lwt-r1 had %q", got, ifindex)
		}
		d, err := f.num("linkwatch_link_transitions_total", "device", "lwt-rn", "to", "down")
		if err != nil {
			return err
		}
		u, err := f.num("linkwatch_link_transitions_total", "device", "lwt-rn", "to", "up")
		if err != nil {
			return err
		}
		// The history carries over, plus the admin down and up around
		// the rename.
		if d < downs+1 || u < ups+1 {
			return fmt.Errorf("lwt-rn transitions down %v, up %v; lwt-r1 had %v, %v before going down and up once more",
				d, u, downs, ups)
		}
		return nil
	})
	if err := e.scrape(t).want("linkwatch_links", start+2); err != nil {
		t.Error(err)
	}
}
