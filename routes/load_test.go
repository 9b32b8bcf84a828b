package routes

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// loadCmpOpts compare Configs: addresses by value and regular expressions by
// their source.
var loadCmpOpts = cmp.Options{
	cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}),
	cmp.Comparer(func(a, b *regexp.Regexp) bool {
		if a == nil || b == nil {
			return a == b
		}
		return a.String() == b.String()
	}),
}

// loadMatcher returns the matcher the loader builds for label and src.
func loadMatcher(label, src string) Matcher {
	return Matcher{Label: label, Regex: regexp.MustCompile("^(?:" + src + ")$"), Source: src}
}

func TestLoadGood(t *testing.T) {
	defaultAlert := AlertMatch{AlertNames: []string{"LinkwatchLinkDown"}, DeviceLabel: "device"}
	tests := []struct {
		name string
		path string
		want *Config
	}{
		{
			name: "the example",
			path: "../linkwatch.example.yml",
			want: &Config{
				Protocol:       229,
				RepairInterval: 10 * time.Second,
				Policies: []Policy{
					{
						Name:     "wan-primary",
						Device:   "eth0",
						Triggers: []Trigger{TriggerLink, TriggerAlert},
						Alert: AlertMatch{
							AlertNames:  []string{"LinkwatchLinkDown"},
							Labels:      []Matcher{loadMatcher("severity", "critical|page")},
							Node:        []Matcher{loadMatcher("instance", "router1(:[0-9]+)?")},
							DeviceLabel: "device",
						},
						Routes: []Route{
							{
								Destination: netip.MustParsePrefix("0.0.0.0/0"),
								Gateway:     netip.MustParseAddr("192.0.2.1"),
								Device:      "eth1",
								Metric:      50,
								Table:       254,
							},
							{
								Destination: netip.MustParsePrefix("198.51.100.0/24"),
								Device:      "eth1",
								Table:       100,
							},
						},
						UpDelay:         30 * time.Second,
						MinFailoverTime: 60 * time.Second,
						Dampening: Dampening{
							Penalty:     1000,
							HalfLife:    15 * time.Minute,
							Suppress:    2000,
							Reuse:       750,
							MaxSuppress: time.Hour,
						},
					},
					{
						Name:     "wan-primary-v6",
						Device:   "eth0",
						Triggers: []Trigger{TriggerLink},
						Alert:    defaultAlert,
						Routes: []Route{{
							Destination: netip.MustParsePrefix("::/0"),
							Gateway:     netip.MustParseAddr("2001:db8::1"),
							Device:      "eth1",
							Metric:      50,
							Table:       254,
						}},
						UpDelay:         30 * time.Second,
						MinFailoverTime: 60 * time.Second,
					},
				},
			},
		},
		{
			name: "a minimal policy with defaults",
			path: "testdata/config/good-minimal.yml",
			want: &Config{
				Protocol:       DefaultProtocol,
				DryRun:         false,
				RepairInterval: 10 * time.Second,
				Policies: []Policy{{
					Name:     "wan",
					Device:   "eth0",
					Triggers: []Trigger{TriggerLink},
					Alert:    defaultAlert,
					Routes: []Route{{
						Destination: netip.MustParsePrefix("0.0.0.0/0"),
						Gateway:     netip.MustParseAddr("192.0.2.1"),
						Table:       254,
					}},
					DownDelay:       0,
					UpDelay:         30 * time.Second,
					MinFailoverTime: 60 * time.Second,
					Dampening:       Dampening{},
				}},
			},
		},
		{
			name: "an IPv6 policy",
			path: "testdata/config/good-ipv6.yml",
			want: &Config{
				Protocol:       250,
				DryRun:         true,
				RepairInterval: 90 * time.Second,
				Policies: []Policy{{
					Name:     "wan6",
					Device:   "eth0",
					Triggers: []Trigger{TriggerAlert, TriggerLink},
					Alert: AlertMatch{
						AlertNames: []string{"LinkDown", "UpstreamUnreachable"},
						Labels: []Matcher{
							loadMatcher("env", "prod"),
							loadMatcher("severity", "critical|page"),
						},
						Node:        []Matcher{loadMatcher("instance", `\[2001:db8::10\](:[0-9]+)?`)},
						DeviceLabel: "",
					},
					Routes: []Route{
						{
							Destination: netip.MustParsePrefix("::/0"),
							Gateway:     netip.MustParseAddr("2001:db8:1::1"),
							Device:      "eth1",
							Metric:      100,
							Table:       200,
						},
						{
							Destination: netip.MustParsePrefix("2001:db8:ffff::/48"),
							Device:      "eth1",
							Table:       254,
						},
						{
							Destination: netip.MustParsePrefix("2001:db8:ffff::/48"),
							Device:      "eth2",
							Metric:      10,
							Table:       254,
						},
					},
					DownDelay:       2 * time.Second,
					UpDelay:         time.Minute,
					MinFailoverTime: 24 * time.Hour,
					Dampening: Dampening{
						Penalty:     500.5,
						HalfLife:    15 * time.Minute,
						Suppress:    2000,
						Reuse:       750,
						MaxSuppress: 2 * time.Hour,
					},
				}},
			},
		},
		{
			name: "an empty file",
			path: "testdata/config/good-empty.yml",
			want: &Config{Protocol: DefaultProtocol, RepairInterval: 10 * time.Second},
		},
		{
			name: "a file with only global",
			path: "testdata/config/good-global-only.yml",
			want: &Config{Protocol: DefaultProtocol, RepairInterval: 10 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(tt.path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, loadCmpOpts); diff != "" {
				t.Errorf("Load(%q) mismatch (-want +got):\n%s", tt.path, diff)
			}
		})
	}
}

