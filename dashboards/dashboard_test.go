package dashboards

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const dashboardFile = "linkwatch.json"

// load returns the dashboard as generic JSON.
func load(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s does not parse: %v", dashboardFile, err)
	}
	return d
}

// flatPanel is a panel with the row it is in.
type flatPanel struct {
	p      map[string]any
	row    string
	nested bool // inside a collapsed row's "panels"
}

// allPanels returns every panel, rows included, in file order.
func allPanels(t *testing.T, d map[string]any) []flatPanel {
	t.Helper()
	var out []flatPanel
	var walk func(v any, row string, nested bool)
	walk = func(v any, row string, nested bool) {
		list, _ := v.([]any)
		for _, x := range list {
			p, ok := x.(map[string]any)
			if !ok {
				t.Fatalf("panel is %T, not an object", x)
			}
			if p["type"] == "row" {
				row = str(p["title"])
				out = append(out, flatPanel{p, "", nested})
				walk(p["panels"], row, true)
				continue
			}
			out = append(out, flatPanel{p, row, nested})
		}
	}
	walk(d["panels"], "", false)
	return out
}

func str(v any) string { s, _ := v.(string); return s }

func num(v any) int { f, _ := v.(float64); return int(f) }

// isDatasourceVar reports whether v is {"type":"prometheus","uid":"${datasource}"}.
func isDatasourceVar(v any) bool {
	m, ok := v.(map[string]any)
	return ok && m["type"] == "prometheus" && m["uid"] == "${datasource}"
}

func TestDashboardModel(t *testing.T) {
	d := load(t)
	if got := str(d["uid"]); got != "linkwatch-exporter" {
		t.Errorf("uid = %q, want linkwatch-exporter", got)
	}
	if got := str(d["title"]); got != "Linkwatch" {
		t.Errorf("title = %q, want Linkwatch", got)
	}
	if sv := num(d["schemaVersion"]); sv < 36 {
		t.Errorf("schemaVersion = %d, want >= 36 (Grafana 9+)", sv)
	}
	if tags, _ := d["tags"].([]any); len(tags) == 0 {
		t.Error("no tags")
	}
	for _, k := range []string{"__inputs", "__requires", "id"} {
		if _, ok := d[k]; ok {
			t.Errorf("has %q: the dashboard must import as is, without an instance-specific id or inputs", k)
		}
	}
}

var panelTypes = map[string]bool{
	"row": true, "stat": true, "timeseries": true, "state-timeline": true,
	"heatmap": true, "table": true, "bargauge": true,
}

func TestPanels(t *testing.T) {
	d := load(t)
	panels := allPanels(t, d)
	if len(panels) < 20 {
		t.Fatalf("only %d panels", len(panels))
	}
	ids := map[int]string{}
	titles := map[string]bool{}
	for _, fp := range panels {
		p := fp.p
		id, title := num(p["id"]), str(p["title"])
		name := fmt.Sprintf("panel %d %q", id, title)
		if id <= 0 {
			t.Errorf("%s: id must be positive", name)
		} else if prev, dup := ids[id]; dup {
			t.Errorf("%s: id also used by %q", name, prev)
		}
		ids[id] = title
		if strings.TrimSpace(title) == "" {
			t.Errorf("%s: no title", name)
		}
		if titles[title] {
			t.Errorf("%s: title not unique (panelNeeds is keyed by title)", name)
		}
		titles[title] = true
		if strings.TrimSpace(str(p["description"])) == "" {
			t.Errorf("%s: no description", name)
		}
		typ := str(p["type"])
		if !panelTypes[typ] {
			t.Errorf("%s: type %q is not a core panel type used here", name, typ)
		}
		if typ == "row" {
			if _, ok := p["targets"]; ok {
				t.Errorf("%s: a row with targets", name)
			}
			continue
		}
		if fp.row == "" {
			t.Errorf("%s: not in a row", name)
		}
		if !isDatasourceVar(p["datasource"]) {
			t.Errorf("%s: datasource is %v, want ${datasource}", name, p["datasource"])
		}
		targets, _ := p["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("%s: no targets", name)
		}
		refIDs := map[string]bool{}
		for _, x := range targets {
			tg, _ := x.(map[string]any)
			ref := str(tg["refId"])
			if ref == "" || refIDs[ref] {
				t.Errorf("%s: refId %q empty or repeated", name, ref)
			}
			refIDs[ref] = true
			if !isDatasourceVar(tg["datasource"]) {
				t.Errorf("%s target %s: datasource is %v, want ${datasource}", name, ref, tg["datasource"])
			}
			if strings.TrimSpace(str(tg["expr"])) == "" {
				t.Errorf("%s target %s: no expr", name, ref)
			}
		}
		if typ == "heatmap" {
			for _, x := range targets {
				if tg, _ := x.(map[string]any); tg["format"] != "heatmap" {
					t.Errorf("%s: heatmap target not in heatmap format", name)
				}
			}
		}
	}
}

