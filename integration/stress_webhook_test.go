package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Hostile webhook input beyond TestFailoverBadInput's matrix, and failover
// with the least privilege it needs.

const (
	// stHeaderTimeout and stReadTimeout are the exporter's
	// --web.read-header-timeout and --web.read-timeout in
	// TestStressHostileWebhook, shorter than the defaults to keep it quick.
	stHeaderTimeout = 2 * time.Second
	stReadTimeout   = 3 * time.Second
	// stMaxInFlight is the default --webhook.max-in-flight.
	stMaxInFlight = 8
)

// stNote is a notification in compact JSON with the raw alert objects.
func stNote(alerts ...string) []byte {
	return []byte(`{"version":"4","groupKey":"g","status":"firing","receiver":"linkwatch","alerts":[` + strings.Join(alerts, ",") + `]}`)
}

// stAlert is a firing LinkwatchLinkDown alert of instance for lwt-pri in
// compact JSON, with extra raw members appended to its labels.
func stAlert(instance, extraLabels string) string {
	return `{"status":"firing","labels":{"alertname":"` + foAlertName + `","device":"` + foPri + `","instance":"` + instance + `"` +
		extraLabels + `},"startsAt":"2026-01-02T03:04:05Z"}`
}

// stSlowConn dials the exporter, writes head at once and then one byte of
// trickle every interval until the connection fails or stop is closed. It
// returns the connection's first response (nil if it was closed without
// one) and how long after the dial the connection answered or closed.
func stSlowConn(addr, head, trickle string, interval time.Duration, stop <-chan struct{}) (*http.Response, time.Duration, error) {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, head); err != nil {
		return nil, 0, err
	}
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
			if _, err := conn.Write([]byte{trickle[i%len(trickle)]}); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	took := time.Since(start)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
			strings.Contains(err.Error(), "connection reset") {
			return nil, took, nil // closed without an answer
		}
		return nil, took, err
	}
	resp.Body.Close()
	return resp, took, nil
}

