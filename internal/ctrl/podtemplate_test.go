package ctrl

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/labels"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// Builders shared by the workload controller tests (replicaset_test.go,
// deployment_test.go). Names start with wl to stay clear of other tests' helpers.

var wlT0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func wlTemplate(image string, lbl map[string]string) *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: cloneStringMap(lbl, "", "")},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "app", Image: image}}, RestartPolicy: "Always"}}
}

func wlRS(name, uid string, replicas int32, lbl map[string]string) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		Metadata: &metav1.ObjectMeta{Name: name, Namespace: "ns", Uid: uid, ResourceVersion: "7", Generation: 1,
			Labels: cloneStringMap(lbl, "", ""), CreationTimestamp: timestamppb.New(wlT0)},
		Spec: &appsv1.ReplicaSetSpec{Replicas: proto.Int32(replicas), Selector: &metav1.LabelSelector{MatchLabels: cloneStringMap(lbl, "", "")},
			Template: wlTemplate("img:1", lbl)},
		Status: &appsv1.ReplicaSetStatus{ObservedGeneration: 1}}
}

type wlPodOpt func(*corev1.Pod)

func wlPod(name string, lbl map[string]string, opts ...wlPodOpt) *corev1.Pod {
	p := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "ns", Uid: "uid-" + name, ResourceVersion: "3",
		Labels: cloneStringMap(lbl, "", ""), CreationTimestamp: timestamppb.New(wlT0)},
		Spec: &corev1.PodSpec{}, Status: &corev1.PodStatus{Phase: podPending}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func wlOwner(uid string) wlPodOpt {
	return func(p *corev1.Pod) {
		p.Metadata.OwnerReferences = append(p.Metadata.OwnerReferences,
			&metav1.OwnerReference{ApiVersion: "apps/v1", Kind: "ReplicaSet", Name: "owner", Uid: uid, Controller: proto.Bool(true)})
	}
}

// wlReady makes p Running on node n1 and Ready since t.
func wlReady(t time.Time) wlPodOpt {
	return func(p *corev1.Pod) {
		p.Spec.NodeName = "n1"
		p.Status.Phase = podRunning
		p.Status.Conditions = []*corev1.PodCondition{{Type: "Ready", Status: condTrue, LastTransitionTime: timestamppb.New(t)}}
	}
}

// wlRunning makes p Running on node but not ready.
func wlRunning(node string) wlPodOpt {
	return func(p *corev1.Pod) {
		p.Spec.NodeName = node
		p.Status.Phase = podRunning
		p.Status.Conditions = []*corev1.PodCondition{{Type: "Ready", Status: condFalse}}
	}
}

func wlNode(n string) wlPodOpt   { return func(p *corev1.Pod) { p.Spec.NodeName = n } }
func wlPhase(ph string) wlPodOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }
func wlDeleting() wlPodOpt {
	return func(p *corev1.Pod) { p.Metadata.DeletionTimestamp = timestamppb.New(wlT0) }
}
func wlCreated(t time.Time) wlPodOpt {
	return func(p *corev1.Pod) { p.Metadata.CreationTimestamp = timestamppb.New(t) }
}
func wlRestarts(n int32) wlPodOpt {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses = []*corev1.ContainerStatus{{Name: "app", RestartCount: n}}
	}
}
func wlAnnotate(k, v string) wlPodOpt {
	return func(p *corev1.Pod) { p.Metadata.Annotations = cloneStringMap(p.Metadata.Annotations, k, v) }
}

func wlPodNames(pods []*corev1.Pod) string {
	var s []string
	for _, p := range pods {
		s = append(s, p.GetMetadata().GetName())
	}
	return strings.Join(s, ",")
}

func TestPodTemplateHash(t *testing.T) {
	app := map[string]string{"app": "web"}
	base := wlTemplate("img:1", app)
	reordered := wlTemplate("img:1", nil)
	reordered.Metadata.Labels = map[string]string{}
	reordered.Metadata.Labels["app"] = "web"
	h := PodTemplateHash(base, nil)
	tests := []struct {
		name     string
		template *corev1.PodTemplateSpec
		cc       *int32
		same     bool
	}{
		{"equal template", proto.Clone(base).(*corev1.PodTemplateSpec), nil, true},
		{"map built in another order", reordered, nil, true},
		{"image changed", wlTemplate("img:2", app), nil, false},
		{"label changed", wlTemplate("img:1", map[string]string{"app": "api"}), nil, false},
		{"collisionCount 0 differs from unset", base, proto.Int32(0), false},
		{"collisionCount 1", base, proto.Int32(1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PodTemplateHash(tt.template, tt.cc)
			if (got == h) != tt.same {
				t.Fatalf("hash %q vs base %q: same=%v, want %v", got, h, got == h, tt.same)
			}
			if len(got) == 0 || len(got) > 10 || strings.Trim(got, "bcdfghjklmnpqrstvwxz2456789") != "" {
				t.Fatalf("hash %q: want 1-10 characters of the safe alphabet", got)
			}
		})
	}
	if PodTemplateHash(base, proto.Int32(1)) == PodTemplateHash(base, proto.Int32(2)) {
		t.Fatal("collisionCount 1 and 2 give the same hash")
	}
}