func TestLoadBad(t *testing.T) {
	tests := []struct {
		name string
		file string
		want string
	}{
		{
			name: "unknown top-level key",
			file: "bad-unknown-top-level-key.yml",
			want: `3: unknown field "polices"`,
		},
		{
			name: "unknown policy key",
			file: "bad-unknown-policy-key.yml",
			want: `5: policies[0]: unknown field "up_dealy"`,
		},
		{
			name: "unknown route key",
			file: "bad-unknown-route-key.yml",
			want: `8: policies[0].routes[0]: unknown field "via"`,
		},
		{
			name: "duplicate key in a mapping",
			file: "bad-duplicate-key.yml",
			want: `8: policies[0].device: duplicate field (first set on line 3)`,
		},
		{
			name: "a string where a list is expected",
			file: "bad-wrong-type.yml",
			want: `4: policies[0].triggers: expected a list, got the string "link"`,
		},
		{
			name: "protocol out of range",
			file: "bad-protocol.yml",
			want: `2: global.protocol: 4 is out of range 5..255 (0 to 4 are the kernel's own protocols)`,
		},
		{
			name: "repair interval of 0",
			file: "bad-repair-interval-zero.yml",
			want: `3: global.repair_interval: must be greater than 0`,
		},
		{
			name: "repair interval with bad syntax",
			file: "bad-repair-interval-syntax.yml",
			want: `2: global.repair_interval: "10 seconds" is not a duration such as 30s, 5m or 1h30m`,
		},
		{
			name: "missing name",
			file: "bad-missing-name.yml",
			want: `2: policies[0]: missing required field "name"`,
		},
		{
			name: "bad name characters",
			file: "bad-name-characters.yml",
			want: `2: policies[0].name: "wan primary" is not a valid name: use only letters, digits, "_", ".", ":" and "-"`,
		},
		{
			name: "duplicate policy name",
			file: "bad-duplicate-name.yml",
			want: `8: policies[1].name: duplicate policy name "wan" (first used on line 2)`,
		},
		{
			name: "missing device",
			file: "bad-missing-device.yml",
			want: `2: policies[0]: missing required field "device"`,
		},
		{
			name: "bad device name",
			file: "bad-device-name.yml",
			want: `3: policies[0].device: "eth0:1" is not a valid interface name`,
		},
		{
			name: "no triggers",
			file: "bad-no-triggers.yml",
			want: `4: policies[0].triggers: must not be empty`,
		},
		{
			name: "unknown trigger",
			file: "bad-unknown-trigger.yml",
			want: `6: policies[0].triggers[1]: unknown trigger "carrier" (want "link" or "alert")`,
		},
		{
			name: "duplicate trigger",
			file: "bad-duplicate-trigger.yml",
			want: `4: policies[0].triggers[2]: duplicate trigger "link"`,
		},
		{
			name: "no routes",
			file: "bad-no-routes.yml",
			want: `5: policies[0].routes: must not be empty`,
		},
		{
			name: "missing routes",
			file: "bad-missing-routes.yml",
			want: `2: policies[0]: missing required field "routes"`,
		},
		{
			name: "bad destination prefix",
			file: "bad-destination.yml",
			want: `6: policies[0].routes[0].destination: "10.0.0.0/33" is neither "default" nor a CIDR prefix`,
		},
		{
			name: "destination with host bits",
			file: "bad-destination-host-bits.yml",
			want: `6: policies[0].routes[0].destination: "10.1.2.3/16" has host bits set (did you mean 10.1.0.0/16?)`,
		},
		{
			name: "default destination without a gateway",
			file: "bad-default-without-gateway.yml",
			want: `6: policies[0].routes[0].destination: "default" without a gateway is ambiguous: write 0.0.0.0/0 or ::/0`,
		},
		{
			name: "gateway not an IP address",
			file: "bad-gateway.yml",
			want: `9: policies[0].routes[1].gateway: "10.0.0.300" is not an IP address`,
		},
		{
			name: "gateway with a zone",
			file: "bad-gateway-zone.yml",
			want: `7: policies[0].routes[0].gateway: "fe80::1%eth1" has a zone: set the device instead`,
		},
		{
			name: "gateway of the other family",
			file: "bad-gateway-family.yml",
			want: `7: policies[0].routes[0].gateway: IPv6 gateway 2001:db8::1 for IPv4 destination 10.0.0.0/8`,
		},
		{
			name: "route without gateway and device",
			file: "bad-route-without-gateway-and-device.yml",
			want: `6: policies[0].routes[0]: needs a gateway, a device or both`,
		},
		{
			name: "table 0",
			file: "bad-table-zero.yml",
			want: `8: policies[0].routes[0].table: 0 is not a table: use "main" or a number from 1 to 4294967295 other than 255`,
		},
		{
			name: "table 255",
			file: "bad-table-local.yml",
			want: `8: policies[0].routes[0].table: table local (255) belongs to the kernel`,
		},
		{
			name: "table local by name",
			file: "bad-table-local-name.yml",
			want: `8: policies[0].routes[0].table: table local (255) belongs to the kernel`,
		},
		{
			name: "bad table name",
			file: "bad-table-name.yml",
			want: `8: policies[0].routes[0].table: "backup" is not a table: use "main" or a number from 1 to 4294967295 other than 255`,
		},
		{
			name: "negative metric",
			file: "bad-metric-negative.yml",
			want: `8: policies[0].routes[0].metric: -1 is out of range 0..4294967295`,
		},
		{
			name: "metric too large",
			file: "bad-metric-too-large.yml",
			want: `8: policies[0].routes[0].metric: 4294967296 is out of range 0..4294967295`,
		},
		{
			name: "bad duration",
			file: "bad-duration.yml",
			want: `8: policies[0].up_delay: "30" is not a duration such as 30s, 5m or 1h30m`,
		},
		{
			name: "negative duration",
			file: "bad-duration-negative.yml",
			want: `8: policies[0].down_delay: "-5s" is negative`,
		},
		{
			name: "bad regular expression in a node matcher",
			file: "bad-node-regex.yml",
			want: `7: policies[0].alert.node.instance: "router1(:[0-9]+" is not a valid regular expression: missing closing )`,
		},
		{
			name: "bad label name in labels",
			file: "bad-label-name.yml",
			want: `8: policies[0].alert.labels: "alert-group" is not a valid label name`,
		},
		{
			name: "empty alertname",
			file: "bad-empty-alertname.yml",
			want: `6: policies[0].alert.alertnames[1]: must not be empty`,
		},
		{
			name: "dampening reuse not below suppress",
			file: "bad-dampening-reuse.yml",
			want: `10: policies[0].dampening.suppress: 1500 must be greater than reuse (2000)`,
		},
		{
			name: "dampening half-life of 0",
			file: "bad-dampening-half-life.yml",
			want: `9: policies[0].dampening.half_life: must be greater than 0`,
		},
		{
			name: "dampening max suppress below the half-life",
			file: "bad-dampening-max-suppress.yml",
			want: `10: policies[0].dampening.max_suppress: 20m must not be less than half_life (30m)`,
		},
		{
			name: "the same route in two policies",
			file: "bad-route-conflict-policies.yml",
			want: `13: policies[1].routes[0]: route to 0.0.0.0/0 in table main with metric 50 is already defined by policies[0].routes[0] (line 6)`,
		},
		{
			name: "the same route twice in one policy",
			file: "bad-route-conflict-policy.yml",
			want: `9: policies[0].routes[1]: route to 10.0.0.0/8 in table 100 with metric 0 is already defined by policies[0].routes[0] (line 6)`,
		},
		{
			name: "a second document",
			file: "bad-second-document.yml",
			want: `3: a second YAML document is not allowed`,
		},
		{
			name: "a syntax error",
			file: "bad-syntax.yml",
			want: `2: invalid YAML: did not find expected '-' indicator`,
		},
	}
	tested := make(map[string]bool)
	for _, tt := range tests {
		tested[tt.file] = true
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join("testdata", "config", tt.file)
			cfg, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%q) = %+v, want an error", path, cfg)
			}
			if got, want := err.Error(), path+":"+tt.want; got != want {
				t.Errorf("Load(%q) error:\ngot  %s\nwant %s", path, got, want)
			}
		})
	}

	t.Run("every bad file is tested", func(t *testing.T) {
		files, err := filepath.Glob(filepath.Join("testdata", "config", "bad-*.yml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if !tested[filepath.Base(f)] {
				t.Errorf("%s is not in the table", f)
			}
		}
	})
}

