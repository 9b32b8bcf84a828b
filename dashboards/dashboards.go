package dashboards

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Requirement says what an expression of the dashboard needs before it
// returns any series (assuming Prometheus holds at least two scrapes of the
// exporter within the rate window, so that rate and increase have data).
type Requirement int

const (
	// NeedsExporter: any scraped linkwatch_exporter. The expression returns
	// series from the exporter's first scrapes on, at zero if nothing
	// happened (counters are exported from zero, counts end in "or vector(0)").
	NeedsExporter Requirement = iota
	// NeedsFailover: an exporter started with a policy file (--config.file),
	// which exports the failover, webhook and policy file metrics.
	NeedsFailover
	// NeedsDampening: a policy with a dampening section, the only one for
	// which linkwatch_link_flap_penalty and linkwatch_link_suppressed exist.
	NeedsDampening
	// NeedsEvents: something must have happened within the query's window
	// or since the exporter started (an outage that ended, a failover or
	// failback); without it the result is empty, or NaN only for quantiles.
	// Such an expression may legitimately be empty.
	NeedsEvents
)

func (r Requirement) String() string {
	switch r {
	case NeedsExporter:
		return "exporter"
	case NeedsFailover:
		return "failover"
	case NeedsDampening:
		return "dampening"
	case NeedsEvents:
		return "events"
	}
	return fmt.Sprintf("Requirement(%d)", int(r))
}

// A Scenario describes a setup in which the dashboard is queried.
type Scenario struct {
	Failover  bool // the exporter has a policy file
	Dampening bool // a policy configures dampening
	Events    bool // links flapped and policies failed over within the query window
}

// MetBy reports whether an expression with requirement r returns series in
// scenario s.
func (r Requirement) MetBy(s Scenario) bool {
	switch r {
	case NeedsExporter:
		return true
	case NeedsFailover:
		return s.Failover
	case NeedsDampening:
		return s.Failover && s.Dampening
	case NeedsEvents:
		return s.Events
	}
	return false
}

// FailoverScenario is the end-to-end scenario that ShouldHaveData refers to:
// an exporter with a policy file, without assuming dampening or that events
// fell into the query window.
var FailoverScenario = Scenario{Failover: true}

// panelNeeds classifies every panel (by title) and annotation (by
// "annotation: " and its name) that has queries. Expressions fails for a
// query of a panel missing here, so that a new panel has to be classified.
var panelNeeds = map[string]Requirement{
	// Overview.
	"Links up":           NeedsExporter,
	"Links down":         NeedsExporter,
	"Links flapping now": NeedsExporter,
	"Failovers active":   NeedsFailover,
	"Watcher health":     NeedsExporter,
	"Links exported":     NeedsExporter,
	"Link state":         NeedsExporter,
	// Flaps and outages.
	"Carrier losses":                              NeedsExporter,
	"Untimed share of outages":                    NeedsEvents, // divides by the carrier losses in the range, if any
	"Outage durations":                            NeedsExporter,
	"Outage duration quantiles":                   NeedsEvents, // NaN in intervals without an outage
	"Up-period quantiles (time between failures)": NeedsEvents,
	"Time since last change":                      NeedsExporter,
	// Route failover.
	"Failover state by policy":              NeedsFailover,
	"Time since last failover or failback":  NeedsEvents, // exported after a policy's first transition
	"Failover transitions":                  NeedsFailover,
	"Failover errors and route repairs":     NeedsFailover,
	"Flap penalty and failback suppression": NeedsDampening,
	// Webhook and watcher health.
	"Webhook requests by status code": NeedsFailover,
	"Webhook alerts":                  NeedsFailover,
	"Netlink losses and errors":       NeedsExporter,
	"Netlink messages by type":        NeedsExporter,
	"Policy file reload":              NeedsFailover,
	"Watcher and scrape health":       NeedsExporter,
	// Annotations: only where the failover state changed.
	"annotation: Failover": NeedsEvents,
	"annotation: Failback": NeedsEvents,
}

// An Expr is one PromQL expression of the dashboard.
type Expr struct {
	Panel   string // title of the panel, or "annotation: " and the annotation's name
	PanelID int    // 0 for annotations
	Row     string // title of the row the panel is in, if any
	RefID   string // the target's refId ("Anno" for annotations)
	Raw     string // as written in the dashboard, with Grafana variables
	Query   string // Substitute(Raw): runnable against Prometheus
	Instant bool   // the panel runs it as an instant query

	Needs Requirement
	// ShouldHaveData is Needs.MetBy(FailoverScenario): whether the
	// expression must return series against an exporter with a policy file.
	// False means it may be empty there (no dampening, or no event in the
	// window).
	ShouldHaveData bool
}

