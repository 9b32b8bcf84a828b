package routes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/netip"
	"os"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// Defaults and limits of the policy file.
const (
	cfgDefaultRepairInterval  = 10 * time.Second
	cfgDefaultUpDelay         = 30 * time.Second
	cfgDefaultMinFailoverTime = 60 * time.Second
	cfgDefaultAlertName       = "LinkwatchLinkDown"
	cfgDefaultDeviceLabel     = "device"

	// cfgMinProtocol is the lowest rtm_protocol the file may claim: 0 to 4
	// are RTPROT_UNSPEC, REDIRECT, KERNEL, BOOT and STATIC.
	cfgMinProtocol = 5

	cfgTableMain  = 254 // RT_TABLE_MAIN
	cfgTableLocal = 255 // RT_TABLE_LOCAL

	// cfgIfNameMax is the longest interface name, IFNAMSIZ-1.
	cfgIfNameMax = 15
)

// cfgDefaultDampening holds the RFC 2439 defaults that a dampening section
// starts from.
var cfgDefaultDampening = Dampening{
	Penalty:     1000,
	HalfLife:    15 * time.Minute,
	Suppress:    2000,
	Reuse:       750,
	MaxSuppress: 60 * time.Minute,
}

var (
	cfgPolicyNameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)
	cfgLabelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	// cfgYAMLLineRE splits the line off a YAML syntax error.
	cfgYAMLLineRE = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)
)

// cfgParserProblems are the problems that the YAML parser, as opposed to its
// scanner, reports. The parser reports their lines 0-based.
var cfgParserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected key":              true,
	"did not find expected '-' indicator":    true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found incompatible YAML document":       true,
	"found duplicate %YAML directive":        true,
	"found duplicate %TAG directive":         true,
}

// Load reads and parses the policy file at path. See Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy file: %w", err)
	}
	return Parse(data, path)
}

// Parse parses and validates a policy file; filename is only used in error
// messages. Unknown and duplicate keys, values of the wrong type and a second
// YAML document are errors. Every error has the form
// "FILE:LINE: FIELD_PATH: message". A file that is empty or has no policies
// is valid and configures no failover.
func Parse(data []byte, filename string) (*Config, error) {
	l := &cfgLoader{file: filename, data: data}
	return l.parse()
}

// A cfgError is a policy file error at a line.
type cfgError struct {
	file string
	line int
	// path is the field, such as policies[0].routes[1].gateway; empty for
	// the whole document.
	path string
	msg  string
}

func (e *cfgError) Error() string {
	if e.path == "" {
		return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.file, e.line, e.path, e.msg)
}

// A cfgLoader parses one policy file.
type cfgLoader struct {
	file string
	data []byte

	// policyLines maps each policy name to the line that defines it.
	policyLines map[string]int
	// routeOwners maps the kernel identity of each route to where it is
	// defined.
	routeOwners map[cfgRouteKey]cfgRouteOwner
}

// A cfgRouteKey is what identifies a route in the kernel, as far as the
// policy file can set it: two routes with the same key are one route.
type cfgRouteKey struct {
	table       uint32
	destination netip.Prefix // the family is the prefix's
	metric      uint32
}

type cfgRouteOwner struct {
	path string
	line int
}

func (l *cfgLoader) errf(line int, path, format string, args ...any) error {
	if line < 1 {
		line = 1
	}
	return &cfgError{file: l.file, line: line, path: path, msg: fmt.Sprintf(format, args...)}
}

func (l *cfgLoader) parse() (*Config, error) {
	if err := l.checkText(); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(l.data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return l.config(nil)
	}
	if err != nil {
		return nil, l.yamlError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, l.yamlError(err)
	default:
		return nil, l.errf(next.Line, "", "a second YAML document is not allowed")
	}
	var root *yaml.Node
	if len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	return l.config(root)
}

