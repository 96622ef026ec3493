package ctrl

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

func epSvc(name string, selector map[string]string, ports ...*corev1.ServicePort) *corev1.Service {
	return &corev1.Service{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"tier": "front"}},
		Spec: &corev1.ServiceSpec{Selector: selector, Ports: ports, ClusterIP: "10.96.0.10", Type: "ClusterIP", IpFamilies: []string{"IPv4"}}}
}

func epPort(name string, port int32, target any) *corev1.ServicePort {
	sp := &corev1.ServicePort{Name: name, Port: port, Protocol: "TCP"}
	switch v := target.(type) {
	case int:
		sp.TargetPort = structpb.NewNumberValue(float64(v))
	case string:
		sp.TargetPort = structpb.NewStringValue(v)
	}
	return sp
}

type epPodOpt func(*corev1.Pod)

// epPod is a running pod labelled app=web on node n1 with the given IP ("" for
// none) and readiness.
func epPod(name, ip string, ready bool, opts ...epPodOpt) *corev1.Pod {
	st := condFalse
	if ready {
		st = condTrue
	}
	p := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default", Uid: "uid-" + name, Labels: map[string]string{"app": "web"}},
		Spec: &corev1.PodSpec{NodeName: "n1", Containers: []*corev1.Container{{Name: "c", Image: "img"}}},
		Status: &corev1.PodStatus{Phase: podRunning, PodIP: ip,
			Conditions: []*corev1.PodCondition{{Type: "Ready", Status: st}}}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func epNamedPort(name string, port int32, protocol string) epPodOpt {
	return func(p *corev1.Pod) {
		c := p.Spec.Containers[0]
		c.Ports = append(c.Ports, &corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: protocol})
	}
}

// epString renders subsets compactly: one "[ready] [not ready] ports" line each.
func epString(subsets []*corev1.EndpointSubset) string {
	var lines []string
	addrs := func(as []*corev1.EndpointAddress) string {
		var out []string
		for _, a := range as {
			out = append(out, a.GetIp())
		}
		return "[" + strings.Join(out, " ") + "]"
	}
	for _, s := range subsets {
		var ports []string
		for _, p := range s.GetPorts() {
			ports = append(ports, fmt.Sprintf("%s:%d/%s", p.GetName(), p.GetPort(), p.GetProtocol()))
		}
		lines = append(lines, fmt.Sprintf("%s %s %s", addrs(s.GetAddresses()), addrs(s.GetNotReadyAddresses()), strings.Join(ports, ",")))
	}
	return strings.Join(lines, "\n")
}

var epWeb = map[string]string{"app": "web"}

