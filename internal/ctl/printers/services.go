package printers

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	networkingv1 "github.com/rafter-dev/rafter/gen/rafter/networking/v1"
)

func init() {
	register("Service", []column{
		{name: "NAME"}, {name: "TYPE"}, {name: "CLUSTER-IP"}, {name: "EXTERNAL-IP"}, {name: "PORT(S)"}, {name: "AGE"},
		{name: "SELECTOR", wide: true},
	}, serviceRow)
	register("Endpoints", []column{{name: "NAME"}, {name: "ENDPOINTS"}, {name: "AGE"}}, endpointsRow)
	register("Ingress", []column{
		{name: "NAME"}, {name: "CLASS"}, {name: "HOSTS"}, {name: "ADDRESS"}, {name: "PORTS"}, {name: "AGE"},
	}, ingressRow)
}

func serviceRow(svc *corev1.Service, c rowContext) []string {
	spec := svc.GetSpec()
	clusterIP := "<none>"
	if ips := spec.GetClusterIPs(); len(ips) > 0 {
		clusterIP = ips[0]
	} else if spec.GetClusterIP() != "" {
		clusterIP = spec.GetClusterIP()
	}
	ports := make([]string, len(spec.GetPorts()))
	for i, p := range spec.GetPorts() {
		proto := p.GetProtocol()
		if proto == "" {
			proto = "TCP"
		}
		ports[i] = fmt.Sprintf("%d/%s", p.GetPort(), proto)
		if p.GetNodePort() > 0 {
			ports[i] = fmt.Sprintf("%d:%d/%s", p.GetPort(), p.GetNodePort(), proto)
		}
	}
	return []string{
		svc.GetMetadata().GetName(),
		spec.GetType(),
		clusterIP,
		serviceExternalIP(svc, c.wide),
		orNone(strings.Join(ports, ",")),
		c.age(svc.GetMetadata()),
		formatLabels(spec.GetSelector()),
	}
}

// serviceExternalIP is kubectl's EXTERNAL-IP of a service. A service without a type
// is a ClusterIP service, as the API server defaults it.
func serviceExternalIP(svc *corev1.Service, wide bool) string {
	spec := svc.GetSpec()
	switch spec.GetType() {
	case "", "ClusterIP", "NodePort":
		if len(spec.GetExternalIPs()) > 0 {
			return strings.Join(spec.GetExternalIPs(), ",")
		}
		return "<none>"
	case "LoadBalancer":
		var addrs []string
		for _, in := range svc.GetStatus().GetLoadBalancer().GetIngress() {
			addrs = append(addrs, firstNonEmpty(in.GetIp(), in.GetHostname()))
		}
		lb := loadBalancerAddresses(addrs, wide)
		if len(spec.GetExternalIPs()) > 0 {
			var all []string
			if lb != "" {
				all = strings.Split(lb, ",")
			}
			return strings.Join(append(all, spec.GetExternalIPs()...), ",")
		}
		if lb != "" {
			return lb
		}
		return "<pending>"
	case "ExternalName":
		return spec.GetExternalName()
	}
	return "<unknown>"
}

// loadBalancerAddresses is kubectl's list of load balancer addresses: sorted,
// without duplicates or empty ones, and cut to 16 bytes unless wide.
func loadBalancerAddresses(addrs []string, wide bool) string {
	addrs = slices.DeleteFunc(slices.Clone(addrs), func(s string) bool { return s == "" })
	slices.Sort(addrs)
	s := strings.Join(slices.Compact(addrs), ",")
	const width = 16
	if !wide && len(s) > width {
		s = s[:width-3] + "..."
	}
	return s
}

// endpointsRow lists at most three ip:port pairs, as kubectl does, and says how
// many more there are.
func endpointsRow(ep *corev1.Endpoints, c rowContext) []string {
	const max = 3
	var list []string
	count := 0
	for _, ss := range ep.GetSubsets() {
		if len(ss.GetPorts()) == 0 {
			// A headless service may have no ports.
			count += len(ss.GetAddresses())
			for _, a := range ss.GetAddresses() {
				if len(list) < max {
					list = append(list, a.GetIp())
				}
			}
			continue
		}
		for _, p := range ss.GetPorts() {
			count += len(ss.GetAddresses())
			for _, a := range ss.GetAddresses() {
				if len(list) < max {
					list = append(list, net.JoinHostPort(a.GetIp(), strconv.Itoa(int(p.GetPort()))))
				}
			}
		}
	}
	s := strings.Join(list, ",")
	switch {
	case len(ep.GetSubsets()) == 0:
		s = "<none>"
	case count > max:
		s = fmt.Sprintf("%s + %d more...", s, count-max)
	}
	return []string{ep.GetMetadata().GetName(), s, c.age(ep.GetMetadata())}
}

func ingressRow(ing *networkingv1.Ingress, c rowContext) []string {
	spec := cmp.Or(ing.GetSpec(), &networkingv1.IngressSpec{})
	class := "<none>"
	if spec.IngressClassName != nil {
		class = spec.GetIngressClassName()
	}

	const max = 3
	var hosts []string
	more := false
	for _, r := range spec.GetRules() {
		if len(hosts) == max {
			more = true
		}
		if !more && r.GetHost() != "" {
			hosts = append(hosts, r.GetHost())
		}
	}
	hostList := strings.Join(hosts, ",")
	switch {
	case len(hosts) == 0:
		hostList = "*"
	case more:
		hostList = fmt.Sprintf("%s + %d more...", hostList, len(spec.GetRules())-max)
	}

	var addrs []string
	for _, in := range ing.GetStatus().GetLoadBalancer().GetIngress() {
		addrs = append(addrs, firstNonEmpty(in.GetIp(), in.GetHostname()))
	}
	ports := "80"
	if len(spec.GetTls()) > 0 {
		ports = "80, 443"
	}
	return []string{
		ing.GetMetadata().GetName(),
		class,
		hostList,
		loadBalancerAddresses(addrs, c.wide),
		ports,
		c.age(ing.GetMetadata()),
	}
}

// formatLabels is kubectl's labels.FormatLabels: sorted key=value pairs joined by
// commas, or "<none>".
func formatLabels(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	pairs := make([]string, 0, len(m))
	for k, v := range m {
		pairs = append(pairs, k+"="+v)
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