// Vars are the values of Grafana variables for Prometheus, by name without
// "$" (built-ins such as __rate_interval included).
type Vars map[string]string

// DefaultVars are the values Substitute uses: every job, instance and
// device, and one-minute intervals (enough for scrape intervals up to 30s).
var DefaultVars = Vars{
	"__rate_interval": "1m",
	"__interval":      "1m",
	"__interval_ms":   "60000",
	"__range":         "1h",
	"__range_s":       "3600",
	"__range_ms":      "3600000",
	"job":             ".*",
	"instance":        ".*",
	"device":          ".*",
}

// varRef matches the three forms of a Grafana variable reference: $name,
// ${name} or ${name:format}, and [[name]] or [[name:format]].
var varRef = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]`)

// VarRefs returns the names of the Grafana variables s refers to, in order
// of appearance, built-ins (__rate_interval, …) included.
func VarRefs(s string) []string {
	var names []string
	for _, m := range varRef.FindAllStringSubmatch(s, -1) {
		names = append(names, m[1]+m[2]+m[3])
	}
	return names
}

// Substitute replaces the Grafana variables in expr with DefaultVars, so
// that Prometheus can run it. Unknown variables are left as they are.
func Substitute(expr string) string { return DefaultVars.Substitute(expr) }

// Substitute replaces the Grafana variables in expr with the values of v.
// Unknown variables are left as they are.
func (v Vars) Substitute(expr string) string {
	return varRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		if val, ok := v[m[1]+m[2]+m[3]]; ok {
			return val
		}
		return ref
	})
}

// The parts of the dashboard model that Expressions reads.
type (
	dashboard struct {
		Panels      []panel `json:"panels"`
		Annotations struct {
			List []annotation `json:"list"`
		} `json:"annotations"`
	}
	panel struct {
		ID      int      `json:"id"`
		Type    string   `json:"type"`
		Title   string   `json:"title"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"` // of a collapsed row
	}
	target struct {
		RefID   string `json:"refId"`
		Expr    string `json:"expr"`
		Instant bool   `json:"instant"`
		Range   bool   `json:"range"`
	}
	annotation struct {
		Name       string `json:"name"`
		BuiltIn    int    `json:"builtIn"`
		Datasource struct {
			Type string `json:"type"`
		} `json:"datasource"`
		Expr   string  `json:"expr"`
		Target *target `json:"target"`
	}
)

// Expressions returns every PromQL expression of the dashboard file at path:
// the queries of all panels (in rows, collapsed or not) in the file's order,
// then those of the Prometheus annotations.
func Expressions(path string) ([]Expr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	exprs, err := ParseExpressions(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return exprs, nil
}

// ParseExpressions is Expressions for a dashboard in memory.
func ParseExpressions(data []byte) ([]Expr, error) {
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	var exprs []Expr
	add := func(title string, id int, row string, t target) error {
		if strings.TrimSpace(t.Expr) == "" {
			return nil
		}
		needs, ok := panelNeeds[title]
		if !ok {
			return fmt.Errorf("%q has queries but no entry in panelNeeds (dashboards.go)", title)
		}
		exprs = append(exprs, Expr{
			Panel: title, PanelID: id, Row: row, RefID: t.RefID,
			Raw: t.Expr, Query: Substitute(t.Expr), Instant: t.Instant && !t.Range,
			Needs: needs, ShouldHaveData: needs.MetBy(FailoverScenario),
		})
		return nil
	}
	var walk func(ps []panel, row string) error
	walk = func(ps []panel, row string) error {
		for _, p := range ps {
			if p.Type == "row" {
				row = p.Title
				if err := walk(p.Panels, row); err != nil {
					return err
				}
				continue
			}
			for _, t := range p.Targets {
				if err := add(p.Title, p.ID, row, t); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(d.Panels, ""); err != nil {
		return nil, err
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn != 0 || a.Datasource.Type != "prometheus" {
			continue
		}
		// Grafana moves a legacy top-level expr into target; the file
		// carries both, and they must agree.
		t := target{RefID: "Anno", Expr: a.Expr, Range: true}
		if a.Target != nil {
			if a.Expr != "" && a.Target.Expr != a.Expr {
				return nil, fmt.Errorf("annotation %q: expr and target.expr differ", a.Name)
			}
			t.Expr = a.Target.Expr
			if a.Target.RefID != "" {
				t.RefID = a.Target.RefID
			}
		}
		if err := add("annotation: "+a.Name, 0, "", t); err != nil {
			return nil, err
		}
	}
	return exprs, nil
}