func TestTemplatesEqual(t *testing.T) {
	app := map[string]string{"app": "web"}
	withHash := wlTemplate("img:1", cloneStringMap(app, PodTemplateHashLabel, "abc"))
	tests := []struct {
		name string
		a, b *corev1.PodTemplateSpec
		want bool
	}{
		{"identical", wlTemplate("img:1", app), wlTemplate("img:1", app), true},
		{"hash label ignored", wlTemplate("img:1", app), withHash, true},
		{"different hash labels ignored", withHash, wlTemplate("img:1", cloneStringMap(app, PodTemplateHashLabel, "xyz")), true},
		{"image differs", wlTemplate("img:1", app), wlTemplate("img:2", app), false},
		{"other label differs", wlTemplate("img:1", app), wlTemplate("img:1", cloneStringMap(app, "tier", "x")), false},
		{"only the hash label vs no metadata", &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: map[string]string{PodTemplateHashLabel: "a"}}}, &corev1.PodTemplateSpec{}, true},
		{"nil vs empty", nil, &corev1.PodTemplateSpec{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TemplatesEqual(tt.a, tt.b); got != tt.want {
				t.Fatalf("TemplatesEqual = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIsPodAvailable(t *testing.T) {
	noTime := wlPod("p", nil, wlReady(wlT0))
	noTime.Status.Conditions[0].LastTransitionTime = nil
	tests := []struct {
		name     string
		pod      *corev1.Pod
		minReady int32
		now      time.Time
		want     bool
	}{
		{"not ready", wlPod("p", nil, wlRunning("n1")), 0, wlT0, false},
		{"ready, minReadySeconds 0", wlPod("p", nil, wlReady(wlT0)), 0, wlT0, true},
		{"ready exactly minReadySeconds ago is not yet available", wlPod("p", nil, wlReady(wlT0)), 10, wlT0.Add(10 * time.Second), false},
		{"ready longer than minReadySeconds", wlPod("p", nil, wlReady(wlT0)), 10, wlT0.Add(10*time.Second + time.Millisecond), true},
		{"no lastTransitionTime with minReadySeconds", noTime, 10, wlT0.Add(time.Hour), false},
		{"no lastTransitionTime, minReadySeconds 0", noTime, 0, wlT0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsPodAvailable(tt.pod, tt.minReady, tt.now); got != tt.want {
				t.Fatalf("IsPodAvailable = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPodFromTemplate(t *testing.T) {
	tmpl := wlTemplate("img:1", map[string]string{"app": "web"})
	tmpl.Metadata.Annotations = map[string]string{"a": "b"}
	tmpl.Metadata.Finalizers = []string{"example.com/f"}
	owner := NewControllerRef(&metav1.ObjectMeta{Name: "web-abc", Uid: "rs-uid"}, "apps/v1", "ReplicaSet")
	p := PodFromTemplate(tmpl, "ns", "web-abc-", owner)
	md := p.GetMetadata()
	if md.GetGenerateName() != "web-abc-" || md.GetName() != "" || md.GetNamespace() != "ns" {
		t.Fatalf("metadata = %v", md)
	}
	if md.GetLabels()["app"] != "web" || md.GetAnnotations()["a"] != "b" || len(md.GetFinalizers()) != 1 {
		t.Fatalf("labels/annotations/finalizers not copied: %v", md)
	}
	ref := controllerRefOf(md)
	if ref == nil || ref.GetUid() != "rs-uid" || ref.GetKind() != "ReplicaSet" || !ref.GetBlockOwnerDeletion() {
		t.Fatalf("ownerReferences = %v", md.GetOwnerReferences())
	}
	if p.GetSpec().GetContainers()[0].GetImage() != "img:1" || p.GetKind() != "Pod" || p.GetApiVersion() != "v1" {
		t.Fatalf("pod = %v", p)
	}
	p.Metadata.Labels["app"] = "changed"
	p.Spec.Containers[0].Image = "changed"
	if tmpl.Metadata.Labels["app"] != "web" || tmpl.Spec.Containers[0].Image != "img:1" {
		t.Fatal("the pod shares memory with the template")
	}
}

func TestSelectorFor(t *testing.T) {
	tests := []struct {
		name    string
		sel     *metav1.LabelSelector
		labels  map[string]string
		want    bool
		wantErr bool
	}{
		{"nil selects nothing", nil, map[string]string{"app": "web"}, false, false},
		{"empty selects everything", &metav1.LabelSelector{}, map[string]string{"x": "y"}, true, false},
		{"matchLabels", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, map[string]string{"app": "web", "x": "y"}, true, false},
		{"matchLabels mismatch", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, map[string]string{"app": "api"}, false, false},
		{"In", &metav1.LabelSelector{MatchExpressions: []*metav1.LabelSelectorRequirement{{Key: "tier", Operator: "In", Values: []string{"a", "b"}}}}, map[string]string{"tier": "b"}, true, false},
		{"NotIn", &metav1.LabelSelector{MatchExpressions: []*metav1.LabelSelectorRequirement{{Key: "tier", Operator: "NotIn", Values: []string{"a"}}}}, map[string]string{"tier": "a"}, false, false},
		{"DoesNotExist", &metav1.LabelSelector{MatchExpressions: []*metav1.LabelSelectorRequirement{{Key: "canary", Operator: "DoesNotExist"}}}, map[string]string{"app": "web"}, true, false},
		{"bad operator", &metav1.LabelSelector{MatchExpressions: []*metav1.LabelSelectorRequirement{{Key: "k", Operator: "Near"}}}, nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := SelectorFor(tt.sel)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := sel.Matches(labels.Set(tt.labels)); got != tt.want {
				t.Fatalf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}