// checkText rejects what the YAML decoder would reject without a line: bytes
// that are not UTF-8 and control characters.
func (l *cfgLoader) checkText() error {
	line := 1
	for i := 0; i < len(l.data); {
		r, size := utf8.DecodeRune(l.data[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return l.errf(line, "", "invalid UTF-8")
		case r == '\n':
			line++
		case r == '\t' || r == '\r' || r == 0x85 || r == 0xFEFF:
		case unicode.IsControl(r) || r == 0xFFFE || r == 0xFFFF:
			return l.errf(line, "", "control character %U is not allowed", r)
		}
		i += size
	}
	return nil
}

// yamlError rewrites an error of the YAML decoder into a cfgError.
func (l *cfgLoader) yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := cfgYAMLLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if cfgParserProblems[msg] {
			line++
		}
	} else if name, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
		line = l.aliasLine(strings.TrimSuffix(name, "' referenced"))
	}
	// The parser may point just past the end of the file.
	if n := cfgLineCount(l.data); line > n {
		line = n
	}
	return l.errf(line, "", "invalid YAML: %s", msg)
}

// cfgLineCount returns the number of lines of data as the YAML scanner
// counts them: lines break at LF, CR, CR LF, NEL, LS and PS, and a break at
// the end of the data does not begin another line.
func cfgLineCount(data []byte) int {
	n := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		i += size
		switch r {
		case '\r', '\n', 0x85, 0x2028, 0x2029:
			if r == '\r' && i < len(data) && data[i] == '\n' {
				i++
			}
			if i < len(data) {
				n++
			}
		}
	}
	return n
}

// aliasLine returns the first line that refers to the anchor name, or 1.
func (l *cfgLoader) aliasLine(name string) int {
	for i, text := range strings.Split(string(l.data), "\n") {
		for rest := text; ; {
			j := strings.Index(rest, "*"+name)
			if j < 0 {
				break
			}
			rest = rest[j+1+len(name):]
			if rest == "" || strings.ContainsRune(" \t\r,]}", rune(rest[0])) {
				return i + 1
			}
		}
	}
	return 1
}

func (l *cfgLoader) config(root *yaml.Node) (*Config, error) {
	cfg := &Config{
		Protocol:       DefaultProtocol,
		RepairInterval: cfgDefaultRepairInterval,
	}
	root = cfgResolve(root)
	if root == nil || cfgIsNull(root) {
		return cfg, nil
	}
	f, err := l.fields(root, "", "global", "policies")
	if err != nil {
		return nil, err
	}
	if n := f.opt("global"); n != nil {
		if err := l.global(n, cfg); err != nil {
			return nil, err
		}
	}
	if n := f.opt("policies"); n != nil {
		items, err := l.list(n, "policies")
		if err != nil {
			return nil, err
		}
		l.policyLines = make(map[string]int)
		l.routeOwners = make(map[cfgRouteKey]cfgRouteOwner)
		for i, item := range items {
			p, err := l.policy(item, fmt.Sprintf("policies[%d]", i))
			if err != nil {
				return nil, err
			}
			cfg.Policies = append(cfg.Policies, p)
		}
	}
	return cfg, nil
}

func (l *cfgLoader) global(n *yaml.Node, cfg *Config) error {
	f, err := l.fields(n, "global", "protocol", "dry_run", "repair_interval")
	if err != nil {
		return err
	}
	if v := f.opt("protocol"); v != nil {
		p, err := l.integer(v, f.child("protocol"), cfgMinProtocol, math.MaxUint8,
			" (0 to 4 are the kernel's own protocols)")
		if err != nil {
			return err
		}
		cfg.Protocol = uint8(p)
	}
	if v := f.opt("dry_run"); v != nil {
		if cfg.DryRun, err = l.boolean(v, f.child("dry_run")); err != nil {
			return err
		}
	}
	if v := f.opt("repair_interval"); v != nil {
		if cfg.RepairInterval, err = l.positiveDuration(v, f.child("repair_interval")); err != nil {
			return err
		}
	}
	return nil
}

