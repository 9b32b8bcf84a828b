package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestFlagErrors checks that bad flags stop the exporter with a clear
// message, and --version.
func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		code  int      // 0, or any non-zero exit status if 1
		wants []string // in the output
	}{
		{"descending buckets", []string{"--collector.duration-buckets=1,0.5"}, 1,
			[]string{"--collector.duration-buckets", `bucket \"0.5\"`, "ascending"}},
		{"bad include regexp", []string{"--watcher.device-include=("}, 1,
			[]string{"--watcher.device-include", "missing closing )"}},
		{"version", []string{"--version"}, 0,
			[]string{"linkwatch_exporter, version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Flag errors stop the exporter before it listens; the
			// address keeps it on loopback should it not.
			args := append([]string{"--web.listen-address=127.0.0.1:0"}, tc.args...)
			out, code, took := runBinary(t, 10*time.Second, binary, args...)
			t.Logf("%s: exit status %d after %v:\n%s", strings.Join(tc.args, " "), code, took.Round(time.Millisecond), out)
			switch {
			case tc.code == 0 && code != 0:
				t.Errorf("exit status %d, want 0", code)
			case tc.code != 0 && code <= 0:
				t.Errorf("exit status %d, want a failure", code)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if tc.code != 0 && strings.Contains(out, "Listening on") {
				t.Error("the exporter started serving despite the bad flag")
			}
		})
	}
}

// setprivNobody drops to uid/gid 65534 with no groups and no capabilities.
var setprivNobody = []string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"}

// TestUnprivileged runs the exporter as nobody without capabilities: it
// cannot enter another namespace, but watches its own.
func TestUnprivileged(t *testing.T) {
	requireRoot(t)
	setpriv := requireTool(t, "setpriv")
	ns := newNetns(t, "unpriv")
	ipBatch(t, ns, []string{
		"link add lwt-u1 index 130 type veth peer name lwt-u2 index 230",
		"link set lwt-u1 up",
		"link set lwt-u2 up",
	})

	t.Run("other namespace", func(t *testing.T) {
		args := append(append([]string{}, setprivNobody...), binary,
			"--watcher.netns", ns.Path, "--web.listen-address", freeAddr(t))
		out, code, took := runBinary(t, 10*time.Second, setpriv, args...)
		t.Logf("exit status %d after %v:\n%s", code, took.Round(time.Millisecond), out)
		if code <= 0 {
			t.Errorf("exit status %d, want a failure", code)
		}
		if took > 5*time.Second {
			t.Errorf("took %v to give up, want a few seconds at most", took)
		}
		if !strings.Contains(out, "CAP_SYS_ADMIN") {
			t.Error("no log line mentions CAP_SYS_ADMIN")
		}
	})

	t.Run("own namespace", func(t *testing.T) {
		// The exporter runs inside the namespace, so any port is free on
		// its loopback; the test reaches it with nsGet.
		const addr = "127.0.0.1:9957"
		args := append([]string{"netns", "exec", ns.Name, setpriv}, setprivNobody...)
		args = append(args, binary, "--web.listen-address="+addr)
		p := launch(t, exec.Command("ip", args...))
		pid := p.cmd.Process.Pid
		var body []byte
		eventually(t, 20*time.Second, func() error {
			if p.exited() {
				t.Fatalf("exporter exited: %v\n%s", p.waitErr, p.out.String())
			}
			var err error
			if body, err = nsGet(ns.Path, addr, "/metrics"); err != nil {
				return err
			}
			f, err := parseText(body)
			if err != nil {
				return err
			}
			if err := f.want("linkwatch_watcher_up", 1); err != nil {
				return err
			}
			for _, d := range []string{"lwt-u1", "lwt-u2"} {
				if err := f.want("linkwatch_link_up", 1, "device", d); err != nil {
					return err
				}
			}
			return nil
		})
		// ip netns exec and setpriv exec'd the exporter: same PID.
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			t.Fatal(err)
		}
		fields := procStatus(t, pid)
		t.Logf("pid %d comm %q Uid %q Gid %q CapEff %s", pid, strings.TrimSpace(string(comm)), fields["Uid"], fields["Gid"], fields["CapEff"])
		if got := strings.TrimSpace(string(comm)); !strings.HasPrefix("linkwatch_exporter", got) {
			t.Errorf("pid %d is %q, not the exporter", pid, got)
		}
		if fields["Uid"] != "65534 65534 65534 65534" || fields["Gid"] != "65534 65534 65534 65534" {
			t.Errorf("exporter runs with Uid %q Gid %q, want 65534 throughout", fields["Uid"], fields["Gid"])
		}
		if fields["CapEff"] != "0000000000000000" || fields["CapPrm"] != "0000000000000000" {
			t.Errorf("exporter has capabilities: CapEff %s CapPrm %s", fields["CapEff"], fields["CapPrm"])
		}
		if !strings.Contains(string(body), `linkwatch_link_info{address=`) {
			t.Error("no linkwatch_link_info series")
		}
	})
}
