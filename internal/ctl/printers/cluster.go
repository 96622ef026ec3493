package printers

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	coordinationv1 "github.com/rafter-dev/rafter/gen/rafter/coordination/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

func init() {
	register("Namespace", []column{{name: "NAME"}, {name: "STATUS"}, {name: "AGE"}},
		func(ns *corev1.Namespace, c rowContext) []string {
			return []string{ns.GetMetadata().GetName(), ns.GetStatus().GetPhase(), c.age(ns.GetMetadata())}
		})
	register("Node", []column{
		{name: "NAME"}, {name: "STATUS"}, {name: "ROLES"}, {name: "AGE"}, {name: "VERSION"},
		{name: "INTERNAL-IP", wide: true}, {name: "EXTERNAL-IP", wide: true}, {name: "OS-IMAGE", wide: true},
		{name: "KERNEL-VERSION", wide: true}, {name: "CONTAINER-RUNTIME", wide: true},
	}, nodeRow)
	register("Event", []column{
		{name: "LAST SEEN"}, {name: "TYPE"}, {name: "REASON"}, {name: "OBJECT"},
		{name: "SUBOBJECT", wide: true}, {name: "SOURCE", wide: true},
		{name: "MESSAGE"},
		{name: "FIRST SEEN", wide: true}, {name: "COUNT", wide: true}, {name: "NAME", wide: true},
	}, eventRow)
	register("Lease", []column{{name: "NAME"}, {name: "HOLDER"}, {name: "AGE"}},
		func(l *coordinationv1.Lease, c rowContext) []string {
			return []string{l.GetMetadata().GetName(), l.GetSpec().GetHolderIdentity(), c.age(l.GetMetadata())}
		})
}

func nodeRow(n *corev1.Node, c rowContext) []string {
	status := "Unknown"
	for _, cond := range n.GetStatus().GetConditions() {
		if cond.GetType() == "Ready" {
			status = "Ready"
			if cond.GetStatus() != "True" {
				status = "NotReady"
			}
		}
	}
	if n.GetSpec().GetUnschedulable() {
		status += ",SchedulingDisabled"
	}

	var roles []string
	for k, v := range n.GetMetadata().GetLabels() {
		switch {
		case strings.HasPrefix(k, "node-role.kubernetes.io/"):
			if role := strings.TrimPrefix(k, "node-role.kubernetes.io/"); role != "" {
				roles = append(roles, role)
			}
		case k == "kubernetes.io/role" && v != "":
			roles = append(roles, v)
		}
	}
	slices.Sort(roles)

	address := func(typ string) string {
		for _, a := range n.GetStatus().GetAddresses() {
			if a.GetType() == typ {
				return a.GetAddress()
			}
		}
		return "<none>"
	}
	info := n.GetStatus().GetNodeInfo()
	return []string{
		n.GetMetadata().GetName(),
		status,
		orNone(strings.Join(slices.Compact(roles), ",")),
		c.age(n.GetMetadata()),
		info.GetKubeletVersion(),
		address("InternalIP"),
		address("ExternalIP"),
		orUnknown(info.GetOsImage()),
		orUnknown(info.GetKernelVersion()),
		orUnknown(info.GetContainerRuntimeVersion()),
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

func eventRow(e *corev1.Event, c rowContext) []string {
	first := c.since(e.GetFirstTimestamp())
	if e.GetFirstTimestamp() == nil {
		first = c.since(e.GetEventTime())
	}
	last := c.since(e.GetLastTimestamp())
	if e.GetLastTimestamp() == nil {
		last = first
	}
	count := e.GetCount()
	if e.GetSeries() != nil {
		last = c.since(e.GetSeries().GetLastObservedTime())
		count = e.GetSeries().GetCount()
	} else if count == 0 {
		count = 1 // a singleton event of the events.k8s.io API has no count
	}

	obj := strings.ToLower(e.GetInvolvedObject().GetKind())
	if name := e.GetInvolvedObject().GetName(); name != "" {
		obj = fmt.Sprintf("%s/%s", obj, name)
	}
	source := firstNonEmpty(e.GetSource().GetComponent(), e.GetReportingComponent())
	if host := firstNonEmpty(e.GetSource().GetHost(), e.GetReportingInstance()); host != "" {
		source += ", " + host
	}
	return []string{
		last,
		e.GetType(),
		e.GetReason(),
		obj,
		e.GetInvolvedObject().GetFieldPath(),
		source,
		strings.TrimSpace(e.GetMessage()),
		first,
		strconv.Itoa(int(count)),
		e.GetMetadata().GetName(),
	}
}
