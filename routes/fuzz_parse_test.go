package routes

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// fuzzParseErrorRE is the documented form of every Parse error,
// "FILE:LINE: FIELD_PATH: message" (no FIELD_PATH for the whole document),
// for the file name FuzzParse uses.
var fuzzParseErrorRE = regexp.MustCompile(`(?s)^fuzz\.yml:([1-9][0-9]*): (.+)$`)

// FuzzParse checks that Parse never panics, that every error it returns has
// the documented "FILE:LINE: ..." form with a line inside the file, and that
// every Config it accepts satisfies the validation guarantees the engine
// relies on. The seeds are every policy file under testdata/config and the
// example, plus the hand-written hostile files in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "config", "*.yml"))
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, filepath.Join("..", "linkwatch.example.yml"))
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.yml")
		// The file name is only used in error messages.
		cfg2, err2 := Parse(data, "other.yml")
		if (err == nil) != (err2 == nil) || (cfg == nil) != (cfg2 == nil) {
			t.Fatalf("Parse depends on the file name: %v / %v", err, err2)
		}
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned both a Config and the error %q", err)
			}
			if got, want := err2.Error(), "other.yml"+strings.TrimPrefix(err.Error(), "fuzz.yml"); got != want {
				t.Fatalf("Parse error depends on the file name: %q vs %q", err, err2)
			}
			fuzzCheckParseError(t, data, err)
			return
		}
		if cfg == nil {
			t.Fatal("Parse returned neither a Config nor an error")
		}
		fuzzCheckConfig(t, cfg)
	})
}

// fuzzCheckParseError checks the form of a Parse error.
func fuzzCheckParseError(t *testing.T, data []byte, err error) {
	t.Helper()
	var ce *cfgError
	if !errors.As(err, &ce) || ce.file != "fuzz.yml" {
		t.Fatalf("Parse error %q (%T) is not a cfgError of fuzz.yml", err, err)
	}
	m := fuzzParseErrorRE.FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("Parse error %q does not have the form fuzz.yml:LINE: message", err)
	}
	line, _ := strconv.Atoi(m[1])
	if n := fuzzYAMLLines(data); line > n {
		t.Fatalf("Parse error %q names line %d of a file of %d lines", err, line, n)
	}
}

// fuzzYAMLLines returns the number of lines of data as YAML counts them: it
// breaks lines at LF, CR, CR LF, NEL, LS and PS, and a break at the end does
// not begin another line. An empty file has one line.
func fuzzYAMLLines(data []byte) int {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	breaks := 0
	for _, sep := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
		breaks += strings.Count(s, sep)
		if strings.HasSuffix(s, sep) {
			breaks--
		}
	}
	return 1 + breaks
}

// fuzzCheckConfig checks the guarantees of a Config that Parse accepted.
func fuzzCheckConfig(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.Protocol < cfgMinProtocol {
		t.Fatalf("protocol %d is one of the kernel's", cfg.Protocol)
	}
	if cfg.RepairInterval <= 0 {
		t.Fatalf("repair interval %v", cfg.RepairInterval)
	}
	names := make(map[string]bool)
	routes := make(map[cfgRouteKey]bool)
	for i, p := range cfg.Policies {
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("policy %d (%q): "+format, append([]any{i, p.Name}, args...)...)
		}
		if !cfgPolicyNameRE.MatchString(p.Name) || names[p.Name] {
			fail("invalid or duplicate name")
		}
		names[p.Name] = true
		if !fuzzValidIfName(p.Device) {
			fail("invalid device %q", p.Device)
		}
		if len(p.Triggers) == 0 {
			fail("no triggers")
		}
		for j, tr := range p.Triggers {
			if (tr != TriggerLink && tr != TriggerAlert) || slices.Contains(p.Triggers[:j], tr) {
				fail("invalid or duplicate trigger %q", tr)
			}
		}
		a := p.Alert
		if len(a.AlertNames) == 0 || slices.Contains(a.AlertNames, "") {
			fail("alert names %q", a.AlertNames)
		}
		if a.DeviceLabel != "" && !cfgLabelNameRE.MatchString(a.DeviceLabel) {
			fail("device label %q", a.DeviceLabel)
		}
		for _, ms := range [][]Matcher{a.Labels, a.Node} {
			for j, m := range ms {
				if !cfgLabelNameRE.MatchString(m.Label) || m.Regex == nil ||
					m.Regex.String() != "^(?:"+m.Source+")$" || (j > 0 && ms[j-1].Label >= m.Label) {
					fail("matcher %d %+v: invalid, unanchored or not sorted and unique", j, m)
				}
			}
		}
		if len(p.Routes) == 0 {
			fail("no routes")
		}
		for j, r := range p.Routes {
			rfail := func(why string) { fail("route %d %+v: %s", j, r, why) }
			if !r.Destination.IsValid() || r.Destination.Masked() != r.Destination {
				rfail("invalid or unmasked destination")
			}
			if r.Gateway.IsValid() && (r.Gateway.Zone() != "" || r.Gateway.Is6() != r.Destination.Addr().Is6()) {
				rfail("gateway with a zone or of the other family")
			}
			if !r.Gateway.IsValid() && r.Device == "" {
				rfail("neither gateway nor device")
			}
			if r.Device != "" && !fuzzValidIfName(r.Device) {
				rfail("invalid device")
			}
			if r.Table == 0 || r.Table == cfgTableLocal {
				rfail("table 0 or local")
			}
			key := cfgRouteKey{table: r.Table, destination: r.Destination, metric: r.Metric}
			if routes[key] {
				rfail("a second route with the same table, destination and metric")
			}
			routes[key] = true
		}
		if p.DownDelay < 0 || p.UpDelay < 0 || p.MinFailoverTime < 0 {
			fail("negative delay")
		}
		d := p.Dampening
		switch {
		case d == Dampening{}:
			// Dampening is off.
		case !(d.Penalty > 0) || !(d.Suppress > 0) || !(d.Reuse > 0) ||
			math.IsInf(d.Penalty, 0) || math.IsInf(d.Suppress, 0) || math.IsInf(d.Reuse, 0):
			fail("dampening %+v: penalty, suppress and reuse must be finite and positive", d)
		case d.Reuse >= d.Suppress:
			fail("dampening %+v: reuse must be less than suppress", d)
		case d.HalfLife <= 0 || d.MaxSuppress < d.HalfLife:
			fail("dampening %+v: half-life must be positive and at most max_suppress", d)
		}
	}
}

// fuzzValidIfName reports whether s can be a Linux interface name.
func fuzzValidIfName(s string) bool {
	return s != "" && len(s) <= cfgIfNameMax && s != "." && s != ".." && utf8.ValidString(s) &&
		!strings.ContainsAny(s, "/:\x00") && !strings.ContainsFunc(s, unicode.IsSpace)
}