func (l *cfgLoader) policy(n *yaml.Node, path string) (Policy, error) {
	p := Policy{
		UpDelay:         cfgDefaultUpDelay,
		MinFailoverTime: cfgDefaultMinFailoverTime,
		Alert: AlertMatch{
			AlertNames:  []string{cfgDefaultAlertName},
			DeviceLabel: cfgDefaultDeviceLabel,
		},
	}
	f, err := l.fields(n, path, "name", "device", "triggers", "alert", "routes",
		"down_delay", "up_delay", "min_failover_time", "dampening")
	if err != nil {
		return p, err
	}

	v, err := f.req(l, "name")
	if err != nil {
		return p, err
	}
	if p.Name, err = l.str(v, f.child("name")); err != nil {
		return p, err
	}
	if !cfgPolicyNameRE.MatchString(p.Name) {
		return p, l.errf(v.Line, f.child("name"),
			`%q is not a valid name: use only letters, digits, "_", ".", ":" and "-"`, p.Name)
	}
	if first, ok := l.policyLines[p.Name]; ok {
		return p, l.errf(v.Line, f.child("name"), "duplicate policy name %q (first used on line %d)", p.Name, first)
	}
	l.policyLines[p.Name] = v.Line

	if v, err = f.req(l, "device"); err != nil {
		return p, err
	}
	if p.Device, err = l.device(v, f.child("device")); err != nil {
		return p, err
	}

	if v, err = f.req(l, "triggers"); err != nil {
		return p, err
	}
	if p.Triggers, err = l.triggers(v, f.child("triggers")); err != nil {
		return p, err
	}

	if v := f.opt("alert"); v != nil {
		if err := l.alert(v, f.child("alert"), &p.Alert); err != nil {
			return p, err
		}
	}

	if v, err = f.req(l, "routes"); err != nil {
		return p, err
	}
	items, err := l.list(v, f.child("routes"))
	if err != nil {
		return p, err
	}
	if len(items) == 0 {
		return p, l.errf(v.Line, f.child("routes"), "must not be empty")
	}
	for i, item := range items {
		r, err := l.route(item, fmt.Sprintf("%s.routes[%d]", path, i))
		if err != nil {
			return p, err
		}
		p.Routes = append(p.Routes, r)
	}

	for _, d := range []struct {
		key string
		dst *time.Duration
	}{
		{"down_delay", &p.DownDelay},
		{"up_delay", &p.UpDelay},
		{"min_failover_time", &p.MinFailoverTime},
	} {
		if v := f.opt(d.key); v != nil {
			if *d.dst, err = l.duration(v, f.child(d.key)); err != nil {
				return p, err
			}
		}
	}

	if v := f.opt("dampening"); v != nil {
		if p.Dampening, err = l.dampening(v, f.child("dampening")); err != nil {
			return p, err
		}
	}
	return p, nil
}

// device parses a Linux interface name.
func (l *cfgLoader) device(n *yaml.Node, path string) (string, error) {
	s, err := l.str(n, path)
	if err != nil {
		return "", err
	}
	if len(s) > cfgIfNameMax || s == "." || s == ".." ||
		strings.ContainsAny(s, "/:") || strings.ContainsFunc(s, unicode.IsSpace) {
		return "", l.errf(n.Line, path, "%q is not a valid interface name", s)
	}
	return s, nil
}

func (l *cfgLoader) triggers(n *yaml.Node, path string) ([]Trigger, error) {
	items, err := l.list(n, path)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, l.errf(n.Line, path, "must not be empty")
	}
	var ts []Trigger
	for i, item := range items {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		s, err := l.str(item, ipath)
		if err != nil {
			return nil, err
		}
		t := Trigger(s)
		switch {
		case t != TriggerLink && t != TriggerAlert:
			return nil, l.errf(item.Line, ipath, "unknown trigger %q (want %q or %q)", s, TriggerLink, TriggerAlert)
		case slices.Contains(ts, t):
			return nil, l.errf(item.Line, ipath, "duplicate trigger %q", s)
		}
		ts = append(ts, t)
	}
	return ts, nil
}