func TestEndpointSubsetsFor(t *testing.T) {
	now := timestamppb.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		name string
		svc  *corev1.Service
		pods []*corev1.Pod
		want string
	}{
		{"ready and not ready, by IP", epSvc("web", epWeb, epPort("", 80, 8080)), []*corev1.Pod{
			epPod("a", "10.0.0.10", true), epPod("b", "10.0.0.9", true), epPod("c", "10.0.0.2", false), epPod("d", "10.0.0.100", false),
		}, "[10.0.0.9 10.0.0.10] [10.0.0.2 10.0.0.100] :8080/TCP"},
		{"left out", epSvc("web", epWeb, epPort("", 80, 8080)), []*corev1.Pod{
			epPod("in", "10.0.0.1", true),
			epPod("no-ip", "", true),
			epPod("succeeded", "10.0.0.2", false, func(p *corev1.Pod) { p.Status.Phase = podSucceeded }),
			epPod("failed", "10.0.0.3", false, func(p *corev1.Pod) { p.Status.Phase = podFailed }),
			epPod("deleting", "10.0.0.4", true, func(p *corev1.Pod) { p.Metadata.DeletionTimestamp = now }),
			epPod("other-labels", "10.0.0.5", true, func(p *corev1.Pod) { p.Metadata.Labels = map[string]string{"app": "db"} }),
			epPod("other-namespace", "10.0.0.6", true, func(p *corev1.Pod) { p.Metadata.Namespace = "other" }),
		}, "[10.0.0.1] [] :8080/TCP"},
		{"publishNotReadyAddresses", func() *corev1.Service {
			s := epSvc("web", epWeb, epPort("", 80, 8080))
			s.Spec.PublishNotReadyAddresses = true
			return s
		}(), []*corev1.Pod{
			epPod("ready", "10.0.0.1", true), epPod("not-ready", "10.0.0.2", false),
			epPod("deleting", "10.0.0.3", false, func(p *corev1.Pod) { p.Metadata.DeletionTimestamp = now }),
			epPod("succeeded", "10.0.0.4", false, func(p *corev1.Pod) { p.Status.Phase = podSucceeded }),
		}, "[10.0.0.1 10.0.0.2 10.0.0.3] [] :8080/TCP"},
		{"named targetPort resolved per pod", epSvc("web", epWeb, epPort("http", 80, "web"), epPort("metrics", 9090, 9090)), []*corev1.Pod{
			epPod("a", "10.0.0.1", true, epNamedPort("web", 8080, "")),
			epPod("a2", "10.0.0.4", false, epNamedPort("web", 8080, "TCP")),
			epPod("b", "10.0.0.2", true, epNamedPort("web", 8081, "TCP")),
			epPod("lacks-it", "10.0.0.3", true, epNamedPort("other", 8080, "TCP")),
		}, "[10.0.0.1] [10.0.0.4] http:8080/TCP,metrics:9090/TCP\n" +
			"[10.0.0.2] [] http:8081/TCP,metrics:9090/TCP\n" +
			"[10.0.0.3] [] metrics:9090/TCP"},
		{"named port of another protocol", func() *corev1.Service {
			s := epSvc("dns", epWeb, epPort("dns", 53, "dns"))
			s.Spec.Ports[0].Protocol = "UDP"
			return s
		}(), []*corev1.Pod{
			epPod("tcp-only", "10.0.0.1", true, epNamedPort("dns", 5353, "TCP")),
			epPod("udp", "10.0.0.2", true, epNamedPort("dns", 5353, "UDP")),
		}, "[10.0.0.2] [] dns:5353/UDP"},
		{"headless without ports", func() *corev1.Service {
			s := epSvc("web", epWeb)
			s.Spec.ClusterIP, s.Spec.IpFamilies = "None", nil
			return s
		}(), []*corev1.Pod{epPod("a", "10.0.0.1", true), epPod("b", "10.0.0.2", false)}, "[10.0.0.1] [10.0.0.2] "},
		{"no ports, not headless", epSvc("web", epWeb), []*corev1.Pod{epPod("a", "10.0.0.1", true)}, ""},
		{"no selector", epSvc("web", nil, epPort("", 80, 8080)), []*corev1.Pod{epPod("a", "10.0.0.1", true)}, ""},
		{"no pods", epSvc("web", epWeb, epPort("", 80, 8080)), nil, ""},
		{"IPv6 service", func() *corev1.Service {
			s := epSvc("web", epWeb, epPort("", 80, 8080))
			s.Spec.IpFamilies = []string{"IPv6"}
			return s
		}(), []*corev1.Pod{
			epPod("dual", "10.0.0.1", true, func(p *corev1.Pod) {
				p.Status.PodIPs = []*corev1.PodIP{{Ip: "10.0.0.1"}, {Ip: "fd00::1"}}
			}),
			epPod("v4-only", "10.0.0.2", true),
		}, "[fd00::1] [] :8080/TCP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := epString(EndpointSubsetsFor(tc.svc, tc.pods)); got != tc.want {
				t.Fatalf("subsets:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestEndpointAddressFields(t *testing.T) {
	svc := epSvc("web", epWeb, epPort("", 80, 8080))
	svc.Spec.ClusterIP, svc.Spec.IpFamilies = "None", nil
	named := epPod("a", "10.0.0.1", true, func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "a-host", "web" })
	other := epPod("b", "10.0.0.2", true, func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain, p.Spec.NodeName = "b-host", "elsewhere", "" })
	got := EndpointSubsetsFor(svc, []*corev1.Pod{other, named})
	want := []*corev1.EndpointSubset{{
		Addresses: []*corev1.EndpointAddress{
			{Ip: "10.0.0.1", Hostname: "a-host", NodeName: proto.String("n1"),
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "a", Uid: "uid-a"}},
			{Ip: "10.0.0.2", TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "b", Uid: "uid-b"}},
		},
		Ports: []*corev1.EndpointPort{{Port: 8080, Protocol: "TCP"}},
	}}
	if !slices.EqualFunc(got, want, func(a, b *corev1.EndpointSubset) bool { return proto.Equal(a, b) }) {
		t.Fatalf("subsets = %v\nwant %v", got, want)
	}
}

