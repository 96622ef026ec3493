package main

import (
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// protoPackage is the proto package generated from one Go API package.
type protoPackage struct {
	GoPath string // Go import path of the Kubernetes package, "k8s.io/api/core/v1"
	Short  string // directory and middle name component, "core"
	Group  string // Kubernetes API group, "" for core; only meaningful for packages with kinds
	Alias  string // Go package name of the generated code, "corev1"
}

// Name is the proto package name, "rafter.core.v1".
func (p *protoPackage) Name() string { return "rafter." + p.Short + ".v1" }

// Dir is the directory of the package's .proto files, relative to the proto root.
func (p *protoPackage) Dir() string { return "rafter/" + p.Short + "/v1" }

// GoImport is the import path of the generated Go package.
func (p *protoPackage) GoImport() string {
	return "github.com/rafter-dev/rafter/gen/" + p.Dir()
}

// GoPackageOption is the value of the file's go_package option.
func (p *protoPackage) GoPackageOption() string { return p.GoImport() + ";" + p.Alias }

// APIVersion is the apiVersion of the package's kinds: "v1" or "apps/v1".
func (p *protoPackage) APIVersion() string {
	if p.Group == "" {
		return "v1"
	}
	return p.Group + "/v1"
}

// RESTPrefix is the path prefix of the package's kinds: "/api/v1" or "/apis/apps/v1".
func (p *protoPackage) RESTPrefix() string {
	if p.Group == "" {
		return "/api/v1"
	}
	return "/apis/" + p.Group + "/v1"
}

// packages lists every Go package the generator may reach, in output order.
// Reaching a Go package that is not listed is an error.
var packages = []*protoPackage{
	{GoPath: "k8s.io/apimachinery/pkg/apis/meta/v1", Short: "meta", Group: "meta.k8s.io", Alias: "metav1"},
	{GoPath: "k8s.io/api/core/v1", Short: "core", Group: "", Alias: "corev1"},
	{GoPath: "k8s.io/api/apps/v1", Short: "apps", Group: "apps", Alias: "appsv1"},
	{GoPath: "k8s.io/api/networking/v1", Short: "networking", Group: "networking.k8s.io", Alias: "networkingv1"},
	{GoPath: "k8s.io/api/coordination/v1", Short: "coordination", Group: "coordination.k8s.io", Alias: "coordinationv1"},
	{GoPath: "k8s.io/api/rbac/v1", Short: "rbac", Group: "rbac.authorization.k8s.io", Alias: "rbacv1"},
	{GoPath: "k8s.io/api/storage/v1", Short: "storage", Group: "storage.k8s.io", Alias: "storagev1"},
	{GoPath: "k8s.io/api/autoscaling/v1", Short: "autoscaling", Group: "autoscaling", Alias: "autoscalingv1"},
	{GoPath: "k8s.io/api/policy/v1", Short: "policy", Group: "policy", Alias: "policyv1"},
}

// packageByGoPath returns the proto package for a Go import path.
func packageByGoPath(goPath string) (*protoPackage, bool) {
	for _, p := range packages {
		if p.GoPath == goPath {
			return p, true
		}
	}
	return nil, false
}

// kindSpec is one API kind served by Rafter.
type kindSpec struct {
	Object     reflect.Type // the kind's Go struct, corev1.Pod
	List       reflect.Type // its list, corev1.PodList
	Resource   string       // plural resource name, "pods"
	Namespaced bool
	ShortNames []string
}

// Kind is the Go type name, "Pod".
func (k kindSpec) Kind() string { return k.Object.Name() }

func kind[T, L any](resource string, namespaced bool, shortNames ...string) kindSpec {
	return kindSpec{
		Object:     reflect.TypeFor[T](),
		List:       reflect.TypeFor[L](),
		Resource:   resource,
		Namespaced: namespaced,
		ShortNames: shortNames,
	}
}

const (
	namespaced    = true
	clusterScoped = false
)

// kindTable is every kind Rafter serves, in the order of kinds.All.
var kindTable = []kindSpec{
	kind[corev1.Namespace, corev1.NamespaceList]("namespaces", clusterScoped, "ns"),
	kind[corev1.Node, corev1.NodeList]("nodes", clusterScoped, "no"),
	kind[corev1.Pod, corev1.PodList]("pods", namespaced, "po"),
	kind[corev1.Service, corev1.ServiceList]("services", namespaced, "svc"),
	kind[corev1.Endpoints, corev1.EndpointsList]("endpoints", namespaced, "ep"),
	kind[corev1.ConfigMap, corev1.ConfigMapList]("configmaps", namespaced, "cm"),
	kind[corev1.Secret, corev1.SecretList]("secrets", namespaced),
	kind[corev1.PersistentVolume, corev1.PersistentVolumeList]("persistentvolumes", clusterScoped, "pv"),
	kind[corev1.PersistentVolumeClaim, corev1.PersistentVolumeClaimList]("persistentvolumeclaims", namespaced, "pvc"),
	kind[corev1.Event, corev1.EventList]("events", namespaced, "ev"),
	kind[corev1.ServiceAccount, corev1.ServiceAccountList]("serviceaccounts", namespaced, "sa"),
	kind[appsv1.ReplicaSet, appsv1.ReplicaSetList]("replicasets", namespaced, "rs"),
	kind[appsv1.Deployment, appsv1.DeploymentList]("deployments", namespaced, "deploy"),
	kind[appsv1.DaemonSet, appsv1.DaemonSetList]("daemonsets", namespaced, "ds"),
	kind[appsv1.StatefulSet, appsv1.StatefulSetList]("statefulsets", namespaced, "sts"),
	kind[networkingv1.Ingress, networkingv1.IngressList]("ingresses", namespaced, "ing"),
	kind[coordinationv1.Lease, coordinationv1.LeaseList]("leases", namespaced),
	kind[rbacv1.Role, rbacv1.RoleList]("roles", namespaced),
	kind[rbacv1.ClusterRole, rbacv1.ClusterRoleList]("clusterroles", clusterScoped),
	kind[rbacv1.RoleBinding, rbacv1.RoleBindingList]("rolebindings", namespaced),
	kind[rbacv1.ClusterRoleBinding, rbacv1.ClusterRoleBindingList]("clusterrolebindings", clusterScoped),
	kind[storagev1.StorageClass, storagev1.StorageClassList]("storageclasses", clusterScoped, "sc"),
}

// extraTypes are emitted as messages although they are not kinds of their own:
// pods/binding, pods/eviction, the scale subresource and the error body of every
// failed call. Eviction reaches metav1.DeleteOptions, so DeleteOptions and
// Preconditions are reflected into meta/v1/types.proto (keeping the numbers
// requests.proto gave them, see requestNumbers) instead of being declared in
// requests.proto.
var extraTypes = []reflect.Type{
	reflect.TypeFor[corev1.Binding](),
	reflect.TypeFor[policyv1.Eviction](),
	reflect.TypeFor[autoscalingv1.Scale](),
	reflect.TypeFor[metav1.Status](),
	reflect.TypeFor[metav1.StatusDetails](),
	reflect.TypeFor[metav1.StatusCause](),
}