func (l *cfgLoader) alert(n *yaml.Node, path string, a *AlertMatch) error {
	f, err := l.fields(n, path, "alertnames", "device_label", "labels", "node")
	if err != nil {
		return err
	}
	if v := f.opt("alertnames"); v != nil {
		items, err := l.list(v, f.child("alertnames"))
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return l.errf(v.Line, f.child("alertnames"), "must not be empty")
		}
		a.AlertNames = nil
		for i, item := range items {
			s, err := l.str(item, fmt.Sprintf("%s[%d]", f.child("alertnames"), i))
			if err != nil {
				return err
			}
			a.AlertNames = append(a.AlertNames, s)
		}
	}
	if v := f.opt("device_label"); v != nil {
		if a.DeviceLabel, err = l.text(v, f.child("device_label")); err != nil {
			return err
		}
		if a.DeviceLabel != "" && !cfgLabelNameRE.MatchString(a.DeviceLabel) {
			return l.errf(v.Line, f.child("device_label"), "%q is not a valid label name", a.DeviceLabel)
		}
	}
	if v := f.opt("labels"); v != nil {
		if a.Labels, err = l.matchers(v, f.child("labels")); err != nil {
			return err
		}
	}
	if v := f.opt("node"); v != nil {
		if a.Node, err = l.matchers(v, f.child("node")); err != nil {
			return err
		}
	}
	return nil
}

// matchers parses a mapping of label names to regular expressions, which are
// anchored at both ends.
func (l *cfgLoader) matchers(n *yaml.Node, path string) ([]Matcher, error) {
	pairs, err := l.pairs(n, path)
	if err != nil {
		return nil, err
	}
	var ms []Matcher
	for _, kv := range pairs {
		if !cfgLabelNameRE.MatchString(kv.name) {
			return nil, l.errf(kv.key.Line, path, "%q is not a valid label name", kv.name)
		}
		vpath := path + "." + kv.name
		src, err := l.text(kv.value, vpath)
		if err != nil {
			return nil, err
		}
		if _, err := regexp.Compile(src); err != nil {
			msg := err.Error()
			if se := (*syntax.Error)(nil); errors.As(err, &se) {
				msg = se.Code.String()
			}
			return nil, l.errf(kv.value.Line, vpath, "%q is not a valid regular expression: %s", src, msg)
		}
		re, err := regexp.Compile("^(?:" + src + ")$")
		if err != nil {
			return nil, l.errf(kv.value.Line, vpath, "%q is not a valid regular expression: %v", src, err)
		}
		ms = append(ms, Matcher{Label: kv.name, Regex: re, Source: src})
	}
	slices.SortFunc(ms, func(a, b Matcher) int { return strings.Compare(a.Label, b.Label) })
	return ms, nil
}

