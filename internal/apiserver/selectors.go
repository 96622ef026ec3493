package apiserver

import (
	"strings"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

// matcher reports whether an object passes a request's label and field selectors.
type matcher func(fsm.Object) bool

// newMatcher parses labelSelector (equality- and set-based, Kubernetes syntax) and
// fieldSelector (metadata.name, metadata.namespace and per-kind fields).
func newMatcher(k *kindInfo, labelSelector, fieldSelector string) (matcher, error) {
	ls, err := labels.Parse(labelSelector)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	fs, err := fields.ParseSelector(fieldSelector)
	if err != nil {
		return nil, badRequest("invalid field selector: %v", err)
	}
	for _, r := range fs.Requirements() {
		if !fieldSelectable(k.Kind.Kind, r.Field) {
			return nil, badRequest("field label not supported: %s", r.Field)
		}
	}
	matchAll := ls.Empty() && fs.Empty()
	return func(o fsm.Object) bool {
		if matchAll {
			return true
		}
		if !ls.Matches(labels.Set(o.GetMetadata().GetLabels())) {
			return false
		}
		return fs.Empty() || fs.Matches(objectFields(o))
	}, nil
}

func fieldSelectable(kind, f string) bool {
	switch f {
	case "metadata.name", "metadata.namespace":
		return true
	}
	switch kind {
	case "Pod":
		return f == "spec.nodeName" || f == "status.phase" || f == "spec.restartPolicy" || f == "status.podIP"
	case "Secret":
		return f == "type"
	case "Event":
		return strings.HasPrefix(f, "involvedObject.") || f == "reason" || f == "type"
	case "Node":
		return f == "spec.unschedulable"
	}
	return false
}

func objectFields(o fsm.Object) fields.Set {
	md := o.GetMetadata()
	set := fields.Set{"metadata.name": md.GetName(), "metadata.namespace": md.GetNamespace()}
	switch v := o.(type) {
	case *corev1.Pod:
		set["spec.nodeName"] = v.GetSpec().GetNodeName()
		set["status.phase"] = v.GetStatus().GetPhase()
		set["spec.restartPolicy"] = v.GetSpec().GetRestartPolicy()
		set["status.podIP"] = v.GetStatus().GetPodIP()
	case *corev1.Secret:
		set["type"] = v.GetType()
	case *corev1.Event:
		io := v.GetInvolvedObject()
		set["involvedObject.kind"] = io.GetKind()
		set["involvedObject.name"] = io.GetName()
		set["involvedObject.namespace"] = io.GetNamespace()
		set["involvedObject.uid"] = io.GetUid()
		set["reason"] = v.GetReason()
		set["type"] = v.GetType()
	case *corev1.Node:
		if v.GetSpec().GetUnschedulable() {
			set["spec.unschedulable"] = "true"
		} else {
			set["spec.unschedulable"] = "false"
		}
	}
	return set
}

// watchFilter turns a kind, namespace and selector into a watch filter with
// Kubernetes' semantics: an object that starts matching is ADDED, one that stops
// matching is DELETED.
func watchFilter(k *kindInfo, namespace string, match matcher) fsm.Filter {
	return func(ev fsm.Event) (fsm.Event, bool) {
		if ev.Kind != k.Kind.Kind {
			return ev, false
		}
		if namespace != "" && ev.Object.GetMetadata().GetNamespace() != namespace {
			return ev, false
		}
		now := match(ev.Object)
		switch ev.Type {
		case fsm.Added, fsm.Deleted:
			return ev, now
		}
		was := ev.Prev != nil && match(ev.Prev)
		switch {
		case now && was:
			return ev, true
		case now:
			ev.Type = fsm.Added
			return ev, true
		case was:
			ev.Type = fsm.Deleted
			return ev, true
		}
		return ev, false
	}
}