func TestEndpointsFor(t *testing.T) {
	pods := []*corev1.Pod{epPod("a", "10.0.0.1", true)}
	ep, ok := EndpointsFor(epSvc("web", epWeb, epPort("", 80, 8080)), pods)
	if !ok {
		t.Fatal("a service with a selector gets no Endpoints")
	}
	md := ep.GetMetadata()
	if md.GetName() != "web" || md.GetNamespace() != "default" || ep.GetKind() != "Endpoints" || ep.GetApiVersion() != "v1" {
		t.Errorf("identity: %v %v", ep.GetKind(), md)
	}
	if want := map[string]string{"tier": "front", EndpointsManagedByLabel: EndpointsControllerName}; !mapsEqual(md.GetLabels(), want) {
		t.Errorf("labels = %v, want %v", md.GetLabels(), want)
	}
	if epString(ep.GetSubsets()) != "[10.0.0.1] [] :8080/TCP" {
		t.Errorf("subsets = %s", epString(ep.GetSubsets()))
	}

	headless := epSvc("web", epWeb)
	headless.Spec.ClusterIP = "None"
	if ep, _ := EndpointsFor(headless, pods); ep.GetMetadata().GetLabels()[epHeadlessLabel] != "" ||
		len(ep.GetMetadata().GetLabels()) != 3 {
		t.Errorf("headless labels = %v", ep.GetMetadata().GetLabels())
	}

	for name, svc := range map[string]*corev1.Service{
		"no selector": epSvc("web", nil, epPort("", 80, 8080)),
		"ExternalName": func() *corev1.Service {
			s := epSvc("web", epWeb, epPort("", 80, 8080))
			s.Spec.Type = "ExternalName"
			return s
		}(),
		"being deleted": func() *corev1.Service {
			s := epSvc("web", epWeb, epPort("", 80, 8080))
			s.Metadata.DeletionTimestamp = timestamppb.Now()
			return s
		}(),
	} {
		if ep, ok := EndpointsFor(svc, pods); ok {
			t.Errorf("%s: got Endpoints %v", name, ep)
		}
	}
}

func TestEndpointsForIsDeterministic(t *testing.T) {
	svc := epSvc("web", epWeb, epPort("http", 80, "web"), epPort("metrics", 9090, 9090))
	var pods []*corev1.Pod
	for i := range 40 {
		port := int32(8080 + i%3)
		pods = append(pods, epPod(fmt.Sprintf("p%d", i), fmt.Sprintf("10.0.%d.%d", i%4, i), i%5 != 0, epNamedPort("web", port, "TCP")))
	}
	before := make([]*corev1.Pod, len(pods))
	for i, p := range pods {
		before[i] = proto.Clone(p).(*corev1.Pod)
	}
	first, _ := EndpointsFor(svc, pods)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		rng.Shuffle(len(pods), func(i, j int) { pods[i], pods[j] = pods[j], pods[i] })
		again, _ := EndpointsFor(svc, pods)
		if !proto.Equal(first, again) || !epSame(first, again) {
			t.Fatalf("a different pod order gave different Endpoints:\n%s\n---\n%s", epString(first.GetSubsets()), epString(again.GetSubsets()))
		}
	}
	for i, p := range pods {
		if !slices.ContainsFunc(before, func(b *corev1.Pod) bool { return proto.Equal(b, p) }) {
			t.Fatalf("pod %d modified", i)
		}
	}
	if n := len(first.GetSubsets()); n != 3 {
		t.Fatalf("%d subsets, want one per resolved http port", n)
	}
}