// TestLayout checks that the panels of the top level tile the 24-column grid
// without overlapping, so that Grafana shows them where the file puts them.
func TestLayout(t *testing.T) {
	d := load(t)
	type cell struct{ x, y int }
	used := map[cell]string{}
	for _, fp := range allPanels(t, d) {
		if fp.nested {
			continue // positions inside a collapsed row apply once expanded
		}
		g, _ := fp.p["gridPos"].(map[string]any)
		x, y, w, h := num(g["x"]), num(g["y"]), num(g["w"]), num(g["h"])
		title := str(fp.p["title"])
		if g == nil || w <= 0 || h <= 0 || x < 0 || y < 0 || x+w > 24 {
			t.Errorf("%q: bad gridPos %v", title, g)
			continue
		}
		for i := x; i < x+w; i++ {
			for j := y; j < y+h; j++ {
				if other, ok := used[cell{i, j}]; ok {
					t.Fatalf("%q overlaps %q at column %d, row %d", title, other, i, j)
				}
				used[cell{i, j}] = title
			}
		}
	}
}

func TestTemplating(t *testing.T) {
	d := load(t)
	tmpl, _ := d["templating"].(map[string]any)
	list, _ := tmpl["list"].([]any)
	vars := map[string]map[string]any{}
	for _, x := range list {
		v, _ := x.(map[string]any)
		vars[str(v["name"])] = v
	}
	ds := vars["datasource"]
	if ds == nil || ds["type"] != "datasource" || ds["query"] != "prometheus" {
		t.Errorf("datasource variable = %v, want type datasource, query prometheus", ds)
	}
	for _, want := range []struct {
		name, query string
		multi       bool
	}{
		{"job", "label_values(linkwatch_link_up, job)", false},
		{"instance", `label_values(linkwatch_link_up{job=~"$job"}, instance)`, true},
		{"device", `label_values(linkwatch_link_up{job=~"$job",instance=~"$instance"}, device)`, true},
	} {
		v := vars[want.name]
		if v == nil {
			t.Errorf("no variable %q", want.name)
			continue
		}
		q, _ := v["query"].(map[string]any)
		if v["type"] != "query" || str(v["definition"]) != want.query || str(q["query"]) != want.query {
			t.Errorf("variable %q: type %v, definition %q, query %v; want a query variable %q",
				want.name, v["type"], v["definition"], v["query"], want.query)
		}
		if !isDatasourceVar(v["datasource"]) {
			t.Errorf("variable %q: datasource %v, want ${datasource}", want.name, v["datasource"])
		}
		if v["multi"] != want.multi || v["includeAll"] != want.multi {
			t.Errorf("variable %q: multi %v, includeAll %v, want %v", want.name, v["multi"], v["includeAll"], want.multi)
		}
		if want.multi && v["allValue"] != ".*" {
			t.Errorf("variable %q: allValue %v, want .*", want.name, v["allValue"])
		}
	}

	// Every variable referenced anywhere (queries, legends, data sources,
	// descriptions) is defined; Grafana's built-ins start with "__".
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			refs = append(refs, VarRefs(v)...)
		case []any:
			for _, x := range v {
				walk(x)
			}
		case map[string]any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(d)
	used := map[string]bool{}
	for _, r := range refs {
		used[r] = true
		if !strings.HasPrefix(r, "__") && vars[r] == nil {
			t.Errorf("$%s is used but not defined", r)
		}
	}
	for _, name := range []string{"datasource", "job", "instance", "device", "__rate_interval"} {
		if !used[name] {
			t.Errorf("$%s is never used", name)
		}
	}
}

