package check

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	k8syaml "sigs.k8s.io/yaml"
)

// manifestGlob matches the manifests checked, relative to this directory.
const manifestGlob = "../*.yaml"

// scheme knows every kind the manifests may contain; any other kind fails
// to decode. Register new API groups here.
var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(appsv1.AddToScheme(scheme))
	utilruntime.Must(monitoringv1.AddToScheme(scheme))
}

// strictDecoder decodes YAML as the API server does with field validation
// set to Strict: unknown fields (also those differing only in case) and
// repeated fields are errors.
var strictDecoder = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// document is one YAML document of a manifest file.
type document struct {
	File  string // base name
	Index int    // position in the file, from 1
	Data  []byte
}

func (d document) String() string { return fmt.Sprintf("%s (document %d)", d.File, d.Index) }

// readDocuments returns the non-empty YAML documents of the files matching
// glob, in file name order.
func readDocuments(glob string) ([]document, error) {
	files, err := filepath.Glob(glob)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no manifests match %s", glob)
	}
	var docs []document
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for i := 1; ; i++ {
			d, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			var v any
			if err := k8syaml.Unmarshal(d, &v); err != nil {
				return nil, fmt.Errorf("%s (document %d): %w", f, i, err)
			}
			if v == nil { // only comments
				continue
			}
			docs = append(docs, document{File: filepath.Base(f), Index: i, Data: d})
		}
	}
	return docs, nil
}

// decodeStrict decodes one document into its typed object.
func decodeStrict(data []byte) (runtime.Object, error) {
	obj, _, err := strictDecoder.Decode(data, nil, nil)
	return obj, err
}
