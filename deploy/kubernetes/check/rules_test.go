package check

import (
	"errors"
	"flag"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite ../prometheusrule.yaml from the plain rule files")

// TestPrometheusRule checks that prometheusrule.yaml carries exactly the
// groups of the plain rule files; with -update it first rewrites it.
func TestPrometheusRule(t *testing.T) {
	seq, want, err := plainRules(ruleFiles)
	if err != nil {
		t.Fatal(err)
	}
	current, err := os.ReadFile(prometheusRuleFile)
	if err != nil && !(*update && errors.Is(err, fs.ErrNotExist)) {
		t.Fatal(err)
	}
	if *update {
		out, err := renderPrometheusRule(current, seq)
		if err != nil {
			t.Fatalf("%s: %v", prometheusRuleFile, err)
		}
		if err := os.WriteFile(prometheusRuleFile, out, 0o644); err != nil {
			t.Fatal(err)
		}
		current = out
	}
	got, err := prometheusRuleGroups(current)
	if err != nil {
		t.Fatalf("%s: %v", prometheusRuleFile, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("spec.groups of %s differs from the groups of %s (-plain +PrometheusRule):\n%s\n"+
			"Regenerate it: cd deploy/kubernetes/check && go test -run TestPrometheusRule -update",
			prometheusRuleFile, strings.Join(ruleFiles, ", "), diff)
	}
}

// TestRenderPrometheusRuleIsStable checks that rendering the generated file
// again changes nothing, so -update gives no spurious diffs.
func TestRenderPrometheusRuleIsStable(t *testing.T) {
	seq, _, err := plainRules(ruleFiles)
	if err != nil {
		t.Fatal(err)
	}
	first, err := renderPrometheusRule(nil, seq)
	if err != nil {
		t.Fatal(err)
	}
	second, err := renderPrometheusRule(first, seq)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(first), string(second)); diff != "" {
		t.Errorf("rendering twice differs (-first +second):\n%s", diff)
	}
}

// TestPrometheusRuleDetectsDrift checks that the comparison sees a changed
// threshold, a YAML 1.1 boolean that the Kubernetes API would read
// differently than Prometheus, and an extra group.
func TestPrometheusRuleDetectsDrift(t *testing.T) {
	seq, want, err := plainRules(ruleFiles)
	if err != nil {
		t.Fatal(err)
	}
	good, err := renderPrometheusRule(nil, seq)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"changed duration", "for: ", "for: 9"},
		{"unquoted yes", "severity: warning", "severity: yes"},
		{"extra group", "- name: linkwatch.rules", "- name: linkwatch.rules\n      rules: []\n    - name: extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(good), tc.old) {
				t.Fatalf("rendered rule has no %q", tc.old)
			}
			bad := strings.Replace(string(good), tc.old, tc.new, 1)
			got, err := prometheusRuleGroups([]byte(bad))
			if err != nil {
				t.Fatal(err)
			}
			if cmp.Equal(want, got) {
				t.Errorf("change %q -> %q not detected", tc.old, tc.new)
			}
		})
	}
}

func TestPlainRulesRejectsDuplicateGroups(t *testing.T) {
	_, _, err := plainRules([]string{ruleFiles[0], ruleFiles[0]})
	if err == nil || !strings.Contains(err.Error(), "unique group names") {
		t.Errorf("got %v, want an error about unique group names", err)
	}
}
