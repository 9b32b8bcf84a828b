package check

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

const (
	repoRoot  = "../../.."
	namespace = "monitoring"
	nameLabel = "app.kubernetes.io/name"
	appName   = "linkwatch-exporter"
)

// object is one decoded manifest document.
type object struct {
	doc document
	obj runtime.Object
}

// loadObjects decodes every manifest document strictly; any error fails t.
func loadObjects(t *testing.T) []object {
	t.Helper()
	docs, err := readDocuments(manifestGlob)
	if err != nil {
		t.Fatal(err)
	}
	var objs []object
	for _, d := range docs {
		obj, err := decodeStrict(d.Data)
		if err != nil {
			t.Errorf("%s: %v", d, err)
			continue
		}
		objs = append(objs, object{d, obj})
	}
	if t.Failed() {
		t.FailNow()
	}
	return objs
}

// only returns the single object of type T in file, failing t otherwise.
func only[T runtime.Object](t *testing.T, objs []object, file string) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok && o.doc.File == file {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%s: want one %T, found %d", file, zero, len(found))
	}
	return found[0]
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := loadObjects(t)
	kinds := map[string][]string{}
	for _, o := range objs {
		m, err := meta.Accessor(o.obj)
		if err != nil {
			t.Fatalf("%s: %v", o.doc, err)
		}
		if m.GetNamespace() != namespace {
			t.Errorf("%s: namespace %q, want %q", o.doc, m.GetNamespace(), namespace)
		}
		if m.GetLabels()[nameLabel] != appName {
			t.Errorf("%s: label %s=%q, want %q", o.doc, nameLabel, m.GetLabels()[nameLabel], appName)
		}
		kind := o.obj.GetObjectKind().GroupVersionKind().Kind
		kinds[o.doc.File] = append(kinds[o.doc.File], kind)
	}
	want := map[string][]string{
		"daemonset.yaml":          {"ServiceAccount", "DaemonSet"},
		"daemonset-failover.yaml": {"ServiceAccount", "ConfigMap", "DaemonSet"},
		"service.yaml":            {"Service"},
		"podmonitor.yaml":         {"PodMonitor"},
		"prometheusrule.yaml":     {"PrometheusRule"},
	}
	for file, w := range want {
		if !slices.Equal(kinds[file], w) {
			t.Errorf("%s: kinds %v, want %v", file, kinds[file], w)
		}
	}
}