func TestParseErrors(t *testing.T) {
	const policy = "policies:\n  - name: wan\n    device: eth0\n    triggers: [link]\n    routes:\n"
	tests := []struct {
		name string
		data string
		want string
	}{
		{
			name: "a list at the top",
			data: "- name: wan\n",
			want: "p.yml:1: expected a mapping, got a list",
		},
		{
			name: "policies not a list",
			data: "policies:\n  name: wan\n",
			want: "p.yml:2: policies: expected a list, got a mapping",
		},
		{
			name: "a policy that is not a mapping",
			data: "policies:\n  - wan\n",
			want: `p.yml:2: policies[0]: expected a mapping, got the string "wan"`,
		},
		{
			name: "unknown global key",
			data: "global:\n  dryrun: true\n",
			want: `p.yml:2: global: unknown field "dryrun"`,
		},
		{
			name: "unknown alert key",
			data: policy + "      - {destination: default, gateway: 192.0.2.1}\n    alert:\n      alertname: [X]\n",
			want: `p.yml:8: policies[0].alert: unknown field "alertname"`,
		},
		{
			name: "duplicate top-level key",
			data: "global: {}\nglobal: {}\n",
			want: "p.yml:2: global: duplicate field (first set on line 1)",
		},
		{
			name: "duplicate label in a matcher",
			data: policy + "      - {destination: default, gateway: 192.0.2.1}\n    alert:\n      labels: {a: x, a: y}\n",
			want: "p.yml:8: policies[0].alert.labels.a: duplicate field (first set on line 8)",
		},
		{
			name: "a quoted protocol",
			data: "global:\n  protocol: \"229\"\n",
			want: `p.yml:2: global.protocol: expected an integer, got the string "229"`,
		},
		{
			name: "protocol too large",
			data: "global:\n  protocol: 256\n",
			want: "p.yml:2: global.protocol: 256 is out of range 5..255 (0 to 4 are the kernel's own protocols)",
		},
		{
			name: "a huge metric",
			data: policy + "      - {destination: default, gateway: 192.0.2.1, metric: 99999999999999999999999}\n",
			want: "p.yml:6: policies[0].routes[0].metric: 99999999999999999999999 is out of range 0..4294967295",
		},
		{
			name: "a fractional metric",
			data: policy + "      - {destination: default, gateway: 192.0.2.1, metric: 1.5}\n",
			want: "p.yml:6: policies[0].routes[0].metric: expected an integer, got 1.5",
		},
		{
			name: "dry run not a boolean",
			data: "global:\n  dry_run: yes\n",
			want: `p.yml:2: global.dry_run: expected true or false, got the string "yes"`,
		},
		{
			name: "a duration out of range",
			data: "global:\n  repair_interval: 300y\n",
			want: `p.yml:2: global.repair_interval: "300y" is out of range`,
		},
		{
			name: "an infinite penalty",
			data: policy + "      - {destination: default, gateway: 192.0.2.1}\n    dampening: {penalty: .inf}\n",
			want: "p.yml:7: policies[0].dampening.penalty: expected a finite number, got .inf",
		},
		{
			name: "a reuse above the default suppress",
			data: policy + "      - {destination: default, gateway: 192.0.2.1}\n    dampening: {reuse: 3000}\n",
			want: "p.yml:7: policies[0].dampening.reuse: 3000 must be less than suppress (2000)",
		},
		{
			name: "a half-life above the default max suppress",
			data: policy + "      - {destination: default, gateway: 192.0.2.1}\n    dampening: {half_life: 2h}\n",
			want: "p.yml:7: policies[0].dampening.half_life: 2h must not be greater than max_suppress (1h)",
		},
		{
			name: "a null name",
			data: "policies:\n  - name:\n    device: eth0\n",
			want: "p.yml:2: policies[0].name: must not be empty",
		},
		{
			name: "a bad device label",
			data: policy + "      - {destination: default, gateway: 192.0.2.1}\n    alert: {device_label: if-name}\n",
			want: `p.yml:7: policies[0].alert.device_label: "if-name" is not a valid label name`,
		},
		{
			name: "no alertnames",
			data: policy + "      - {destination: default, gateway: 192.0.2.1}\n    alert: {alertnames: []}\n",
			want: "p.yml:7: policies[0].alert.alertnames: must not be empty",
		},
		{
			name: "a regular expression that escapes its anchors",
			data: policy + "      - {destination: default, gateway: 192.0.2.1}\n    alert:\n      labels: {job: \"a)|(b\"}\n",
			want: `p.yml:8: policies[0].alert.labels.job: "a)|(b" is not a valid regular expression: unexpected )`,
		},
		{
			name: "a matcher on a list",
			data: policy + "      - {destination: default, gateway: 192.0.2.1}\n    alert:\n      labels: {job: [a]}\n",
			want: "p.yml:8: policies[0].alert.labels.job: expected a string, got a list",
		},
		{
			name: "a custom tag",
			data: policy + "      - {destination: default, gateway: !ip 192.0.2.1}\n",
			want: "p.yml:6: policies[0].routes[0].gateway: expected a string, got a value tagged !ip",
		},
		{
			name: "a syntax error on the first line",
			data: "global: a: b\n",
			want: "p.yml:1: invalid YAML: mapping values are not allowed in this context",
		},
		{
			name: "an unclosed flow sequence",
			data: "global:\n  dry_run: true\npolicies: [\n",
			want: "p.yml:3: invalid YAML: did not find expected node content",
		},
		{
			name: "an unknown anchor",
			data: "global:\n  dry_run: true\npolicies: *pols\n",
			want: "p.yml:3: invalid YAML: unknown anchor 'pols' referenced",
		},
		{
			name: "a control character",
			data: "global:\n  dry_run: \x01true\n",
			want: "p.yml:2: control character U+0001 is not allowed",
		},
		{
			name: "invalid UTF-8",
			data: "global:\n\n  dry_run: \xfftrue\n",
			want: "p.yml:3: invalid UTF-8",
		},
		{
			name: "an empty second document",
			data: "global: {}\n---\n",
			want: "p.yml:2: a second YAML document is not allowed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.data), "p.yml")
			if err == nil {
				t.Fatalf("Parse = %+v, want an error", cfg)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse error:\ngot  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestParseErrorLineWithinFile is the regression test for a FuzzParse
// finding (testdata/fuzz/FuzzParse/da8972bff0a45585): a YAML error at the
// end of a file that does not end in a line feed named the line after the
// last one ("[" gave line 2). The parser points just past the end of the
// file; the line is now kept within the file, with lines counted as YAML
// counts them (CR, NEL, LS and PS break lines too).
func TestParseErrorLineWithinFile(t *testing.T) {
	const msg = "invalid YAML: did not find expected node content"
	tests := []struct {
		name string
		data string
		line int
	}{
		{name: "an open flow sequence alone", data: "[", line: 1},
		{name: "an open flow mapping alone", data: "{", line: 1},
		{name: "no final line feed", data: "global:\n  dry_run: true\npolicies: [", line: 3},
		{name: "a final line feed", data: "global:\n  dry_run: true\npolicies: [\n", line: 3},
		{name: "empty lines at the end", data: "a: 1\nb: [\n\n\n", line: 4},
		{name: "CR line ends", data: "a: [\r\r", line: 2},
		{name: "a CR line end without a final one", data: "a:\r  b: [", line: 2},
		{name: "CR LF line ends", data: "a: 1\r\nb: [\r\n", line: 2},
		{name: "a line separator", data: "a: 1\u2028b: [", line: 2},
		{name: "a next line character", data: "a: 1\u0085b: [\u0085", line: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.data), "p.yml")
			if want := fmt.Sprintf("p.yml:%d: %s", tt.line, msg); err == nil || err.Error() != want {
				t.Errorf("Parse(%q) error:\ngot  %v\nwant %s", tt.data, err, want)
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	defaults := func(p Policy) Policy {
		if p.Name == "" {
			p.Name = "wan"
		}
		p.Device = "eth0"
		p.Triggers = []Trigger{TriggerLink}
		if p.Alert.AlertNames == nil {
			p.Alert = AlertMatch{AlertNames: []string{"LinkwatchLinkDown"}, DeviceLabel: "device"}
		}
		if p.Routes == nil {
			p.Routes = []Route{{
				Destination: netip.MustParsePrefix("0.0.0.0/0"),
				Gateway:     netip.MustParseAddr("192.0.2.1"),
				Table:       254,
			}}
		}
		if p.UpDelay == 0 {
			p.UpDelay = 30 * time.Second
		}
		if p.MinFailoverTime == 0 {
			p.MinFailoverTime = time.Minute
		}
		return p
	}
	const policy = "policies:\n  - name: wan\n    device: eth0\n    triggers: [link]\n"
	const route = "    routes: [{destination: default, gateway: 192.0.2.1}]\n"
	tests := []struct {
		name string
		data string
		want Policy
	}{
		{
			name: "null values take the defaults",
			data: policy + route + "    alert:\n    up_delay:\n    dampening:\n",
			want: defaults(Policy{}),
		},
		{
			name: "an empty dampening section takes the RFC 2439 defaults",
			data: policy + route + "    dampening: {}\n",
			want: defaults(Policy{Dampening: Dampening{
				Penalty:     1000,
				HalfLife:    15 * time.Minute,
				Suppress:    2000,
				Reuse:       750,
				MaxSuppress: time.Hour,
			}}),
		},
		{
			name: "a table in hex and a direct route",
			data: policy + "    routes:\n      - {destination: 10.0.0.0/8, device: eth1, table: 0x100, metric: 1_000}\n",
			want: defaults(Policy{Routes: []Route{{
				Destination: netip.MustParsePrefix("10.0.0.0/8"),
				Device:      "eth1",
				Metric:      1000,
				Table:       256,
			}}}),
		},
		{
			name: "the same destination with different metrics or tables",
			data: policy + "    routes:\n" +
				"      - {destination: default, gateway: 192.0.2.1}\n" +
				"      - {destination: default, gateway: 192.0.2.1, metric: 1}\n" +
				"      - {destination: default, gateway: 192.0.2.1, table: 4294967295}\n" +
				"      - {destination: default, gateway: \"2001:db8::1\"}\n",
			want: defaults(Policy{Routes: []Route{
				{Destination: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.1"), Table: 254},
				{Destination: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.1"), Metric: 1, Table: 254},
				{Destination: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.1"), Table: 4294967295},
				{Destination: netip.MustParsePrefix("::/0"), Gateway: netip.MustParseAddr("2001:db8::1"), Table: 254},
			}}),
		},
		{
			name: "aliases are followed",
			data: policy + route +
				"    alert:\n      node: &node {instance: \"r1:.*\"}\n      labels: *node\n",
			want: defaults(Policy{Alert: AlertMatch{
				AlertNames:  []string{"LinkwatchLinkDown"},
				Labels:      []Matcher{loadMatcher("instance", "r1:.*")},
				Node:        []Matcher{loadMatcher("instance", "r1:.*")},
				DeviceLabel: "device",
			}}),
		},
		{
			name: "a number as a regular expression and a zero duration",
			data: policy + route + "    down_delay: 0\n    alert:\n      labels: {code: 503}\n",
			want: defaults(Policy{Alert: AlertMatch{
				AlertNames:  []string{"LinkwatchLinkDown"},
				Labels:      []Matcher{loadMatcher("code", "503")},
				DeviceLabel: "device",
			}}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.data), "p.yml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := &Config{Protocol: DefaultProtocol, RepairInterval: 10 * time.Second, Policies: []Policy{tt.want}}
			if diff := cmp.Diff(want, cfg, loadCmpOpts); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: got %v, want an error wrapping fs.ErrNotExist", err)
	}
	if err != nil && !strings.HasPrefix(err.Error(), "read policy file: ") {
		t.Errorf("Load of a missing file: got %q, want it to start with %q", err, "read policy file: ")
	}
}

func TestLoadMatcherAnchored(t *testing.T) {
	cfg, err := Parse([]byte("policies:\n  - name: wan\n    device: eth0\n    triggers: [alert]\n"+
		"    routes: [{destination: default, gateway: 192.0.2.1}]\n"+
		"    alert: {node: {instance: \"router1|router2\"}}\n"), "p.yml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	m := cfg.Policies[0].Alert.Node[0]
	tests := []struct {
		name  string
		value string
		want  bool
	}{
		{name: "the first alternative", value: "router1", want: true},
		{name: "the second alternative", value: "router2", want: true},
		{name: "a longer value", value: "router10", want: false},
		{name: "a value with a prefix", value: "xrouter2", want: false},
		{name: "a missing label", value: "", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			labels := map[string]string{}
			if tt.value != "" {
				labels["instance"] = tt.value
			}
			if got := m.Matches(labels); got != tt.want {
				t.Errorf("Matches(instance=%q) = %v, want %v", tt.value, got, tt.want)
			}
		})
	}
}