func TestAnnotations(t *testing.T) {
	d := load(t)
	a, _ := d["annotations"].(map[string]any)
	list, _ := a["list"].([]any)
	found := 0
	for _, x := range list {
		an, _ := x.(map[string]any)
		if an["builtIn"] != nil {
			continue
		}
		name := str(an["name"])
		if !isDatasourceVar(an["datasource"]) {
			t.Errorf("annotation %q: datasource %v, want ${datasource}", name, an["datasource"])
		}
		expr := str(an["expr"])
		if !strings.Contains(expr, `changes(linkwatch_failover_active{job=~"$job",instance=~"$instance"}`) {
			t.Errorf("annotation %q: expr %q does not mark changes of linkwatch_failover_active", name, expr)
		}
		if !strings.Contains(str(an["titleFormat"]), "{{policy}}") {
			t.Errorf("annotation %q: titleFormat %q does not show the policy", name, an["titleFormat"])
		}
		found++
	}
	if found == 0 {
		t.Error("no Prometheus annotation on failover changes")
	}
}

// documented is a metric of a README.md metrics table.
type documented struct {
	typ    string
	labels []string
}

var readmeRow = regexp.MustCompile("^\\|\\s*`(linkwatch_[a-z0-9_]+)`\\s*\\|\\s*([a-z]+)\\s*\\|([^|]*)\\|")

// readmeMetrics parses the metrics tables of the repository's README.md.
func readmeMetrics(t *testing.T) map[string]documented {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms := map[string]documented{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := readmeRow.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var labels []string
		for l := range strings.SplitSeq(m[3], ",") {
			if l = strings.TrimSpace(l); l != "" && l != "…" {
				labels = append(labels, l)
			}
		}
		ms[m[1]] = documented{m[2], labels}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"linkwatch_link_up", "linkwatch_link_down_duration_seconds", "linkwatch_failover_active", "linkwatch_webhook_requests_total"} {
		if _, ok := ms[must]; !ok {
			t.Fatalf("README.md parsing found no %s (found %d metrics)", must, len(ms))
		}
	}
	return ms
}

// resolve maps a series name used in PromQL to its documented metric.
func resolve(ms map[string]documented, name string) (documented, bool) {
	if m, ok := ms[name]; ok {
		return m, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if m, ok := ms[base]; ok && m.typ == "histogram" {
				return m, true
			}
		}
	}
	return documented{}, false
}

