package check

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"
	k8syaml "sigs.k8s.io/yaml"
)

// ruleFiles are the plain Prometheus rule files, relative to this
// directory, whose groups prometheusrule.yaml carries, in this order. Each
// must exist; add or remove files here.
var ruleFiles = []string{
	"../../prometheus/alerts.yml",
	"../../prometheus/rules.yml",
}

// prometheusRuleFile is the generated PrometheusRule.
const prometheusRuleFile = "../prometheusrule.yaml"

// prometheusRuleTemplate is used by the update when prometheusRuleFile does
// not exist yet; otherwise everything but spec.groups is kept from it.
const prometheusRuleTemplate = `# The alerting and recording rules of deploy/prometheus as a
# PrometheusRule for the Prometheus Operator.
#
# GENERATED: spec.groups is a copy of the groups of the plain rule files
# (ruleFiles in deploy/kubernetes/check/rules.go). Edit those and run
#   cd deploy/kubernetes/check && go test -run TestPrometheusRule -update
# which keeps everything else in this file. deploy/kubernetes/check.sh
# fails when the two differ.
#
# The rules select job="linkwatch", which podmonitor.yaml sets. The
# Prometheus resource selects PrometheusRules by its ruleSelector:
# kube-prometheus selects all of them; kube-prometheus-stack (Helm) wants the
# label release: <its release name>, which you would add below.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: linkwatch-exporter
  namespace: monitoring
  labels:
    app.kubernetes.io/name: linkwatch-exporter
    app.kubernetes.io/component: exporter
    app.kubernetes.io/part-of: linkwatch
spec:
  groups: []
`

// plainRules reads the rule files and returns their groups, concatenated,
// as a YAML sequence node (comments and styles kept) and as plain values
// normalised through JSON.
func plainRules(files []string) (*yaml.Node, []any, error) {
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	var values []any
	names := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		// Decoded with yaml.v3, as Prometheus decodes rule files.
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f, err)
		}
		if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
			return nil, nil, fmt.Errorf("%s: not a YAML mapping", f)
		}
		top := doc.Content[0]
		var groups *yaml.Node
		for i := 0; i < len(top.Content); i += 2 {
			if k := top.Content[i].Value; k != "groups" {
				return nil, nil, fmt.Errorf("%s: top-level key %q: a PrometheusRule can carry only groups", f, k)
			}
			groups = top.Content[i+1]
		}
		if groups == nil || groups.Kind != yaml.SequenceNode {
			return nil, nil, fmt.Errorf("%s: no list of groups", f)
		}
		for i, g := range groups.Content {
			var v struct {
				Name string `yaml:"name"`
			}
			if err := g.Decode(&v); err != nil {
				return nil, nil, fmt.Errorf("%s: group %d: %w", f, i, err)
			}
			if prev, ok := names[v.Name]; ok {
				return nil, nil, fmt.Errorf("%s: group %q is also in %s: a PrometheusRule needs unique group names", f, v.Name, prev)
			}
			names[v.Name] = f
			var val any
			if err := g.Decode(&val); err != nil {
				return nil, nil, fmt.Errorf("%s: group %d: %w", f, i, err)
			}
			norm, err := normalize(val)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: group %d: %w", f, i, err)
			}
			values = append(values, norm)
			if i == 0 {
				g = cloneWithHeadComment(g, "From deploy/prometheus/"+filepath.Base(f)+".")
			}
			seq.Content = append(seq.Content, g)
		}
	}
	return seq, values, nil
}

// cloneWithHeadComment returns a shallow copy of n with c put before its
// head comment.
func cloneWithHeadComment(n *yaml.Node, c string) *yaml.Node {
	cp := *n
	if cp.HeadComment != "" {
		c += "\n" + cp.HeadComment
	}
	cp.HeadComment = c
	return &cp
}

// normalize turns a decoded YAML value into what encoding/json makes of it,
// so that values decoded by different YAML libraries compare equal when
// they mean the same.
func normalize(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	err = json.Unmarshal(b, &out)
	return out, err
}

// prometheusRuleGroups returns spec.groups of a PrometheusRule manifest,
// decoded as the Kubernetes API decodes it (sigs.k8s.io/yaml), normalised
// through JSON.
func prometheusRuleGroups(data []byte) ([]any, error) {
	var obj struct {
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := k8syaml.Unmarshal(data, &obj); err != nil {
		return nil, err
	}
	out := make([]any, 0, len(obj.Spec.Groups))
	for _, g := range obj.Spec.Groups {
		n, err := normalize(g)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// renderPrometheusRule returns the PrometheusRule manifest current (or the
// template, if current is nil) with spec.groups replaced by groups.
func renderPrometheusRule(current []byte, groups *yaml.Node) ([]byte, error) {
	if current == nil {
		current = []byte(prometheusRuleTemplate)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(current, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("not a single YAML document")
	}
	spec := mappingValue(doc.Content[0], "spec")
	if spec == nil || spec.Kind != yaml.MappingNode {
		return nil, errors.New("no spec mapping")
	}
	if old := mappingValue(spec, "groups"); old != nil {
		*old = *groups
	} else {
		spec.Content = append(spec.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "groups"}, groups)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// mappingValue returns the value of key in the mapping node m, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
