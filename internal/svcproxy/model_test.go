package svcproxy

import (
	"net/netip"
	"slices"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

func svc(ns, name, typ, ip string, ports ...*corev1.ServicePort) *corev1.Service {
	return &corev1.Service{Metadata: &metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: &corev1.ServiceSpec{Type: typ, ClusterIP: ip, Ports: ports}}
}

func port(name string, p, nodePort int32) *corev1.ServicePort {
	return &corev1.ServicePort{Name: name, Port: p, NodePort: nodePort, Protocol: "TCP", TargetPort: structpb.NewNumberValue(8080)}
}

func eps(ns, name string, subsets ...*corev1.EndpointSubset) *corev1.Endpoints {
	return &corev1.Endpoints{Metadata: &metav1.ObjectMeta{Namespace: ns, Name: name}, Subsets: subsets}
}

func subset(ready, notReady []string, ports ...*corev1.EndpointPort) *corev1.EndpointSubset {
	s := &corev1.EndpointSubset{Ports: ports}
	for _, ip := range ready {
		s.Addresses = append(s.Addresses, &corev1.EndpointAddress{Ip: ip})
	}
	for _, ip := range notReady {
		s.NotReadyAddresses = append(s.NotReadyAddresses, &corev1.EndpointAddress{Ip: ip})
	}
	return s
}

func TestBuild(t *testing.T) {
	ep := func(ip string, p uint16) Endpoint { return Endpoint{IP: netip.MustParseAddr(ip), Port: p} }
	services := []*corev1.Service{
		svc("default", "web", "ClusterIP", "10.96.0.10", port("http", 80, 0), port("metrics", 9090, 0)),
		svc("default", "np", "NodePort", "10.96.0.11", port("", 80, 30080)),
		svc("default", "lb", "LoadBalancer", "10.96.0.12", port("", 443, 30443)),
		svc("default", "headless", "ClusterIP", "None", port("", 80, 0)),
		svc("default", "ext", "ExternalName", "", port("", 80, 0)),
		svc("a", "noeps", "", "10.96.0.13", port("", 53, 0)),
	}
	endpoints := []*corev1.Endpoints{
		eps("default", "web",
			subset([]string{"10.1.0.3", "10.1.0.2"}, []string{"10.1.0.9"},
				&corev1.EndpointPort{Name: "http", Port: 8080, Protocol: "TCP"}, &corev1.EndpointPort{Name: "metrics", Port: 9091, Protocol: "TCP"}),
			subset([]string{"10.1.0.2"}, nil, &corev1.EndpointPort{Name: "http", Port: 8080, Protocol: "TCP"})),
		eps("default", "np", subset([]string{"10.1.0.4"}, nil, &corev1.EndpointPort{Port: 8080})),
		eps("default", "headless", subset([]string{"10.1.0.5"}, nil, &corev1.EndpointPort{Port: 8080})),
	}
	want := []ServicePort{
		{Name: "a/noeps/tcp/53", ClusterIP: netip.MustParseAddr("10.96.0.13"), Port: 53, Protocol: TCP},
		{Name: "default/lb/tcp/443", ClusterIP: netip.MustParseAddr("10.96.0.12"), Port: 443, Protocol: TCP, NodePort: 30443},
		{Name: "default/np/tcp/80", ClusterIP: netip.MustParseAddr("10.96.0.11"), Port: 80, Protocol: TCP, NodePort: 30080,
			Endpoints: []Endpoint{ep("10.1.0.4", 8080)}},
		{Name: "default/web/tcp/http", ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Protocol: TCP,
			Endpoints: []Endpoint{ep("10.1.0.2", 8080), ep("10.1.0.3", 8080)}},
		{Name: "default/web/tcp/metrics", ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 9090, Protocol: TCP,
			Endpoints: []Endpoint{ep("10.1.0.2", 9091), ep("10.1.0.3", 9091)}},
	}
	got := Build(services, endpoints)
	if !slices.EqualFunc(got.Ports, want, func(a, b ServicePort) bool {
		return a.Name == b.Name && a.ClusterIP == b.ClusterIP && a.Port == b.Port && a.Protocol == b.Protocol &&
			a.NodePort == b.NodePort && slices.Equal(a.Endpoints, b.Endpoints)
	}) {
		t.Fatalf("Build =\n%s\nwant\n%s", got, Ruleset{Ports: want})
	}
	// Input order does not matter.
	slices.Reverse(services)
	slices.Reverse(endpoints)
	if again := Build(services, endpoints); again.String() != got.String() || fingerprint(again) != fingerprint(got) {
		t.Fatalf("Build depends on input order:\n%s\nvs\n%s", again, got)
	}
	// A changed endpoint changes the fingerprint.
	endpoints[len(endpoints)-1] = eps("default", "web") // web was first before the reverse
	if fingerprint(Build(services, endpoints)) == fingerprint(got) {
		t.Fatal("fingerprint ignores endpoints")
	}
}