// allExprs returns the dashboard's expressions plus the selectors of its
// label_values variable queries (as expressions of panel "variable NAME").
func allExprs(t *testing.T) []Expr {
	t.Helper()
	exprs, err := Expressions(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	d := load(t)
	tmpl, _ := d["templating"].(map[string]any)
	list, _ := tmpl["list"].([]any)
	lv := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	for _, x := range list {
		v, _ := x.(map[string]any)
		if v["type"] != "query" {
			continue
		}
		m := lv.FindStringSubmatch(str(v["definition"]))
		if m == nil {
			t.Errorf("variable %q: definition %q is not label_values(selector, label)", v["name"], v["definition"])
			continue
		}
		exprs = append(exprs, Expr{Panel: "variable " + str(v["name"]), Raw: m[1], Query: Substitute(m[1])})
	}
	return exprs
}

func TestMetricNames(t *testing.T) {
	ms := readmeMetrics(t)
	for _, e := range allExprs(t) {
		lx, err := lex(e.Raw)
		if err != nil {
			t.Errorf("%s: %q: %v", e.Panel, e.Raw, err)
			continue
		}
		for _, f := range lx.funcs {
			if !promqlFuncs[f] {
				t.Errorf("%s: %q: unknown function or aggregation %q", e.Panel, e.Raw, f)
			}
		}
		if len(lx.selectors) == 0 {
			t.Errorf("%s: %q selects no metric", e.Panel, e.Raw)
		}
		for _, s := range lx.selectors {
			var labels []string
			switch m, ok := resolve(ms, s.metric); {
			case ok:
				labels = m.labels
			case s.metric == "up":
			default:
				t.Errorf("%s: %q uses %s, which README.md does not document", e.Panel, e.Raw, s.metric)
				continue
			}
			if strings.HasPrefix(e.Panel, "variable ") {
				continue // each variable filters by the ones before it: TestTemplating
			}
			// The dashboard's filters apply to every selector.
			want := []string{`job=~"$job"`, `instance=~"$instance"`}
			if slices.Contains(labels, "device") {
				want = append(want, `device=~"$device"`)
			}
			have := strings.Split(s.matchers, ",")
			for _, w := range want {
				if !slices.Contains(have, w) {
					t.Errorf("%s: %q: selector of %s lacks %s", e.Panel, e.Raw, s.metric, w)
				}
			}
		}
	}
}

func TestExpressions(t *testing.T) {
	exprs, err := Expressions(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	// Every panel with targets is listed, and every entry of panelNeeds is a
	// panel or annotation of the dashboard.
	d := load(t)
	seen := map[string]bool{}
	for _, e := range exprs {
		seen[e.Panel] = true
		if strings.Contains(e.Query, "$") || strings.Contains(e.Query, "[[") {
			t.Errorf("%s %s: variables left after substitution: %q", e.Panel, e.RefID, e.Query)
		}
		if e.ShouldHaveData != e.Needs.MetBy(FailoverScenario) {
			t.Errorf("%s: ShouldHaveData %v, needs %v", e.Panel, e.ShouldHaveData, e.Needs)
		}
		if !e.Needs.MetBy(Scenario{Failover: true, Dampening: true, Events: true}) {
			t.Errorf("%s: has no data even in the fullest scenario", e.Panel)
		}
		if e.Needs.MetBy(Scenario{}) != (e.Needs == NeedsExporter) {
			t.Errorf("%s: needs %v, but MetBy(no failover) = %v", e.Panel, e.Needs, e.Needs.MetBy(Scenario{}))
		}
	}
	for _, fp := range allPanels(t, d) {
		if title := str(fp.p["title"]); fp.p["type"] != "row" && !seen[title] {
			t.Errorf("panel %q has no expression in Expressions", title)
		}
	}
	for title := range panelNeeds {
		if !seen[title] {
			t.Errorf("panelNeeds has %q, which is not in the dashboard", title)
		}
	}
	n := 0
	for _, e := range exprs {
		if e.ShouldHaveData {
			n++
		}
	}
	t.Logf("%d expressions, %d should have data with failover configured", len(exprs), n)
	if n*3 < len(exprs)*2 {
		t.Errorf("only %d of %d expressions should have data with failover configured", n, len(exprs))
	}
}

func TestParseExpressionsRows(t *testing.T) {
	const collapsed = `{"panels": [
	  {"type": "row", "id": 1, "title": "R1", "collapsed": true, "panels": [
	    {"type": "stat", "id": 2, "title": "Links up", "targets": [
	      {"refId": "A", "expr": "count(linkwatch_link_up{job=~\"$job\"}[$__rate_interval])", "instant": true}]}]},
	  {"type": "row", "id": 3, "title": "R2", "collapsed": false, "panels": []},
	  {"type": "stat", "id": 4, "title": "Links down", "targets": [{"refId": "B", "expr": "vector(1)"}, {"refId": "C", "expr": ""}]}],
	 "annotations": {"list": [
	  {"builtIn": 1, "datasource": {"type": "grafana"}, "name": "Annotations & Alerts"},
	  {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "name": "Failover", "expr": "vector(2)"}]}}`
	got, err := ParseExpressions([]byte(collapsed))
	if err != nil {
		t.Fatal(err)
	}
	want := []Expr{
		{Panel: "Links up", PanelID: 2, Row: "R1", RefID: "A", Raw: `count(linkwatch_link_up{job=~"$job"}[$__rate_interval])`,
			Query: `count(linkwatch_link_up{job=~".*"}[1m])`, Instant: true, Needs: NeedsExporter, ShouldHaveData: true},
		{Panel: "Links down", PanelID: 4, Row: "R2", RefID: "B", Raw: "vector(1)", Query: "vector(1)", Needs: NeedsExporter, ShouldHaveData: true},
		{Panel: "annotation: Failover", RefID: "Anno", Raw: "vector(2)", Query: "vector(2)", Needs: NeedsEvents},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ParseExpressions =\n%+v\nwant\n%+v", got, want)
	}

	if _, err := ParseExpressions([]byte(`{"panels": [{"type": "stat", "title": "New panel", "targets": [{"expr": "up"}]}]}`)); err == nil {
		t.Error("no error for a panel missing from panelNeeds")
	}
	if _, err := ParseExpressions([]byte(`{"annotations": {"list": [{"datasource": {"type": "prometheus"}, "name": "Failover",
		"expr": "vector(1)", "target": {"expr": "vector(2)"}}]}}`)); err == nil {
		t.Error("no error for an annotation whose expr and target.expr differ")
	}
}

func TestSubstitute(t *testing.T) {
	for in, want := range map[string]string{
		`rate(x{job=~"$job",instance=~"${instance}",device=~"[[device]]"}[$__rate_interval])`: `rate(x{job=~".*",instance=~".*",device=~".*"}[1m])`,
		`increase(x[$__range]) offset $__interval`:                                            `increase(x[1h]) offset 1m`,
		`x[${__interval_ms}ms] + ${device:regex}`:                                             `x[60000ms] + .*`,
		`$unknown + $__unknown`:                                                               `$unknown + $__unknown`,
	} {
		if got := Substitute(in); got != want {
			t.Errorf("Substitute(%q) = %q, want %q", in, got, want)
		}
	}
	v := Vars{"__rate_interval": "5m", "job": "lw"}
	if got, want := v.Substitute(`rate(x{job=~"$job"}[$__rate_interval])`), `rate(x{job=~"lw"}[5m])`; got != want {
		t.Errorf("Vars.Substitute = %q, want %q", got, want)
	}
	if got, want := VarRefs(`$a ${b} ${c:csv} [[d]] $__e`), []string{"a", "b", "c", "d", "__e"}; !slices.Equal(got, want) {
		t.Errorf("VarRefs = %q, want %q", got, want)
	}
}

// TestReadme checks that dashboards/README.md has a section for every panel,
// headed by its title.
func TestReadme(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for line := range strings.Lines(string(data)) {
		if h := strings.TrimLeft(line, "#"); len(h) < len(line) && strings.HasPrefix(h, " ") {
			headings[strings.TrimSpace(h)] = true
		}
	}
	for _, fp := range allPanels(t, load(t)) {
		if title := str(fp.p["title"]); fp.p["type"] != "row" && !headings[title] {
			t.Errorf("README.md has no heading %q", title)
		}
	}
}

// TestPromtool checks the syntax of every expression with promtool, as the
// expressions of recording rules; Prometheus 2.42's promtool has no command
// that parses a bare expression.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found; it is required in CI (Debian package prometheus)")
		}
		t.Skip("promtool not found")
	}
	check := func(exprs []Expr) (string, error) {
		var b strings.Builder
		b.WriteString("groups:\n  - name: linkwatch_dashboard\n    rules:\n")
		for i, e := range exprs {
			q, _ := json.Marshal(e.Query) // a JSON string is a YAML string
			fmt.Fprintf(&b, "      - record: linkwatch_dashboard:expr_%03d\n        expr: %s\n", i, q)
		}
		file := filepath.Join(t.TempDir(), "rules.yml")
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
		return string(out), err
	}

	// The check must be able to fail.
	if out, err := check([]Expr{{Query: `sum(rate(x[1m])`}}); err == nil {
		t.Fatalf("promtool accepted a broken expression:\n%s", out)
	}

	exprs := allExprs(t)
	out, err := check(exprs)
	if err != nil {
		// Name the expressions promtool refers to by index.
		idx := regexp.MustCompile(`expr_(\d{3})`)
		var named []string
		for _, m := range idx.FindAllStringSubmatch(out, -1) {
			var i int
			fmt.Sscan(m[1], &i)
			named = append(named, fmt.Sprintf("expr_%03d = %s %s: %s", i, exprs[i].Panel, exprs[i].RefID, exprs[i].Query))
		}
		sort.Strings(named)
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, out, strings.Join(slices.Compact(named), "\n"))
	}
	t.Logf("promtool: %d expressions parse", len(exprs))
}