func (l *cfgLoader) route(n *yaml.Node, path string) (Route, error) {
	var r Route
	f, err := l.fields(n, path, "destination", "gateway", "device", "metric", "table")
	if err != nil {
		return r, err
	}
	r.Table = cfgTableMain

	dstNode, err := f.req(l, "destination")
	if err != nil {
		return r, err
	}
	dst, err := l.str(dstNode, f.child("destination"))
	if err != nil {
		return r, err
	}
	if dst != "default" {
		if r.Destination, err = netip.ParsePrefix(dst); err != nil {
			return r, l.errf(dstNode.Line, f.child("destination"), `%q is neither "default" nor a CIDR prefix`, dst)
		}
		if m := r.Destination.Masked(); m != r.Destination {
			return r, l.errf(dstNode.Line, f.child("destination"), "%q has host bits set (did you mean %s?)", dst, m)
		}
	}

	if v := f.opt("gateway"); v != nil {
		s, err := l.str(v, f.child("gateway"))
		if err != nil {
			return r, err
		}
		if r.Gateway, err = netip.ParseAddr(s); err != nil {
			return r, l.errf(v.Line, f.child("gateway"), "%q is not an IP address", s)
		}
		if r.Gateway.Zone() != "" {
			return r, l.errf(v.Line, f.child("gateway"), "%q has a zone: set the device instead", s)
		}
		if dst == "default" {
			r.Destination = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			if r.Gateway.Is6() {
				r.Destination = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
		} else if r.Gateway.Is6() != r.Destination.Addr().Is6() {
			return r, l.errf(v.Line, f.child("gateway"), "%s gateway %s for %s destination %s",
				cfgFamily(r.Gateway), r.Gateway, cfgFamily(r.Destination.Addr()), r.Destination)
		}
	}

	if v := f.opt("device"); v != nil {
		if r.Device, err = l.device(v, f.child("device")); err != nil {
			return r, err
		}
	}
	if !r.Gateway.IsValid() {
		if r.Device == "" {
			return r, l.errf(n.Line, path, "needs a gateway, a device or both")
		}
		if dst == "default" {
			return r, l.errf(dstNode.Line, f.child("destination"),
				`"default" without a gateway is ambiguous: write 0.0.0.0/0 or ::/0`)
		}
	}

	if v := f.opt("metric"); v != nil {
		m, err := l.integer(v, f.child("metric"), 0, math.MaxUint32, "")
		if err != nil {
			return r, err
		}
		r.Metric = uint32(m)
	}

	if v := f.opt("table"); v != nil {
		if r.Table, err = l.table(v, f.child("table")); err != nil {
			return r, err
		}
	}

	key := cfgRouteKey{table: r.Table, destination: r.Destination, metric: r.Metric}
	if o, ok := l.routeOwners[key]; ok {
		return r, l.errf(n.Line, path, "route to %s in table %s with metric %d is already defined by %s (line %d)",
			r.Destination, cfgTableName(r.Table), r.Metric, o.path, o.line)
	}
	l.routeOwners[key] = cfgRouteOwner{path: path, line: n.Line}
	return r, nil
}

func (l *cfgLoader) table(n *yaml.Node, path string) (uint32, error) {
	const want = `use "main" or a number from 1 to 4294967295 other than 255`
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		switch n.Value {
		case "main":
			return cfgTableMain, nil
		case "local":
			return 0, l.errf(n.Line, path, "table local (255) belongs to the kernel")
		}
		return 0, l.errf(n.Line, path, "%q is not a table: %s", n.Value, want)
	}
	t, err := l.integer(n, path, 0, math.MaxUint32, "")
	if err != nil {
		return 0, err
	}
	switch t {
	case 0:
		return 0, l.errf(n.Line, path, "0 is not a table: %s", want)
	case cfgTableLocal:
		return 0, l.errf(n.Line, path, "table local (255) belongs to the kernel")
	}
	return uint32(t), nil
}

func (l *cfgLoader) dampening(n *yaml.Node, path string) (Dampening, error) {
	d := cfgDefaultDampening
	f, err := l.fields(n, path, "penalty", "half_life", "suppress", "reuse", "max_suppress")
	if err != nil {
		return d, err
	}
	for _, x := range []struct {
		key string
		dst *float64
	}{
		{"penalty", &d.Penalty},
		{"suppress", &d.Suppress},
		{"reuse", &d.Reuse},
	} {
		if v := f.opt(x.key); v != nil {
			if *x.dst, err = l.number(v, f.child(x.key)); err != nil {
				return d, err
			}
			if *x.dst <= 0 {
				return d, l.errf(v.Line, f.child(x.key), "must be greater than 0")
			}
		}
	}
	for _, x := range []struct {
		key string
		dst *time.Duration
	}{
		{"half_life", &d.HalfLife},
		{"max_suppress", &d.MaxSuppress},
	} {
		if v := f.opt(x.key); v != nil {
			if *x.dst, err = l.positiveDuration(v, f.child(x.key)); err != nil {
				return d, err
			}
		}
	}
	if d.Reuse >= d.Suppress {
		if v := f.opt("suppress"); v != nil {
			return d, l.errf(v.Line, f.child("suppress"), "%v must be greater than reuse (%v)", d.Suppress, d.Reuse)
		}
		return d, l.errf(f.opt("reuse").Line, f.child("reuse"), "%v must be less than suppress (%v)", d.Reuse, d.Suppress)
	}
	if d.MaxSuppress < d.HalfLife {
		if v := f.opt("max_suppress"); v != nil {
			return d, l.errf(v.Line, f.child("max_suppress"), "%s must not be less than half_life (%s)",
				model.Duration(d.MaxSuppress), model.Duration(d.HalfLife))
		}
		return d, l.errf(f.opt("half_life").Line, f.child("half_life"), "%s must not be greater than max_suppress (%s)",
			model.Duration(d.HalfLife), model.Duration(d.MaxSuppress))
	}
	return d, nil
}

