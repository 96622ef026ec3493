// Package svcproxy is the node's service proxy (kube-proxy's job): it watches
// Services and Endpoints through the API and programs nftables NAT rules so
// that a Service's ClusterIP:port (and any local address:nodePort) reaches
// one of its ready endpoints. See DESIGN.md.
package svcproxy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// Protocol is a Service port's transport protocol, as the API spells it.
type Protocol string

// Protocols a ServicePort may carry.
const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// l4proto is the IP protocol number nftables matches (meta l4proto).
func (p Protocol) l4proto() byte {
	switch p {
	case UDP:
		return 17
	case SCTP:
		return 132
	default:
		return 6
	}
}

// Endpoint is one ready backend of a service port.
type Endpoint struct {
	IP   netip.Addr
	Port uint16
}

func (e Endpoint) String() string { return netip.AddrPortFrom(e.IP, e.Port).String() }

// ServicePort is one port of one Service as the rules see it.
type ServicePort struct {
	// Name is "namespace/service/protocol/port-name-or-number": unique, and
	// the base of the port's chain names.
	Name      string
	ClusterIP netip.Addr
	Port      uint16
	Protocol  Protocol
	// NodePort is 0 for a ClusterIP-only port.
	NodePort uint16
	// Endpoints are sorted and unique. None means the port rejects.
	Endpoints []Endpoint
}

// Ruleset is the desired state of the proxy's table: every proxied service
// port, sorted by Name. Equal inputs give equal Rulesets (Build is pure).
type Ruleset struct {
	Ports []ServicePort
}

// Build computes the ruleset for services and their endpoints. It is a pure
// function: no I/O, no clock, no map-order output.
//
// A Service is proxied when its type is ClusterIP (or empty), NodePort or
// LoadBalancer (treated as NodePort) and its clusterIP is an IPv4 address
// (not "None", not empty). A port's endpoints are the ready addresses
// (subsets[].addresses, never notReadyAddresses) of the Endpoints object of
// the same namespace/name, with the subset port of the same name and
// protocol. Ports with an unknown protocol or out-of-range numbers are
// skipped.
//
// The node's name and addresses are not inputs: NodePort rules match any
// local destination address in the kernel (fib daddr type local), and
// externalTrafficPolicy/internalTrafficPolicy Local are not implemented.
func Build(services []*corev1.Service, endpoints []*corev1.Endpoints) Ruleset {
	eps := make(map[string]*corev1.Endpoints, len(endpoints))
	for _, e := range endpoints {
		md := e.GetMetadata()
		eps[md.GetNamespace()+"/"+md.GetName()] = e
	}
	var rs Ruleset
	for _, svc := range services {
		spec := svc.GetSpec()
		switch spec.GetType() {
		case "", "ClusterIP", "NodePort", "LoadBalancer":
		default:
			continue // ExternalName
		}
		ip, err := netip.ParseAddr(spec.GetClusterIP())
		if err != nil || !ip.Is4() {
			continue // headless, unallocated, or IPv6 (not supported yet)
		}
		md := svc.GetMetadata()
		key := md.GetNamespace() + "/" + md.GetName()
		nodePorts := spec.GetType() == "NodePort" || spec.GetType() == "LoadBalancer"
		for _, p := range spec.GetPorts() {
			proto := Protocol(strings.ToUpper(p.GetProtocol()))
			if proto == "" {
				proto = TCP
			}
			if proto != TCP && proto != UDP && proto != SCTP {
				continue
			}
			if p.GetPort() <= 0 || p.GetPort() > 65535 {
				continue
			}
			portID := p.GetName()
			if portID == "" {
				portID = fmt.Sprint(p.GetPort())
			}
			sp := ServicePort{
				Name:      fmt.Sprintf("%s/%s/%s", key, strings.ToLower(string(proto)), portID),
				ClusterIP: ip, Port: uint16(p.GetPort()), Protocol: proto,
			}
			if nodePorts && p.GetNodePort() > 0 && p.GetNodePort() <= 65535 {
				sp.NodePort = uint16(p.GetNodePort())
			}
			sp.Endpoints = readyEndpoints(eps[key], p.GetName(), proto)
			rs.Ports = append(rs.Ports, sp)
		}
	}
	slices.SortFunc(rs.Ports, func(a, b ServicePort) int { return cmp.Compare(a.Name, b.Name) })
	return rs
}

// readyEndpoints lists the ready addresses of e for the port named portName,
// sorted and unique.
func readyEndpoints(e *corev1.Endpoints, portName string, proto Protocol) []Endpoint {
	var out []Endpoint
	for _, ss := range e.GetSubsets() {
		var port int32
		for _, p := range ss.GetPorts() {
			pp := Protocol(strings.ToUpper(p.GetProtocol()))
			if pp == "" {
				pp = TCP
			}
			if p.GetName() == portName && pp == proto {
				port = p.GetPort()
				break
			}
		}
		if port <= 0 || port > 65535 {
			continue
		}
		for _, a := range ss.GetAddresses() {
			ip, err := netip.ParseAddr(a.GetIp())
			if err != nil || !ip.Is4() {
				continue
			}
			out = append(out, Endpoint{IP: ip, Port: uint16(port)})
		}
	}
	slices.SortFunc(out, func(a, b Endpoint) int {
		if c := a.IP.Compare(b.IP); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
	return slices.Compact(out)
}

// String renders the ruleset canonically, one port a line; the applier
// fingerprints it.
func (rs Ruleset) String() string {
	var b strings.Builder
	for _, p := range rs.Ports {
		fmt.Fprintf(&b, "%s %s:%d/%s nodePort=%d ->", p.Name, p.ClusterIP, p.Port, p.Protocol, p.NodePort)
		for _, e := range p.Endpoints {
			b.WriteString(" " + e.String())
		}
		b.WriteString("\n")
	}
	return b.String()
}