// ---------------------------------------------------------------------------
// A small PromQL lexer: enough to find the metric selectors and functions of
// the dashboard's expressions without depending on the Prometheus parser.

type selector struct {
	metric   string
	matchers string // between the braces, spaces removed; "" without braces
}

type lexed struct {
	selectors []selector
	funcs     []string
}

var (
	// Keywords followed by a parenthesized label list.
	labelListKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	// Keywords and literals that are neither functions nor metrics.
	otherKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true}
	aggregations  = map[string]bool{
		"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
		"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	}
	promqlFuncs = func() map[string]bool {
		m := map[string]bool{}
		for f := range aggregations {
			m[f] = true
		}
		for f := range strings.FieldsSeq(`abs absent absent_over_time avg_over_time ceil changes clamp clamp_max clamp_min
			count_over_time day_of_month day_of_week day_of_year days_in_month delta deriv exp floor
			histogram_count histogram_fraction histogram_quantile histogram_sum holt_winters hour idelta
			increase irate label_join label_replace last_over_time ln log10 log2 max_over_time min_over_time
			minute month predict_linear present_over_time quantile_over_time rate resets round scalar sgn
			sort sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time time timestamp vector year
			acos acosh asin asinh atan atanh cos cosh sin sinh tan tanh deg rad pi`) {
			m[f] = true
		}
		return m
	}()
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdent(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }

func lex(s string) (lexed, error) {
	var out lexed
	i := 0
	skipSpace := func() {
		for i < len(s) && strings.IndexByte(" \t\r\n", s[i]) >= 0 {
			i++
		}
	}
	// skipString skips the string starting at s[i].
	skipString := func() error {
		q := s[i]
		for i++; i < len(s); i++ {
			switch {
			case s[i] == '\\' && q != '`':
				i++
			case s[i] == q:
				i++
				return nil
			}
		}
		return fmt.Errorf("unterminated string")
	}
	// until skips past the closing byte matching the opening one at s[i],
	// and returns what is between them.
	until := func(open, close byte) (string, error) {
		start, depth := i+1, 0
		for i < len(s) {
			switch c := s[i]; {
			case c == '"' || c == '\'' || c == '`':
				if err := skipString(); err != nil {
					return "", err
				}
				continue
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					i++
					return s[start : i-1], nil
				}
			}
			i++
		}
		return "", fmt.Errorf("unclosed %q", open)
	}
	depth := 0
	for skipSpace(); i < len(s); skipSpace() {
		c := s[i]
		switch {
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			if err := skipString(); err != nil {
				return out, err
			}
		case c == '{':
			return out, fmt.Errorf("selector without a metric name at %d", i)
		case c == '[':
			if _, err := until('[', ']'); err != nil {
				return out, err
			}
		case c == '(':
			depth++
			i++
		case c == ')':
			if depth--; depth < 0 {
				return out, fmt.Errorf("unbalanced ) at %d", i)
			}
			i++
		case '0' <= c && c <= '9' || c == '.':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.' ||
				(s[i] == '-' || s[i] == '+') && (s[i-1] == 'e' || s[i-1] == 'E')) {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(s) && isIdent(s[i]) {
				i++
			}
			word := s[start:i]
			lower := strings.ToLower(word)
			skipSpace()
			switch {
			case labelListKeywords[lower]:
				if i < len(s) && s[i] == '(' {
					if _, err := until('(', ')'); err != nil {
						return out, err
					}
				}
			case otherKeywords[lower]:
			case aggregations[lower] || i < len(s) && s[i] == '(':
				out.funcs = append(out.funcs, word)
			default:
				sel := selector{metric: word}
				if i < len(s) && s[i] == '{' {
					m, err := until('{', '}')
					if err != nil {
						return out, err
					}
					sel.matchers = strings.Join(strings.Fields(m), "")
				}
				out.selectors = append(out.selectors, sel)
			}
		default:
			i++
		}
	}
	if depth != 0 {
		return out, fmt.Errorf("unbalanced (")
	}
	return out, nil
}

func TestLex(t *testing.T) {
	got, err := lex(`histogram_quantile(0.9, sum by (le, device) (rate(a_bucket{job=~"$job", x="}"}[5m] offset 1m))) / on (device) group_left (y) b or vector(0) and count(c{}) > 1e-9`)
	if err != nil {
		t.Fatal(err)
	}
	wantSel := []selector{{"a_bucket", `job=~"$job",x="}"`}, {"b", ""}, {"c", ""}}
	wantFn := []string{"histogram_quantile", "sum", "rate", "vector", "count"}
	if !slices.Equal(got.selectors, wantSel) || !slices.Equal(got.funcs, wantFn) {
		t.Errorf("lex = %+v, want selectors %+v, funcs %q", got, wantSel, wantFn)
	}
	for _, bad := range []string{`sum(x`, `x{a="b"`, `x)`, `{a="b"}`, `x{a="b}`} {
		if _, err := lex(bad); err == nil {
			t.Errorf("lex(%q): no error", bad)
		}
	}
}
