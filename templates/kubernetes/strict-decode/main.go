// Command strict-decode reads Kubernetes manifests (a multi-document YAML stream) on stdin and
// decodes each one strictly into its Go type from k8s.io/api, the types the API server decodes
// into: an unknown or misspelt field, a duplicate field or a wrong type is an error, as with
// `kubectl apply --validate=strict`. The OpenAPI schemas the chart's tests also check with
// kubernetes-models do not forbid unknown fields, so this catches what they let through.
//
// Exit 0: every document decoded; exit 1: the errors, one per line, on stderr.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// target returns an empty object of the manifest's kind, or nil when this tool has no type for it.
func target(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}
	case "v1/Namespace":
		return &corev1.Namespace{}
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	}
	return nil
}

func main() {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	var failures []string
	decoded := 0
	for {
		document, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "reading the stream: %v\n", err)
			os.Exit(1)
		}
		if strings.TrimSpace(stripComments(string(document))) == "" {
			continue
		}
		var meta struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(document, &meta); err != nil {
			failures = append(failures, fmt.Sprintf("a document is not YAML: %v", err))
			continue
		}
		name := fmt.Sprintf("%s %s/%s", meta.APIVersion, meta.Kind, meta.Name)
		object := target(meta.APIVersion, meta.Kind)
		if object == nil {
			if meta.APIVersion == "monitoring.coreos.com/v1" {
				fmt.Printf("skipped %s (a CRD: checked with @kubernetes-models/prometheus-operator)\n", name)
				continue
			}
			failures = append(failures, fmt.Sprintf("%s: no Go type for this kind", name))
			continue
		}
		if err := yaml.UnmarshalStrict(document, object); err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		decoded++
		fmt.Printf("ok %s\n", name)
	}
	if len(failures) > 0 {
		for _, failure := range failures {
			fmt.Fprintln(os.Stderr, failure)
		}
		os.Exit(1)
	}
	fmt.Printf("%d decoded strictly\n", decoded)
}

func stripComments(text string) string {
	var kept []string
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}
