package sched

import (
	"slices"
	"strconv"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// Reasons a filter gives for rejecting a node, worded exactly as kube-scheduler's
// plugins word them: they end up in FailedScheduling messages that users and tools
// already know how to read. An untolerated taint's reason names the taint:
// "node(s) had untolerated taint {key: value}".
const (
	ReasonUnschedulable      = "node(s) were unschedulable"
	ReasonNodeAffinity       = "node(s) didn't match Pod's node affinity/selector"
	ReasonNodePorts          = "node(s) didn't have free ports for the requested pod ports"
	ReasonTooManyPods        = "Too many pods"
	ReasonInsufficientCPU    = "Insufficient cpu"
	ReasonInsufficientMemory = "Insufficient memory"
)

func untoleratedTaintReason(key, value string) string {
	return "node(s) had untolerated taint {" + key + ": " + value + "}"
}

// A filter appends to reasons why node n cannot take pod p, and returns reasons; it
// appends nothing when n can. Filters only read p and n, and do not allocate unless
// reasons must grow.
type filter func(p *podInfo, n *nodeInfo, reasons []string) []string

// filters run in kube-scheduler's default plugin order (NodeUnschedulable,
// TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit). As there, the first
// filter that rejects a node gives all of its reasons; later filters do not run.
var filters = [...]filter{
	filterUnschedulable,
	filterTaints,
	filterNodeAffinity,
	filterPorts,
	filterResources,
}

// runFilters appends the reasons n cannot take p, if any, and returns reasons.
func runFilters(p *podInfo, n *nodeInfo, reasons []string) []string {
	for _, f := range filters {
		before := len(reasons)
		if reasons = f(p, n, reasons); len(reasons) > before {
			return reasons
		}
	}
	return reasons
}

// filterUnschedulable rejects a cordoned node (spec.unschedulable) unless p tolerates
// the node.kubernetes.io/unschedulable:NoSchedule taint.
func filterUnschedulable(p *podInfo, n *nodeInfo, reasons []string) []string {
	if n.unschedulable && !tolerates(p.tolerations, taintUnschedulable, "", effectNoSchedule) {
		reasons = append(reasons, ReasonUnschedulable)
	}
	return reasons
}

// filterTaints rejects a node with a NoSchedule or NoExecute taint p does not tolerate,
// naming the first such taint. The taints include not-ready and unreachable ones the
// cache derives from the node's Ready condition.
func filterTaints(p *podInfo, n *nodeInfo, reasons []string) []string {
	for i := range n.taints {
		t := &n.taints[i]
		if !tolerates(p.tolerations, t.key, t.value, t.effect) {
			return append(reasons, t.reason)
		}
	}
	return reasons
}

// tolerates reports whether any of tols tolerates the taint, with Kubernetes'
// Toleration.ToleratesTaint rules: an empty effect matches every effect, an empty key
// (only valid with Exists) matches every key, Exists ignores the value, and an empty
// operator means Equal.
func tolerates(tols []*corev1.Toleration, key, value, effect string) bool {
	for _, t := range tols {
		if t.GetEffect() != "" && t.GetEffect() != effect {
			continue
		}
		if t.GetKey() != "" && t.GetKey() != key {
			continue
		}
		switch t.GetOperator() {
		case "", "Equal":
			if t.GetValue() == value {
				return true
			}
		case "Exists":
			return true
		}
	}
	return false
}

// filterNodeAffinity rejects a node whose labels do not match p's nodeSelector, or
// that matches none of the terms of its required node affinity.
func filterNodeAffinity(p *podInfo, n *nodeInfo, reasons []string) []string {
	for _, l := range p.nodeSelector {
		if got, ok := n.labels[l.key]; !ok || got != l.value {
			return append(reasons, ReasonNodeAffinity)
		}
	}
	if p.hasRequired && !slices.ContainsFunc(p.required, func(t selectorTerm) bool { return t.matches(n) }) {
		return append(reasons, ReasonNodeAffinity)
	}
	return reasons
}

// selectorTerm is a NodeSelectorTerm ready to match: its requirements are ANDed.
type selectorTerm struct {
	exprs  []selectorReq // on labels
	fields []selectorReq // on fields; only metadata.name exists
}

// selectorReq is a NodeSelectorRequirement known to be well formed.
type selectorReq struct {
	key, op string
	values  []string
	num     int64 // the value of Gt and Lt
}

// compileNodeSelector prepares the terms of a required node affinity. A term
// kube-scheduler would fail to parse (an unknown operator, the wrong number of values,
// Gt/Lt on a non-integer, matchFields other than In/NotIn with one value) or an empty
// term can match no node, so it is left out: with no terms left, nothing matches.
func compileNodeSelector(ns *corev1.NodeSelector) []selectorTerm {
	var terms []selectorTerm
	for _, t := range ns.GetNodeSelectorTerms() {
		if len(t.GetMatchExpressions()) == 0 && len(t.GetMatchFields()) == 0 {
			continue
		}
		exprs, ok := compileRequirements(t.GetMatchExpressions(), false)
		if !ok {
			continue
		}
		fields, ok := compileRequirements(t.GetMatchFields(), true)
		if !ok {
			continue
		}
		terms = append(terms, selectorTerm{exprs: exprs, fields: fields})
	}
	return terms
}

func compileRequirements(reqs []*corev1.NodeSelectorRequirement, fields bool) ([]selectorReq, bool) {
	out := make([]selectorReq, 0, len(reqs))
	for _, r := range reqs {
		sr := selectorReq{key: r.GetKey(), op: r.GetOperator(), values: r.GetValues()}
		switch {
		case fields && (sr.op == "In" || sr.op == "NotIn"):
			if len(sr.values) != 1 {
				return nil, false
			}
		case fields:
			return nil, false
		case sr.op == "In" || sr.op == "NotIn":
			if len(sr.values) == 0 {
				return nil, false
			}
		case sr.op == "Exists" || sr.op == "DoesNotExist":
			if len(sr.values) != 0 {
				return nil, false
			}
		case sr.op == "Gt" || sr.op == "Lt":
			if len(sr.values) != 1 {
				return nil, false
			}
			num, err := strconv.ParseInt(sr.values[0], 10, 64)
			if err != nil {
				return nil, false
			}
			sr.num = num
		default:
			return nil, false
		}
		out = append(out, sr)
	}
	return out, true
}

func (t selectorTerm) matches(n *nodeInfo) bool {
	for i := range t.exprs {
		r := &t.exprs[i]
		v, ok := n.labels[r.key]
		if !r.matches(v, ok) {
			return false
		}
	}
	for i := range t.fields {
		r := &t.fields[i]
		// A node has one selectable field; any other reads as empty, as with a
		// fields.Set that lacks it.
		v := ""
		if r.key == "metadata.name" {
			v = n.name
		}
		if !r.matches(v, true) {
			return false
		}
	}
	return true
}

// matches applies the requirement to a label value v (ok: the label exists), with the
// semantics of k8s.io/apimachinery/pkg/labels.Requirement.
func (r *selectorReq) matches(v string, ok bool) bool {
	switch r.op {
	case "In":
		return ok && slices.Contains(r.values, v)
	case "NotIn":
		return !ok || !slices.Contains(r.values, v)
	case "Exists":
		return ok
	case "DoesNotExist":
		return !ok
	case "Gt", "Lt":
		if !ok {
			return false
		}
		num, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return false
		}
		if r.op == "Gt" {
			return num > r.num
		}
		return num < r.num
	}
	return false
}