// cfgFields holds the fields of a mapping.
type cfgFields struct {
	path string
	node *yaml.Node
	vals map[string]*yaml.Node
}

// child returns the path of field key.
func (f *cfgFields) child(key string) string {
	if f.path == "" {
		return key
	}
	return f.path + "." + key
}

// opt returns the value of field key, or nil if it is missing or null.
func (f *cfgFields) opt(key string) *yaml.Node {
	v := f.vals[key]
	if v == nil || cfgIsNull(v) {
		return nil
	}
	return v
}

// req returns the value of field key, which must be set and not null.
func (f *cfgFields) req(l *cfgLoader, key string) (*yaml.Node, error) {
	v, ok := f.vals[key]
	if !ok {
		if f.path == "" {
			return nil, l.errf(f.node.Line, "", "missing required field %q", key)
		}
		return nil, l.errf(f.node.Line, f.path, "missing required field %q", key)
	}
	if cfgIsNull(v) {
		return nil, l.errf(v.Line, f.child(key), "must not be empty")
	}
	return v, nil
}

// fields checks that n is a mapping of only the known keys, each at most once.
func (l *cfgLoader) fields(n *yaml.Node, path string, known ...string) (*cfgFields, error) {
	pairs, err := l.pairs(n, path)
	if err != nil {
		return nil, err
	}
	f := &cfgFields{path: path, node: n, vals: make(map[string]*yaml.Node, len(pairs))}
	for _, kv := range pairs {
		if !slices.Contains(known, kv.name) {
			return nil, l.errf(kv.key.Line, path, "unknown field %q", kv.name)
		}
		f.vals[kv.name] = kv.value
	}
	return f, nil
}

// A cfgPair is one key and value of a mapping.
type cfgPair struct {
	name       string
	key, value *yaml.Node
}

// pairs returns the pairs of mapping n, which must have no duplicate keys.
// Aliases in the values are resolved.
func (l *cfgLoader) pairs(n *yaml.Node, path string) ([]cfgPair, error) {
	n = cfgResolve(n)
	if n.Kind != yaml.MappingNode {
		return nil, l.errf(n.Line, path, "expected a mapping, got %s", cfgKind(n))
	}
	lines := make(map[string]int, len(n.Content)/2)
	pairs := make([]cfgPair, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := cfgResolve(n.Content[i]), cfgResolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return nil, l.errf(k.Line, path, "expected a field name, got %s", cfgKind(k))
		}
		if first, ok := lines[k.Value]; ok {
			kpath := k.Value
			if path != "" {
				kpath = path + "." + k.Value
			}
			return nil, l.errf(k.Line, kpath, "duplicate field (first set on line %d)", first)
		}
		lines[k.Value] = k.Line
		pairs = append(pairs, cfgPair{name: k.Value, key: k, value: v})
	}
	return pairs, nil
}

// list returns the items of sequence n, with aliases resolved.
func (l *cfgLoader) list(n *yaml.Node, path string) ([]*yaml.Node, error) {
	n = cfgResolve(n)
	if n.Kind != yaml.SequenceNode {
		return nil, l.errf(n.Line, path, "expected a list, got %s", cfgKind(n))
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, item := range n.Content {
		items[i] = cfgResolve(item)
	}
	return items, nil
}

// text returns the text of scalar n, which may be empty.
func (l *cfgLoader) text(n *yaml.Node, path string) (string, error) {
	n = cfgResolve(n)
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
			return n.Value, nil
		}
	}
	return "", l.errf(n.Line, path, "expected a string, got %s", cfgKind(n))
}

