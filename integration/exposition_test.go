package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// TestPromtoolCheckMetrics lints the exposition with promtool, and checks the
// info metric's master and alias labels and that a bridge port leaving its
// bridge (an AF_BRIDGE RTM_DELLINK) does not delete the device's series.
func TestPromtoolCheckMetrics(t *testing.T) {
	requireRoot(t)
	promtool := requireTool(t, "promtool")
	ns := newNetns(t, "promtool")
	ipBatch(t, ns, []string{
		"link add lwt-br type bridge",
		"link add lwt-x index 110 type veth peer name lwt-y index 210",
		"link set lwt-x master lwt-br",
		"link set lwt-br up",
		"link set lwt-x up",
		"link set lwt-y up",
	})
	ip(t, ns, "link", "set", "lwt-x", "alias", "x y")
	e := startExporter(t, ns)

	// A flap fills the duration histograms of lwt-x.
	ip(t, ns, "link", "set", "lwt-y", "down")
	time.Sleep(100 * time.Millisecond)
	ip(t, ns, "link", "set", "lwt-y", "up")
	eventually(t, 10*time.Second, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		info, err := f.find("linkwatch_link_info", "device", "lwt-x")
		if err != nil {
			return err
		}
		if l := labelsOf(info); l["master"] != "lwt-br" || l["alias"] != "x y" || l["kind"] != "veth" {
			return fmt.Errorf("lwt-x info labels %v, want master lwt-br, alias \"x y\", kind veth", l)
		}
		h, err := f.hist("linkwatch_link_down_duration_seconds", "lwt-x")
		if err != nil {
			return err
		}
		if h.GetSampleCount() != 1 {
			return fmt.Errorf("lwt-x down histogram count %d, want 1", h.GetSampleCount())
		}
		return f.want("linkwatch_link_up", 1, "device", "lwt-x")
	})

	text, err := e.scrapeText()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	} else {
		t.Logf("promtool check metrics: clean (%d bytes, %d lines)", len(text), bytes.Count(text, []byte("\n")))
	}

	// Leaving the bridge sends an RTM_DELLINK of family AF_BRIDGE about
	// the port: the device itself lives on.
	f := e.scrape(t)
	dellinks := f.get(t, "linkwatch_netlink_messages_total", "type", "dellink")
	ip(t, ns, "link", "set", "lwt-x", "nomaster")
	eventually(t, 10*time.Second, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		n, err := f.num("linkwatch_netlink_messages_total", "type", "dellink")
		if err != nil {
			return err
		}
		if n <= dellinks {
			return fmt.Errorf("no RTM_DELLINK received yet (%v)", n)
		}
		info, err := f.find("linkwatch_link_info", "device", "lwt-x")
		if err != nil {
			return err
		}
		if l := labelsOf(info); l["master"] != "" || l["alias"] != "x y" {
			return fmt.Errorf("lwt-x info labels %v after nomaster, want no master and alias \"x y\"", l)
		}
		return nil
	})
	f = e.scrape(t)
	for _, m := range []string{"linkwatch_link_up", "linkwatch_link_carrier", "linkwatch_link_admin_up"} {
		if err := f.want(m, 1, "device", "lwt-x"); err != nil {
			t.Errorf("after leaving the bridge: %v", err)
		}
	}
	if h, err := f.hist("linkwatch_link_down_duration_seconds", "lwt-x"); err != nil || h.GetSampleCount() != 1 {
		t.Errorf("after leaving the bridge the down histogram of lwt-x is %v (%v), want its one observation kept", h, err)
	}
	if err := f.want("linkwatch_links", 4); err != nil { // lo, lwt-br, lwt-x, lwt-y
		t.Error(err)
	}
}