func TestEndpointsPodRelevantChange(t *testing.T) {
	base := epPod("a", "10.0.0.1", true, epNamedPort("web", 8080, "TCP"))
	for _, tc := range []struct {
		name string
		edit func(*corev1.Pod)
		want bool
	}{
		{"annotation", func(p *corev1.Pod) { p.Metadata.Annotations = map[string]string{"x": "y"} }, false},
		{"resourceVersion", func(p *corev1.Pod) { p.Metadata.ResourceVersion = "99" }, false},
		{"container image", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "other" }, false},
		{"ready", func(p *corev1.Pod) { p.Status.Conditions[0].Status = condFalse }, true},
		{"ip", func(p *corev1.Pod) { p.Status.PodIP = "10.0.0.2" }, true},
		{"labels", func(p *corev1.Pod) { p.Metadata.Labels = nil }, true},
		{"phase", func(p *corev1.Pod) { p.Status.Phase = podFailed }, true},
		{"deleting", func(p *corev1.Pod) { p.Metadata.DeletionTimestamp = timestamppb.Now() }, true},
		{"node", func(p *corev1.Pod) { p.Spec.NodeName = "n2" }, true},
		{"port", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 9000 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := proto.Clone(base).(*corev1.Pod)
			tc.edit(p)
			if got := epPodRelevantChange(base, p); got != tc.want {
				t.Fatalf("relevant = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEndpointsAgainstCluster(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := context.Background()
	svcs := corev1.NewServicesClient(c.Peers[1].Conn)
	pods := corev1.NewPodsClient(c.Peers[2].Conn)
	eps := corev1.NewEndpointsServiceClient(c.Peers[1].Conn)

	// A selector-less Service with Endpoints its user keeps.
	if _, err := svcs.Create(ctx, &corev1.CreateServiceRequest{Namespace: "default", Body: &corev1.Service{
		Metadata: &metav1.ObjectMeta{Name: "external-db"}, Spec: &corev1.ServiceSpec{Ports: []*corev1.ServicePort{{Port: 5432}}}}}); err != nil {
		t.Fatal(err)
	}
	manual := &corev1.Endpoints{Metadata: &metav1.ObjectMeta{Name: "external-db"}, Subsets: []*corev1.EndpointSubset{{
		Addresses: []*corev1.EndpointAddress{{Ip: "192.168.1.50"}}, Ports: []*corev1.EndpointPort{{Port: 5432, Protocol: "TCP"}}}}}
	if _, err := eps.Create(ctx, &corev1.CreateEndpointsRequest{Namespace: "default", Body: manual}); err != nil {
		t.Fatal(err)
	}

	ec := NewEndpoints(c.Peers[0].Conn, RealClock(), discardLogger())
	lctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ec.Run(lctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("endpoints: %v", err)
		}
	})

	setStatus := func(name, ip string, ready bool) {
		t.Helper()
		p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		st := condFalse
		if ready {
			st = condTrue
		}
		p.Status = &corev1.PodStatus{Phase: podRunning, PodIP: ip, PodIPs: []*corev1.PodIP{{Ip: ip}},
			Conditions: []*corev1.PodCondition{{Type: "Ready", Status: st}}}
		if _, err := pods.UpdateStatus(ctx, &corev1.UpdatePodRequest{Namespace: "default", Name: name, Body: p}); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"web-1", "web-2"} {
		p := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Labels: epWeb},
			Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "img",
				Ports: []*corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}}}
		if _, err := pods.Create(ctx, &corev1.CreatePodRequest{Namespace: "default", Body: p}); err != nil {
			t.Fatal(err)
		}
		setStatus(name, fmt.Sprintf("10.244.0.%d", i+1), true)
	}
	if _, err := svcs.Create(ctx, &corev1.CreateServiceRequest{Namespace: "default", Body: &corev1.Service{
		Metadata: &metav1.ObjectMeta{Name: "web"},
		Spec: &corev1.ServiceSpec{Selector: epWeb, Ports: []*corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: structpb.NewStringValue("http")}}}}}); err != nil {
		t.Fatal(err)
	}

	waitSubsets := func(name, want string) *corev1.Endpoints {
		t.Helper()
		var last *corev1.Endpoints
		c.WaitFor(20*time.Second, fmt.Sprintf("endpoints %s = %q", name, want), func() bool {
			ep, err := eps.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: name})
			if err != nil {
				return false
			}
			last = ep
			return epString(ep.GetSubsets()) == want
		})
		return last
	}
	ep := waitSubsets("web", "[10.244.0.1 10.244.0.2] [] http:8080/TCP")
	if !epManaged(ep) {
		t.Errorf("labels %v lack the managed-by label", ep.GetMetadata().GetLabels())
	}
	for _, a := range ep.GetSubsets()[0].GetAddresses() {
		if r := a.GetTargetRef(); r.GetKind() != "Pod" || r.GetNamespace() != "default" || !strings.HasPrefix(r.GetName(), "web-") || r.GetUid() == "" {
			t.Errorf("targetRef %v", r)
		}
	}

	setStatus("web-2", "10.244.0.2", false)
	waitSubsets("web", "[10.244.0.1] [10.244.0.2] http:8080/TCP")

	// Losing the selector deletes the Endpoints; so does deleting the Service.
	if _, err := svcs.Create(ctx, &corev1.CreateServiceRequest{Namespace: "default", Body: &corev1.Service{
		Metadata: &metav1.ObjectMeta{Name: "web-b"},
		Spec:     &corev1.ServiceSpec{Selector: epWeb, Ports: []*corev1.ServicePort{{Port: 81, TargetPort: structpb.NewNumberValue(9000)}}}}}); err != nil {
		t.Fatal(err)
	}
	waitSubsets("web-b", "[10.244.0.1] [10.244.0.2] :9000/TCP")
	webB, err := svcs.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "web-b"})
	if err != nil {
		t.Fatal(err)
	}
	webB.Spec.Selector = nil
	if _, err := svcs.Update(ctx, &corev1.UpdateServiceRequest{Namespace: "default", Name: "web-b", Body: webB}); err != nil {
		t.Fatal(err)
	}
	if _, err := svcs.Delete(ctx, &metav1.DeleteRequest{Namespace: "default", Name: "web"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web", "web-b"} {
		c.WaitFor(20*time.Second, "endpoints "+name+" deleted", func() bool {
			_, err := eps.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: name})
			return err != nil
		})
	}
	got, err := eps.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "external-db"})
	if err != nil {
		t.Fatalf("the user's Endpoints of a selector-less Service: %v", err)
	}
	if epManaged(got) || epString(got.GetSubsets()) != "[192.168.1.50] [] :5432/TCP" {
		t.Errorf("the user's Endpoints were changed: %v", got)
	}
}