// TestStrictDecodingRejects checks that the decoding used above does fail
// on a misspelt, wrongly cased, repeated or mistyped field, in each kind.
func TestStrictDecodingRejects(t *testing.T) {
	for _, tc := range []struct {
		name, file, old, new, want string
	}{
		{"misspelt field", "daemonset.yaml", "      hostNetwork: true", "      hostNetwrok: true",
			`unknown field "spec.template.spec.hostNetwrok"`},
		{"wrongly cased field", "daemonset.yaml", "      hostNetwork: true", "      hostnetwork: true",
			`unknown field "spec.template.spec.hostnetwork"`},
		{"repeated field", "daemonset.yaml", "      hostNetwork: true\n", "      hostNetwork: true\n      hostNetwork: false\n",
			`"hostNetwork" already set`},
		{"mistyped value", "daemonset.yaml", "runAsUser: 65534", "runAsUser: nobody", "runAsUser"},
		{"misspelt container field", "daemonset-failover.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true",
			`unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem"`},
		{"misspelt ConfigMap field", "daemonset-failover.yaml", "\ndata:\n", "\ndatas:\n", `unknown field "datas"`},
		{"misspelt Service field", "service.yaml", "clusterIP: None", "clusterIp: None", `unknown field "spec.clusterIp"`},
		{"misspelt PodMonitor field", "podmonitor.yaml", "podMetricsEndpoints:", "podMetricEndpoints:",
			`unknown field "spec.podMetricEndpoints"`},
		{"misspelt rule field", "prometheusrule.yaml", "annotations:", "annotation:", `unknown field "spec.groups[0].rules[0].annotation"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs, err := readDocuments(filepath.Join("..", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(docs, func(d document) bool { return strings.Contains(string(d.Data), tc.old) })
			if i < 0 {
				t.Fatalf("%s has no %q", tc.file, tc.old)
			}
			if _, err := decodeStrict(docs[i].Data); err != nil {
				t.Fatalf("%s: unchanged document fails: %v", docs[i], err)
			}
			bad := strings.Replace(string(docs[i].Data), tc.old, tc.new, 1)
			_, err = decodeStrict([]byte(bad))
			if err == nil {
				t.Fatalf("%s with %q -> %q: decoded without error", docs[i], tc.old, tc.new)
			}
			t.Logf("rejected: %v", err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s with %q -> %q: error %q, want it to contain %q", docs[i], tc.old, tc.new, err, tc.want)
			}
		})
	}
}

// effective is the security context that applies to container c of pod
// spec p: the container's settings, or else the pod's.
type effective struct {
	runAsNonRoot bool
	runAsUser    int64
	seccomp      corev1.SeccompProfileType
}

func effectiveContext(p *corev1.PodSpec, c *corev1.Container) effective {
	var e effective
	if s := p.SecurityContext; s != nil {
		if s.RunAsNonRoot != nil {
			e.runAsNonRoot = *s.RunAsNonRoot
		}
		if s.RunAsUser != nil {
			e.runAsUser = *s.RunAsUser
		}
		if s.SeccompProfile != nil {
			e.seccomp = s.SeccompProfile.Type
		}
	}
	if s := c.SecurityContext; s != nil {
		if s.RunAsNonRoot != nil {
			e.runAsNonRoot = *s.RunAsNonRoot
		}
		if s.RunAsUser != nil {
			e.runAsUser = *s.RunAsUser
		}
		if s.SeccompProfile != nil {
			e.seccomp = s.SeccompProfile.Type
		}
	}
	return e
}

// checkCommon checks what both DaemonSets must have, and returns the
// exporter container.
func checkCommon(t *testing.T, file string, ds *appsv1.DaemonSet) *corev1.Container {
	t.Helper()
	p := &ds.Spec.Template.Spec
	if !p.HostNetwork {
		t.Errorf("%s: hostNetwork must be true: the exporter watches the node's links", file)
	}
	if p.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("%s: dnsPolicy %q, want %q", file, p.DNSPolicy, corev1.DNSClusterFirstWithHostNet)
	}
	if p.HostPID || p.HostIPC {
		t.Errorf("%s: hostPID and hostIPC must be off", file)
	}
	if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken must be false", file)
	}
	if !slices.ContainsFunc(p.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}) {
		t.Errorf("%s: want a toleration {operator: Exists} so that every node runs the exporter", file)
	}
	for _, v := range p.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s: volume %s mounts a host path", file, v.Name)
		}
	}
	if len(p.Containers) != 1 || len(p.InitContainers) != 0 {
		t.Fatalf("%s: want exactly one container", file)
	}
	c := &p.Containers[0]
	s := c.SecurityContext
	if s == nil {
		t.Fatalf("%s: container %s has no securityContext", file, c.Name)
	}
	if s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem must be true", file)
	}
	if s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation must be false", file)
	}
	if s.Privileged != nil && *s.Privileged {
		t.Errorf("%s: privileged must be false", file)
	}
	if s.Capabilities == nil || !slices.Equal(s.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("%s: capabilities.drop must be [ALL]", file)
	}
	if e := effectiveContext(p, c); e.seccomp != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile %q, want RuntimeDefault", file, e.seccomp)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("%s: no %s request", file, r)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Errorf("%s: no memory limit", file)
	}
	for name, probe := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil {
			t.Errorf("%s: want an HTTP %s probe", file, name)
			continue
		}
		if probe.HTTPGet.Path != "/" || !hasPort(c, probe.HTTPGet.Port.String(), 9957) {
			t.Errorf("%s: %s probe on %s port %s, want / on the container port 9957", file, name, probe.HTTPGet.Path, probe.HTTPGet.Port.String())
		}
	}
	if !hasPort(c, "metrics", 9957) {
		t.Errorf("%s: want container port 9957 named metrics", file)
	}
	if !slices.Contains(c.Args, "--web.listen-address=:9957") {
		t.Errorf("%s: args %q, want --web.listen-address=:9957", file, c.Args)
	}
	return c
}

// hasPort reports whether c has a container port with this name or number
// and the number want.
func hasPort(c *corev1.Container, nameOrNumber string, want int32) bool {
	return slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
		return p.ContainerPort == want && (p.Name == nameOrNumber || fmt.Sprint(want) == nameOrNumber)
	})
}

func TestDaemonSet(t *testing.T) {
	objs := loadObjects(t)
	const file = "daemonset.yaml"
	ds := only[*appsv1.DaemonSet](t, objs, file)
	c := checkCommon(t, file, ds)
	e := effectiveContext(&ds.Spec.Template.Spec, c)
	if !e.runAsNonRoot || e.runAsUser != 65534 {
		t.Errorf("%s: runs with runAsNonRoot=%v runAsUser=%d, want true and 65534", file, e.runAsNonRoot, e.runAsUser)
	}
	if caps := c.SecurityContext.Capabilities; caps != nil && len(caps.Add) > 0 {
		t.Errorf("%s: adds capabilities %v: the monitoring-only exporter needs none (no NET_ADMIN)", file, caps.Add)
	}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--config.file") {
			t.Errorf("%s: %s enables failover, which belongs in daemonset-failover.yaml", file, a)
		}
	}
	if sa := only[*corev1.ServiceAccount](t, objs, file); sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("%s: ServiceAccount automountServiceAccountToken must be false", file)
	}
}

func TestFailoverDaemonSet(t *testing.T) {
	objs := loadObjects(t)
	const file = "daemonset-failover.yaml"
	ds := only[*appsv1.DaemonSet](t, objs, file)
	c := checkCommon(t, file, ds)
	if caps := c.SecurityContext.Capabilities; caps == nil || !slices.Equal(caps.Add, []corev1.Capability{"NET_ADMIN"}) {
		t.Errorf("%s: capabilities.add must be exactly [NET_ADMIN]", file)
	}
	// Every file named by a flag must be mounted, and the policy must be a
	// key of the ConfigMap in this file.
	files := mountedFiles(t, &ds.Spec.Template.Spec, c)
	cm := only[*corev1.ConfigMap](t, objs, file)
	for _, flagName := range []string{"--config.file", "--webhook.bearer-token-file"} {
		p := flagValue(c.Args, flagName)
		if p == "" {
			t.Errorf("%s: no %s", file, flagName)
			continue
		}
		src, ok := files[p]
		if !ok {
			t.Errorf("%s: %s=%s is not a mounted file (mounted: %v)", file, flagName, p, files)
			continue
		}
		if flagName == "--config.file" && (src.kind != "configMap" || src.name != cm.Name || cm.Data[src.key] == "") {
			t.Errorf("%s: %s=%s comes from %+v, want key of ConfigMap %s", file, flagName, p, src, cm.Name)
		}
		if flagName == "--webhook.bearer-token-file" && src.kind != "secret" {
			t.Errorf("%s: %s=%s comes from %+v, want a Secret", file, flagName, p, src)
		}
	}
}

// TestDaemonSetsAreVariants checks that the two DaemonSets replace each
// other and are selected alike by the Service and the PodMonitor.
func TestDaemonSetsAreVariants(t *testing.T) {
	objs := loadObjects(t)
	a := only[*appsv1.DaemonSet](t, objs, "daemonset.yaml")
	b := only[*appsv1.DaemonSet](t, objs, "daemonset-failover.yaml")
	if a.Namespace != b.Namespace || a.Name != b.Name {
		t.Errorf("the DaemonSets are %s/%s and %s/%s; want the same name, so that one replaces the other and both never bind port 9957 on a node",
			a.Namespace, a.Name, b.Namespace, b.Name)
	}
	svc := only[*corev1.Service](t, objs, "service.yaml")
	pm := only[*monitoringv1.PodMonitor](t, objs, "podmonitor.yaml")
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("service.yaml: clusterIP %q, want None (headless)", svc.Spec.ClusterIP)
	}
	pmSel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
	if err != nil {
		t.Fatalf("podmonitor.yaml: %v", err)
	}
	for _, ds := range []*appsv1.DaemonSet{a, b} {
		pod := labels.Set(ds.Spec.Template.Labels)
		dsSel := labels.SelectorFromSet(ds.Spec.Selector.MatchLabels)
		if !dsSel.Matches(pod) {
			t.Errorf("DaemonSet selector %s does not match its pod labels %s", dsSel, pod)
		}
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(pod) {
			t.Errorf("service.yaml: selector does not match the pods %s", pod)
		}
		if !pmSel.Matches(pod) {
			t.Errorf("podmonitor.yaml: selector %s does not match the pods %s", pmSel, pod)
		}
		c := &ds.Spec.Template.Spec.Containers[0]
		for _, p := range svc.Spec.Ports {
			if !hasPort(c, p.TargetPort.String(), p.Port) || p.Name != "metrics" {
				t.Errorf("service.yaml: port %s/%d -> %s is not the container's metrics port", p.Name, p.Port, p.TargetPort.String())
			}
		}
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if ep.Port == nil || *ep.Port != "metrics" || !hasPort(c, *ep.Port, 9957) {
				t.Errorf("podmonitor.yaml: endpoint port %q, want metrics", deref(ep.Port))
			}
		}
	}
	// The rules select job="linkwatch".
	for _, ep := range pm.Spec.PodMetricsEndpoints {
		if !slices.ContainsFunc(ep.RelabelConfigs, func(r monitoringv1.RelabelConfig) bool {
			return r.TargetLabel == "job" && r.Replacement != nil && *r.Replacement == "linkwatch"
		}) {
			t.Errorf(`podmonitor.yaml: endpoint %q does not set job="linkwatch", which the rules select`, deref(ep.Port))
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestVersion checks that the image tag and the version labels follow the
// VERSION file.
func TestVersion(t *testing.T) {
	v, err := os.ReadFile(filepath.Join(repoRoot, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(v))
	for _, o := range loadObjects(t) {
		ds, ok := o.obj.(*appsv1.DaemonSet)
		if !ok {
			continue
		}
		for _, l := range []map[string]string{ds.Labels, ds.Spec.Template.Labels} {
			if got := l["app.kubernetes.io/version"]; got != version {
				t.Errorf("%s: label app.kubernetes.io/version=%q, want %q (VERSION)", o.doc, got, version)
			}
		}
		for _, c := range ds.Spec.Template.Spec.Containers {
			if !strings.HasSuffix(c.Image, ":v"+version) {
				t.Errorf("%s: image %s, want tag v%s (VERSION)", o.doc, c.Image, version)
			}
		}
	}
}

// TestContainerArgs runs the exporter on each DaemonSet's arguments: an
// unknown flag or a bad value of a checked flag fails here.
func TestContainerArgs(t *testing.T) {
	bin := exporterBinary(t)
	for _, o := range loadObjects(t) {
		ds, ok := o.obj.(*appsv1.DaemonSet)
		if !ok {
			continue
		}
		for _, c := range ds.Spec.Template.Spec.Containers {
			// --version exits right after the flags are parsed.
			out, err := exec.Command(bin, append(slices.Clone(c.Args), "--version")...).CombinedOutput()
			if err != nil {
				t.Errorf("%s: linkwatch_exporter %s: %v\n%s", o.doc, strings.Join(c.Args, " "), err, out)
			}
		}
	}
}

// TestFailoverPolicy validates the policy file in the ConfigMap with the
// exporter's own --config.check.
func TestFailoverPolicy(t *testing.T) {
	bin := exporterBinary(t)
	cm := only[*corev1.ConfigMap](t, loadObjects(t), "daemonset-failover.yaml")
	for key, data := range cm.Data {
		f := filepath.Join(t.TempDir(), key)
		if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--config.file="+f, "--config.check").CombinedOutput()
		if err != nil {
			t.Errorf("ConfigMap %s key %s: --config.check: %v\n%s", cm.Name, key, err, out)
		}
	}
}

// source says where a mounted file comes from.
type source struct{ kind, name, key string }

// mountedFiles maps the path of every file that c's volume mounts provide
// (from ConfigMap, Secret and projected volumes with items) to its source.
func mountedFiles(t *testing.T, p *corev1.PodSpec, c *corev1.Container) map[string]source {
	t.Helper()
	files := map[string]source{}
	add := func(dir, kind, name string, items []corev1.KeyToPath) {
		if len(items) == 0 {
			t.Errorf("%s %s is mounted without items: list the keys so that the file names are checked", kind, name)
		}
		for _, it := range items {
			files[path.Join(dir, it.Path)] = source{kind, name, it.Key}
		}
	}
	for _, m := range c.VolumeMounts {
		i := slices.IndexFunc(p.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 {
			t.Errorf("volume mount %s: no such volume", m.Name)
			continue
		}
		v := p.Volumes[i]
		switch {
		case v.ConfigMap != nil:
			add(m.MountPath, "configMap", v.ConfigMap.Name, v.ConfigMap.Items)
		case v.Secret != nil:
			add(m.MountPath, "secret", v.Secret.SecretName, v.Secret.Items)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				switch {
				case s.ConfigMap != nil:
					add(m.MountPath, "configMap", s.ConfigMap.Name, s.ConfigMap.Items)
				case s.Secret != nil:
					add(m.MountPath, "secret", s.Secret.Name, s.Secret.Items)
				}
			}
		}
	}
	return files
}

// flagValue returns the value of --name=value in args, or "".
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

var (
	tmpDir    string
	buildOnce sync.Once
	binary    string
	buildErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "linkwatch-k8s-check-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tmpDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// exporterBinary builds the exporter from the repository once per run.
func exporterBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binary = filepath.Join(tmpDir, "linkwatch_exporter")
		cmd := exec.Command("go", "build", "-buildvcs=false", "-o", binary, ".")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building the exporter: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}