// TestStressHostileWebhook attacks the webhook of an exporter that requires
// a bearer token: slow-loris headers and bodies, a flood of large requests,
// and bodies that are very wide, very deep, carry label names and values of
// a megabyte, bytes that are not UTF-8 and duplicate keys. Each must get the
// status the README documents, and no route may change.
func TestStressHostileWebhook(t *testing.T) {
	topo := foNewTopology(t, "sthw")
	dir := foDir(t)
	const token = "st-t0ken"
	e := foStart(t, topo, foWrite(t, filepath.Join(dir, "policy.yml"), foPolicy{Triggers: "[link, alert]"}.yaml()), token,
		"--web.read-header-timeout="+stHeaderTimeout.String(), "--web.read-timeout="+stReadTimeout.String())
	before := foAllRoutes(t, topo.router)
	unchanged := func(when string) {
		t.Helper()
		if e.exited() {
			t.Fatalf("exporter exited %s: %v", when, e.waitErr)
		}
		if err := foInstalled(topo, 0); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	ours := stNote(stAlert(foInstance, ""))

	t.Run("slow-loris headers", func(t *testing.T) {
		const conns = 16
		stop := make(chan struct{})
		defer close(stop)
		var wg sync.WaitGroup
		took := make([]time.Duration, conns)
		errs := make([]error, conns)
		for i := range conns {
			wg.Go(func() {
				var resp *http.Response
				resp, took[i], errs[i] = stSlowConn(e.addr, "POST /webhook/alertmanager HTTP/1.1\r\nHost: lwt\r\nX-Slow: ",
					"abcdefgh", 200*time.Millisecond, stop)
				if errs[i] == nil && resp != nil && resp.StatusCode < 400 {
					errs[i] = fmt.Errorf("answered %s to a request whose headers never ended", resp.Status)
				}
			})
		}
		// The server keeps serving others meanwhile.
		time.Sleep(stHeaderTimeout / 2)
		if _, err := e.tryScrape(); err != nil {
			t.Errorf("scrape during the slow-loris attack: %v", err)
		}
		wg.Wait()
		var slowest time.Duration
		for i := range conns {
			if errs[i] != nil {
				t.Errorf("connection %d: %v", i, errs[i])
			}
			slowest = max(slowest, took[i])
			if took[i] < stHeaderTimeout-100*time.Millisecond || took[i] > stHeaderTimeout+2*time.Second {
				t.Errorf("connection %d trickling headers closed after %v, want about --web.read-header-timeout=%v", i, took[i], stHeaderTimeout)
			}
		}
		t.Logf("MEASURED: %d connections trickling headers closed within %s (read-header-timeout %v)", conns, ms(slowest), stHeaderTimeout)
		unchanged("after slow-loris headers")
	})

	t.Run("slow-loris bodies", func(t *testing.T) {
		conns := 2 * stMaxInFlight
		head := fmt.Sprintf("POST /webhook/alertmanager HTTP/1.1\r\nHost: lwt\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", token, len(ours))
		stop := make(chan struct{})
		defer close(stop)
		var (
			mu    sync.Mutex
			codes = make(map[int]int)
			wg    sync.WaitGroup
		)
		for i := range conns {
			wg.Go(func() {
				resp, took, err := stSlowConn(e.addr, head, string(ours), 200*time.Millisecond, stop)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Errorf("connection %d: %v", i, err)
				case resp == nil:
					t.Errorf("connection %d trickling a body closed after %v without an answer", i, took)
				default:
					codes[resp.StatusCode]++
					if resp.StatusCode == http.StatusBadRequest && (took < stReadTimeout-100*time.Millisecond || took > stReadTimeout+2*time.Second) {
						t.Errorf("connection %d trickling a body answered 400 after %v, want about --web.read-timeout=%v", i, took, stReadTimeout)
					}
				}
			})
			time.Sleep(10 * time.Millisecond) // the first ones take the slots
		}
		wg.Wait()
		t.Logf("MEASURED: %d connections trickling a body: answered %v (max-in-flight %d, read-timeout %v)", conns, codes, stMaxInFlight, stReadTimeout)
		if codes[400]+codes[503] != conns || codes[400] > stMaxInFlight || codes[503] < conns-stMaxInFlight {
			t.Errorf("answers %v; want at most %d 400 (timed out) and the rest 503 (over the limit)", codes, stMaxInFlight)
		}
		// The slots are free again.
		e.notify(t, foPayload("lwt-probe"), 0)
		unchanged("after slow-loris bodies")
	})

	t.Run("flood", func(t *testing.T) {
		const clients, each = 64, 2
		pad := `,"pad":"` + strings.Repeat("p", 1_000_000) + `"`
		body := stNote(stAlert(foOther, pad))
		pid := e.cmd.Process.Pid
		// Writing 5 to clear_refs resets the peak resident set.
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
			t.Fatal(err)
		}
		hwm0, err := procStatusBytes(pid, "VmHWM")
		if err != nil {
			t.Fatal(err)
		}
		base := e.scrape(t)
		var (
			mu     sync.Mutex
			codes  = make(map[int]int)
			resets int // refused while the client was still sending
			failed []error
			wg     sync.WaitGroup
		)
		start := time.Now()
		for range clients {
			wg.Go(func() {
				for range each {
					code, _, _, err := e.webhook(e.newRequest(http.MethodPost, body))
					mu.Lock()
					switch {
					case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
						resets++
					case err != nil:
						failed = append(failed, err)
					default:
						codes[code]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		took := time.Since(start)
		hwm, err := procStatusBytes(pid, "VmHWM")
		if err != nil {
			t.Fatal(err)
		}
		grew := float64(hwm-hwm0) / (1 << 20)
		t.Logf("MEASURED: flood of %d requests of %d bytes from %d clients in %v: answered %v, %d reset while sending, %d failed; "+
			"peak RSS %.0f MiB -> %.0f MiB (+%.0f MiB)",
			clients*each, len(body), clients, took.Round(time.Millisecond), codes, resets, len(failed),
			float64(hwm0)/(1<<20), float64(hwm)/(1<<20), grew)
		if len(failed) > 0 {
			t.Errorf("%d requests failed, the first: %v", len(failed), failed[0])
		}
		if codes[200]+codes[503]+resets != clients*each || codes[503]+resets == 0 {
			t.Errorf("answers %v and %d resets; want only 200 and 503, and some 503 (over the limit)", codes, resets)
		}
		// The server counted a 503 for each reset.
		f := e.scrape(t)
		for code, n := range map[string]int{"200": codes[200], "503": codes[503] + resets} {
			b, _ := base.num("linkwatch_webhook_requests_total", "code", code)
			if err := f.want("linkwatch_webhook_requests_total", b+float64(n), "code", code); err != nil {
				t.Error(err)
			}
		}
		// Without the limit (--webhook.max-in-flight=10000) the peak grew
		// by 775 MiB and requests timed out; with it, by about 80 MiB.
		if grew > 200 {
			t.Errorf("peak RSS grew by %.0f MiB during the flood, want at most 200", grew)
		}
		unchanged("after the flood")
	})

	t.Run("shapes", func(t *testing.T) {
		wideLabels := func(n int) string {
			var b strings.Builder
			for i := range n {
				fmt.Fprintf(&b, `,"k%06d":""`, i)
			}
			return b.String()
		}
		repeat := func(s string, n int, sep string) string { return strings.TrimSuffix(strings.Repeat(s+sep, n), sep) }
		other := stAlert(foOther, "")
		for _, c := range []struct {
			name    string
			body    []byte
			code    int
			matched int // checked for 200; -1 to skip
		}{
			// Very wide.
			{"50,000 labels", stNote(stAlert(foOther, wideLabels(50_000))), 200, 0},
			{"5,000 alerts", stNote(slices.Repeat([]string{other}, 5000)...), 200, 0},
			{"200,000 null alerts", stNote(repeat("null", 200_000, ",")), 400, -1},
			{"unknown array of 300,000", []byte(strings.Replace(string(stNote(other)), `"receiver"`, `"x":[`+repeat("1", 300_000, ",")+`],"receiver"`, 1)), 200, 0},
			// Very deep.
			{"objects nested 20,000 deep", []byte(strings.Replace(string(stNote(other)), `"receiver"`,
				`"x":`+strings.Repeat(`{"a":`, 20_000)+"1"+strings.Repeat("}", 20_000)+`,"receiver"`, 1)), 400, -1},
			{"labels nested 5,000 deep", stNote(stAlert(foOther, `,"x":`+strings.Repeat("[", 5000)+strings.Repeat("]", 5000))), 400, -1},
			// Megabyte labels.
			{"label value of 1 MB", stNote(stAlert(foOther, `,"big":"`+strings.Repeat("v", 1_000_000)+`"`)), 200, 0},
			{"label name of 1 MB", stNote(stAlert(foOther, `,"`+strings.Repeat("n", 1_000_000)+`":"v"`)), 200, 0},
			{"instance of 1 MB", stNote(stAlert(strings.Repeat("r1", 500_000), "")), 200, 0},
			{"label value of 1 MiB", stNote(stAlert(foOther, `,"big":"`+strings.Repeat("v", 1<<20)+`"`)), 413, -1},
			// Not UTF-8.
			{"invalid byte in a label name", stNote(stAlert(foOther, ",\"na\xffme\":\"v\"")), 200, 0},
			{"overlong encoding in instance", stNote(stAlert(foInstance+"\xc0\xaf", "")), 200, 0},
			{"lone surrogate in instance", stNote(stAlert(foInstance+`\ud800`, "")), 200, 0},
			{"surrogate pair for the device", stNote(strings.Replace(stAlert(foInstance, ""), `"device":"`+foPri+`"`, `"device":"lwt-pr\ud835\udc22"`, 1)), 200, 0},
			{"UTF-16 with BOM", append([]byte{0xff, 0xfe}, utf16le(string(ours))...), 400, -1},
			{"UTF-8 BOM", append([]byte{0xef, 0xbb, 0xbf}, ours...), 400, -1},
			{"raw NUL in a string", stNote(stAlert(foOther, `,"x":"a`+"\x00"+`b"`)), 400, -1},
			// Duplicate keys: the last wins, as encoding/json does.
			{"alerts twice, the last empty", []byte(strings.Replace(string(ours), `]}`, `],"alerts":[]}`, 1)), 200, 0},
			{"ALERTS after alerts", []byte(strings.Replace(string(ours), `]}`, `],"ALERTS":[`+other+`]}`, 1)), 200, 0},
			{"instance twice, the last another node's", stNote(stAlert(foInstance, `,"instance":"`+foOther+`"`)), 200, 0},
			{"labels twice, the last another node's", stNote(strings.Replace(stAlert(foInstance, ""), `,"startsAt"`,
				`,"labels":{"alertname":"`+foAlertName+`","device":"`+foPri+`","instance":"`+foOther+`"},"startsAt"`, 1)), 200, 0},
			{"status twice, the last resolved", stNote(strings.Replace(stAlert(foInstance, ""), `"status":"firing"`, `"status":"firing","status":"resolved"`, 1)), 200, -1},
			{"version 3 then 4, other node", []byte(strings.Replace(string(stNote(other)), `"version":"4"`, `"version":"3","version":"4"`, 1)), 200, 0},
		} {
			refused := func() float64 { // as the server counts it
				n, _ := e.scrape(t).num("linkwatch_webhook_requests_total", "code", strconv.Itoa(c.code))
				return n
			}
			before := refused()
			code, resp, took, err := e.webhook(e.newRequest(http.MethodPost, c.body))
			if err != nil && c.code == http.StatusRequestEntityTooLarge && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
				// The server answers an over-limit Content-Length at
				// once and closes; the client may still be writing
				// the body and then sees the reset, not the answer.
				if n := refused(); n != before+1 {
					t.Errorf("%s: %v, and the server counted %v answers %d, want %v", c.name, err, n, c.code, before+1)
				}
				t.Logf("%-40s %8d bytes -> connection reset while sending the body after %s; the server counted a %d", c.name, len(c.body), ms(took), c.code)
				unchanged("after " + c.name)
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			t.Logf("%-40s %8d bytes -> %d in %7s: %.70q", c.name, len(c.body), code, ms(took), strings.TrimSpace(resp))
			if code != c.code {
				t.Errorf("%s: status %d (%q), want %d", c.name, code, resp, c.code)
			}
			if code == 200 && c.matched >= 0 && !strings.Contains(resp, fmt.Sprintf(`"matched":%d`, c.matched)) {
				t.Errorf("%s: answer %q, want %d matched", c.name, resp, c.matched)
			}
			unchanged("after " + c.name)
		}
	})

	time.Sleep(foRepair + 200*time.Millisecond) // a repair pass too
	if after := foAllRoutes(t, topo.router); after != before {
		t.Errorf("routes changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	e.wantTransitions(t, 0, map[[2]string]float64{{"failover", "link"}: 0, {"failover", "alert"}: 0})
}

// utf16le encodes an ASCII string as UTF-16LE.
func utf16le(s string) []byte {
	b := make([]byte, 0, 2*len(s))
	for i := range len(s) {
		b = append(b, s[i], 0)
	}
	return b
}

// TestStressLeastPrivilege runs a failover exporter as nobody with only
// CAP_NET_ADMIN, as the README's setpriv line does, inside the router
// namespace: it installs and removes the backup routes, and refuses an
// unauthenticated webhook call without changing anything. (Running as nobody
// without any capability is TestUnprivileged, for monitoring, and
// TestFailoverConfig/unprivileged, which refuses policies and runs a dry
// run.)
func TestStressLeastPrivilege(t *testing.T) {
	topo := foNewTopology(t, "stlp")
	setpriv := requireTool(t, "setpriv")
	dir := foDir(t)
	const token = "lp-t0ken"
	tokenFile := foWrite(t, filepath.Join(dir, "token"), token+"\n")
	policy := foWrite(t, filepath.Join(dir, "policy.yml"), foPolicy{Triggers: "[link, alert]"}.yaml())
	// Inside the namespace any port is free on its loopback; the test
	// reaches it with nsDo.
	const addr = "127.0.0.1:9957"
	args := []string{"netns", "exec", topo.router.Name, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all,+net_admin", "--ambient-caps=+net_admin", "--bounding-set=-all,+net_admin",
		binary, "--web.listen-address=" + addr, "--config.file", policy, "--webhook.bearer-token-file", tokenFile}
	p := launch(t, exec.Command("ip", args...))
	// A foExporter only to build requests to that address.
	client := &foExporter{exporter: &exporter{addr: addr}, token: token}
	scrape := func() (families, error) {
		if p.exited() {
			t.Fatalf("exporter exited: %v\n%s", p.waitErr, p.out.String())
		}
		body, err := nsGet(topo.router.Path, addr, "/metrics")
		if err != nil {
			return nil, err
		}
		return parseText(body)
	}
	eventually(t, 20*time.Second, func() error {
		f, err := scrape()
		if err != nil {
			return err
		}
		if err := f.want("linkwatch_watcher_up", 1); err != nil {
			return err
		}
		return f.want("linkwatch_failover_active", 0, "policy", foPolicyName)
	})
	fields := procStatus(t, p.cmd.Process.Pid)
	const netAdmin = "0000000000001000" // 1 << CAP_NET_ADMIN (12)
	t.Logf("exporter pid %d: Uid %q CapEff %s CapPrm %s CapBnd %s CapAmb %s", p.cmd.Process.Pid,
		fields["Uid"], fields["CapEff"], fields["CapPrm"], fields["CapBnd"], fields["CapAmb"])
	if fields["Uid"] != "65534 65534 65534 65534" {
		t.Errorf("exporter runs with Uid %q, want 65534 throughout", fields["Uid"])
	}
	for _, c := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if fields[c] != netAdmin {
			t.Errorf("%s = %s, want only CAP_NET_ADMIN (%s)", c, fields[c], netAdmin)
		}
	}

	post := func(req *http.Request) int {
		t.Helper()
		code, body, err := nsDo(topo.router.Path, req)
		if err != nil {
			t.Fatalf("webhook: %v", err)
		}
		t.Logf("webhook %q -> %d %s", req.Header.Get("Authorization"), code, bytes.TrimSpace(body))
		return code
	}
	firing := foPayload(foGroupKey(foInstance), foLinkAlert("firing", foInstance, foPri))
	for _, auth := range []string{"", "Bearer wrong", "Basic " + token} {
		req := client.newRequest(http.MethodPost, firing)
		req.Header.Del("Authorization")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if code := post(req); code != http.StatusUnauthorized {
			t.Errorf("webhook with Authorization %q: %d, want 401", auth, code)
		}
	}
	time.Sleep(200 * time.Millisecond)
	foRequireInstalled(t, topo, 0, "after unauthenticated webhook calls")

	// Link trigger: the unprivileged exporter installs and removes routes.
	foCut(t, topo)
	took := foWaitInstalled(t, topo, 50, 2*time.Second)
	failback := foWaitFailback(t, topo, foRestore(t, topo))
	// Alert trigger, authenticated.
	if code := post(client.newRequest(http.MethodPost, firing)); code != http.StatusOK {
		t.Fatalf("authenticated firing notification: %d, want 200", code)
	}
	foRequireInstalled(t, topo, 50, "right after the authenticated firing notification")
	resolved := foPayload(foGroupKey(foInstance), foLinkAlert("resolved", foInstance, foPri))
	if code := post(client.newRequest(http.MethodPost, resolved)); code != http.StatusOK {
		t.Fatalf("authenticated resolved notification: %d, want 200", code)
	}
	foWaitInstalled(t, topo, 0, foMinFail+2*time.Second)
	f, err := scrape()
	if err != nil {
		t.Fatal(err)
	}
	if n := f.get(t, "linkwatch_failover_errors_total", "policy", foPolicyName); n != 0 {
		t.Errorf("linkwatch_failover_errors_total = %v with CAP_NET_ADMIN, want 0", n)
	}
	t.Logf("MEASURED: as nobody with only CAP_NET_ADMIN: failover %s after the cut, failback %s after the restore; "+
		"3 unauthenticated calls refused with 401 and no route change; alert failover and failback applied",
		ms(took), ms(failback))
}