// filterPorts rejects a node where a host port p asks for is taken.
func filterPorts(p *podInfo, n *nodeInfo, reasons []string) []string {
	for _, hp := range p.state.ports {
		if n.ports.conflicts(hp) {
			return append(reasons, ReasonNodePorts)
		}
	}
	return reasons
}

// filterResources rejects a node without room for p: one reason per resource short,
// the pod count first, as kube-scheduler's NodeResourcesFit. A pod requesting no cpu
// and no memory only needs a pod slot.
func filterResources(p *podInfo, n *nodeInfo, reasons []string) []string {
	if n.pods+1 > n.allowedPods {
		reasons = append(reasons, ReasonTooManyPods)
	}
	req := p.state.req
	if req.milliCPU > 0 && req.milliCPU > n.alloc.milliCPU-n.requested.milliCPU {
		reasons = append(reasons, ReasonInsufficientCPU)
	}
	if req.memory > 0 && req.memory > n.alloc.memory-n.requested.memory {
		reasons = append(reasons, ReasonInsufficientMemory)
	}
	return reasons
}

// hostPort is a host port a container binds, with kube-scheduler's defaults applied:
// an empty hostIP is 0.0.0.0 and an empty protocol TCP.
type hostPort struct {
	ip       string
	protocol string
	port     int32
}

// protoPort is a host port on any address.
type protoPort struct {
	protocol string
	port     int32
}

const anyIP = "0.0.0.0"

// podHostPorts returns the host ports spec's containers bind (init containers bind
// none, as in kube-scheduler). A hostNetwork pod binds its container ports on the
// host, as Kubernetes' defaulting records in hostPort.
func podHostPorts(spec *corev1.PodSpec) []hostPort {
	var out []hostPort
	for _, c := range spec.GetContainers() {
		for _, cp := range c.GetPorts() {
			port := cp.GetHostPort()
			if port == 0 && spec.GetHostNetwork() {
				port = cp.GetContainerPort()
			}
			if port <= 0 {
				continue
			}
			hp := hostPort{ip: cp.GetHostIP(), protocol: cp.GetProtocol(), port: port}
			if hp.ip == "" {
				hp.ip = anyIP
			}
			if hp.protocol == "" {
				hp.protocol = "TCP"
			}
			out = append(out, hp)
		}
	}
	return out
}

// portSet counts the host ports a node's pods bind. Its maps are made on first use:
// most nodes never see a host port.
type portSet struct {
	exact map[hostPort]int32  // per address, protocol and port
	any   map[protoPort]int32 // per protocol and port, on any address
}

func (s *portSet) add(hp hostPort) {
	if s.exact == nil {
		s.exact = make(map[hostPort]int32)
		s.any = make(map[protoPort]int32)
	}
	s.exact[hp]++
	s.any[protoPort{hp.protocol, hp.port}]++
}

func (s *portSet) remove(hp hostPort) {
	if s.exact[hp]--; s.exact[hp] <= 0 {
		delete(s.exact, hp)
	}
	pp := protoPort{hp.protocol, hp.port}
	if s.any[pp]--; s.any[pp] <= 0 {
		delete(s.any, pp)
	}
}

// conflicts reports whether binding hp clashes with a bound port: same protocol and
// port, and the same address or 0.0.0.0 on either side.
func (s *portSet) conflicts(hp hostPort) bool {
	if s.exact == nil {
		return false
	}
	if hp.ip == anyIP {
		return s.any[protoPort{hp.protocol, hp.port}] > 0
	}
	return s.exact[hp] > 0 || s.exact[hostPort{anyIP, hp.protocol, hp.port}] > 0
}