// TestNativeHistograms checks the protobuf exposition of the duration
// histograms with --collector.native-histograms: native and classic buckets
// in one sample.
func TestNativeHistograms(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t, "native")
	ipBatch(t, ns, []string{
		"link add lwt-a index 120 type veth peer name lwt-b index 220",
		"link set lwt-a up",
		"link set lwt-b up",
	})
	e := startExporter(t, ns, "--collector.native-histograms")
	ip(t, ns, "link", "set", "lwt-b", "down")
	time.Sleep(200 * time.Millisecond)
	ip(t, ns, "link", "set", "lwt-b", "up")

	const accept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
	var h, lo *dto.Histogram
	eventually(t, 10*time.Second, func() error {
		body, hdr, err := e.get("/metrics", accept)
		if err != nil {
			return err
		}
		if ct := hdr.Get("Content-Type"); !strings.Contains(ct, "encoding=delimited") {
			return fmt.Errorf("Content-Type %q, want delimited protobuf", ct)
		}
		fams := make(families)
		dec := expfmt.NewDecoder(bytes.NewReader(body), expfmt.NewFormat(expfmt.TypeProtoDelim))
		for {
			var mf dto.MetricFamily
			if err := dec.Decode(&mf); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return fmt.Errorf("decoding protobuf: %w", err)
			}
			fams[mf.GetName()] = &mf
		}
		if h, err = fams.hist("linkwatch_link_down_duration_seconds", "lwt-a"); err != nil {
			return err
		}
		if lo, err = fams.hist("linkwatch_link_down_duration_seconds", "lo"); err != nil {
			return err
		}
		if h.GetSampleCount() != 1 {
			return fmt.Errorf("lwt-a down histogram count %d, want 1", h.GetSampleCount())
		}
		return nil
	})
	t.Logf("lwt-a down histogram: %v", h)
	if h.Schema == nil || h.GetSchema() != 3 {
		t.Errorf("schema %v, want 3", h.Schema)
	}
	if h.ZeroThreshold == nil || h.GetZeroCount() != 0 {
		t.Errorf("zero threshold %v, zero count %d; want a threshold and no zero observations", h.ZeroThreshold, h.GetZeroCount())
	}
	var spanLen uint32
	for _, s := range h.GetPositiveSpan() {
		spanLen += s.GetLength()
	}
	var total int64
	for _, d := range h.GetPositiveDelta() {
		total += d // the first delta is an absolute count
	}
	if spanLen != 1 || len(h.GetPositiveDelta()) != 1 || total != 1 {
		t.Errorf("positive spans %v and deltas %v, want one bucket holding one observation", h.GetPositiveSpan(), h.GetPositiveDelta())
	}
	if len(h.GetNegativeSpan()) != 0 || len(h.GetNegativeDelta()) != 0 {
		t.Errorf("negative buckets %v %v on a duration", h.GetNegativeSpan(), h.GetNegativeDelta())
	}
	// The native bucket must hold the observed duration: bucket i spans
	// (2^((i-1)/8), 2^(i/8)].
	if spans := h.GetPositiveSpan(); len(spans) == 1 {
		idx := float64(spans[0].GetOffset())
		upper, lower := math.Pow(2, idx/8), math.Pow(2, (idx-1)/8)
		if sum := h.GetSampleSum(); sum <= lower || sum > upper {
			t.Errorf("native bucket %v covers (%v, %v], observation was %v", idx, lower, upper, sum)
		}
	}
	// Classic buckets come in the same sample.
	if len(h.GetBucket()) == 0 {
		t.Fatal("no classic buckets next to the native ones")
	}
	for _, b := range h.GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= h.GetSampleSum() {
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("classic bucket le=%v has %d, want %d (observation %v)", b.GetUpperBound(), b.GetCumulativeCount(), want, h.GetSampleSum())
		}
	}
	if sum := h.GetSampleSum(); sum < 0.15 || sum > 0.5 {
		t.Errorf("observed outage %vs, scripted 0.2s", sum)
	}
	// A link without observations is still marked native.
	if lo.Schema == nil || lo.GetSampleCount() != 0 || len(lo.GetPositiveSpan()) == 0 {
		t.Errorf("lo down histogram %v: want an empty native histogram (schema and an empty span)", lo)
	}
}
