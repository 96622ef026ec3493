package printers

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

func init() {
	containerColumns := []column{{name: "CONTAINERS", wide: true}, {name: "IMAGES", wide: true}}
	selectorColumn := column{name: "SELECTOR", wide: true}
	register("Deployment", append([]column{
		{name: "NAME"}, {name: "READY"}, {name: "UP-TO-DATE"}, {name: "AVAILABLE"}, {name: "AGE"},
	}, append(containerColumns, selectorColumn)...), deploymentRow)
	register("ReplicaSet", append([]column{
		{name: "NAME"}, {name: "DESIRED"}, {name: "CURRENT"}, {name: "READY"}, {name: "AGE"},
	}, append(containerColumns, selectorColumn)...), replicaSetRow)
	register("DaemonSet", append([]column{
		{name: "NAME"}, {name: "DESIRED"}, {name: "CURRENT"}, {name: "READY"}, {name: "UP-TO-DATE"}, {name: "AVAILABLE"},
		{name: "NODE SELECTOR"}, {name: "AGE"},
	}, append(containerColumns, selectorColumn)...), daemonSetRow)
	register("StatefulSet", append([]column{
		{name: "NAME"}, {name: "READY"}, {name: "AGE"},
	}, containerColumns...), statefulSetRow)
}

func deploymentRow(d *appsv1.Deployment, c rowContext) []string {
	spec, status := cmp.Or(d.GetSpec(), &appsv1.DeploymentSpec{}), d.GetStatus()
	names, images := containerCells(spec.GetTemplate())
	sel, err := selectorString(spec.GetSelector())
	if err != nil {
		sel = "<invalid>"
	}
	return []string{
		d.GetMetadata().GetName(),
		fmt.Sprintf("%d/%d", status.GetReadyReplicas(), replicas(spec.Replicas)),
		itoa(status.GetUpdatedReplicas()),
		itoa(status.GetAvailableReplicas()),
		c.age(d.GetMetadata()),
		names, images, sel,
	}
}

func replicaSetRow(rs *appsv1.ReplicaSet, c rowContext) []string {
	spec, status := cmp.Or(rs.GetSpec(), &appsv1.ReplicaSetSpec{}), rs.GetStatus()
	names, images := containerCells(spec.GetTemplate())
	return []string{
		rs.GetMetadata().GetName(),
		itoa(replicas(spec.Replicas)),
		itoa(status.GetReplicas()),
		itoa(status.GetReadyReplicas()),
		c.age(rs.GetMetadata()),
		names, images, formatLabelSelector(spec.GetSelector()),
	}
}

func daemonSetRow(ds *appsv1.DaemonSet, c rowContext) []string {
	spec, status := ds.GetSpec(), ds.GetStatus()
	names, images := containerCells(spec.GetTemplate())
	return []string{
		ds.GetMetadata().GetName(),
		itoa(status.GetDesiredNumberScheduled()),
		itoa(status.GetCurrentNumberScheduled()),
		itoa(status.GetNumberReady()),
		itoa(status.GetUpdatedNumberScheduled()),
		itoa(status.GetNumberAvailable()),
		formatLabels(spec.GetTemplate().GetSpec().GetNodeSelector()),
		c.age(ds.GetMetadata()),
		names, images, formatLabelSelector(spec.GetSelector()),
	}
}

func statefulSetRow(ss *appsv1.StatefulSet, c rowContext) []string {
	spec := cmp.Or(ss.GetSpec(), &appsv1.StatefulSetSpec{})
	names, images := containerCells(spec.GetTemplate())
	return []string{
		ss.GetMetadata().GetName(),
		fmt.Sprintf("%d/%d", ss.GetStatus().GetReadyReplicas(), replicas(spec.Replicas)),
		c.age(ss.GetMetadata()),
		names, images,
	}
}

// replicas is a spec's replicas, defaulted to 1 as the API server defaults it.
func replicas(n *int32) int32 {
	if n == nil {
		return 1
	}
	return *n
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// containerCells are kubectl's CONTAINERS and IMAGES cells of a pod template.
func containerCells(t *corev1.PodTemplateSpec) (names, images string) {
	var n, i []string
	for _, c := range t.GetSpec().GetContainers() {
		n = append(n, c.GetName())
		i = append(i, c.GetImage())
	}
	return strings.Join(n, ","), strings.Join(i, ",")
}

// formatLabelSelector is kubectl's metav1.FormatLabelSelector: the selector as a
// string, "<none>" when it selects everything or nothing, "<error>" when invalid.
func formatLabelSelector(s *metav1.LabelSelector) string {
	str, err := selectorString(s)
	switch {
	case err != nil:
		return "<error>"
	case str == "":
		return "<none>"
	}
	return str
}

// selectorString writes s as a label selector string, as kubectl writes the
// labels.Selector of metav1.LabelSelectorAsSelector: requirements sorted by key,
// "k=v", "k in (a,b)", "k notin (a,b)", "k" and "!k", values sorted. A nil or empty
// selector is "". An unknown operator, or a number of values the operator does not
// take, is an error.
func selectorString(s *metav1.LabelSelector) (string, error) {
	type req struct{ key, str string }
	var reqs []req
	for k, v := range s.GetMatchLabels() {
		reqs = append(reqs, req{k, k + "=" + v})
	}
	for _, e := range s.GetMatchExpressions() {
		values := slices.Sorted(slices.Values(e.GetValues()))
		var str string
		switch e.GetOperator() {
		case "In", "NotIn":
			if len(values) == 0 {
				return "", fmt.Errorf("%s: %w", e.GetKey(), errSelectorValues)
			}
			str = e.GetKey() + " " + strings.ToLower(e.GetOperator()) + " (" + strings.Join(values, ",") + ")"
		case "Exists", "DoesNotExist":
			if len(values) != 0 {
				return "", fmt.Errorf("%s: %w", e.GetKey(), errSelectorValues)
			}
			str = e.GetKey()
			if e.GetOperator() == "DoesNotExist" {
				str = "!" + str
			}
		default:
			return "", fmt.Errorf("%q is not a valid label selector operator", e.GetOperator())
		}
		reqs = append(reqs, req{e.GetKey(), str})
	}
	slices.SortStableFunc(reqs, func(a, b req) int { return strings.Compare(a.key, b.key) })
	strs := make([]string, len(reqs))
	for i, r := range reqs {
		strs[i] = r.str
	}
	return strings.Join(strs, ","), nil
}

var errSelectorValues = errors.New("wrong number of values for the operator")