// str returns the text of scalar n, which must not be empty.
func (l *cfgLoader) str(n *yaml.Node, path string) (string, error) {
	if cfgIsNull(n) {
		return "", l.errf(n.Line, path, "must not be empty")
	}
	s, err := l.text(n, path)
	if err == nil && s == "" {
		err = l.errf(n.Line, path, "must not be empty")
	}
	return s, err
}

// integer returns the integer n, which must be between lo and hi; note is
// added to the out-of-range message.
func (l *cfgLoader) integer(n *yaml.Node, path string, lo, hi int64, note string) (int64, error) {
	n = cfgResolve(n)
	var x big.Int
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") {
		return 0, l.errf(n.Line, path, "expected an integer, got %s", cfgKind(n))
	}
	if _, ok := x.SetString(n.Value, 0); !ok {
		return 0, l.errf(n.Line, path, "expected an integer, got %s", n.Value)
	}
	if !x.IsInt64() || x.Int64() < lo || x.Int64() > hi {
		return 0, l.errf(n.Line, path, "%s is out of range %d..%d%s", n.Value, lo, hi, note)
	}
	return x.Int64(), nil
}

// number returns the finite number n.
func (l *cfgLoader) number(n *yaml.Node, path string) (float64, error) {
	n = cfgResolve(n)
	tag := n.ShortTag()
	var x float64
	if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || n.Decode(&x) != nil {
		return 0, l.errf(n.Line, path, "expected a number, got %s", cfgKind(n))
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, l.errf(n.Line, path, "expected a finite number, got %s", n.Value)
	}
	return x, nil
}

func (l *cfgLoader) boolean(n *yaml.Node, path string) (bool, error) {
	n = cfgResolve(n)
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		return false, l.errf(n.Line, path, "expected true or false, got %s", cfgKind(n))
	}
	return b, nil
}

// duration returns the duration n, in Prometheus syntax (such as 1h30m), which
// must not be negative.
func (l *cfgLoader) duration(n *yaml.Node, path string) (time.Duration, error) {
	s, err := l.text(n, path)
	if err != nil {
		return 0, err
	}
	d, err := model.ParseDurationAllowNegative(s)
	switch {
	case err != nil && err.Error() == "duration out of range":
		return 0, l.errf(n.Line, path, "%q is out of range", s)
	case err != nil:
		return 0, l.errf(n.Line, path, "%q is not a duration such as 30s, 5m or 1h30m", s)
	case d < 0:
		return 0, l.errf(n.Line, path, "%q is negative", s)
	}
	return time.Duration(d), nil
}

// positiveDuration is like duration but also rejects 0.
func (l *cfgLoader) positiveDuration(n *yaml.Node, path string) (time.Duration, error) {
	d, err := l.duration(n, path)
	if err == nil && d == 0 {
		err = l.errf(n.Line, path, "must be greater than 0")
	}
	return d, err
}

// cfgResolve follows n if it is an alias.
func cfgResolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func cfgIsNull(n *yaml.Node) bool {
	n = cfgResolve(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// cfgKind describes the type of n for error messages.
func cfgKind(n *yaml.Node) string {
	n = cfgResolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch tag := n.ShortTag(); tag {
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int":
			return "the integer " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!bool":
			return n.Value
		case "!!null":
			return "null"
		default:
			return "a value tagged " + tag
		}
	}
	return "nothing"
}

func cfgFamily(a netip.Addr) string {
	if a.Is6() {
		return "IPv6"
	}
	return "IPv4"
}

func cfgTableName(t uint32) string {
	if t == cfgTableMain {
		return "main"
	}
	return strconv.FormatUint(uint64(t), 10)
}
