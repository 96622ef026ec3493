package agent

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// Pod phases and condition types as the API spells them.
const (
	PhasePending   = "Pending"
	PhaseRunning   = "Running"
	PhaseSucceeded = "Succeeded"
	PhaseFailed    = "Failed"

	CondPodScheduled    = "PodScheduled"
	CondInitialized     = "Initialized"
	CondContainersReady = "ContainersReady"
	CondReady           = "Ready"
)

// PodPhase is the kubelet's phase of a pod from its containers' statuses
// (getPhase): Pending while an init container has not succeeded or a
// container waits for its first start; Running while a container runs or will
// be restarted; Succeeded when all exited 0; Failed when all stopped, one
// failed, and restartPolicy is Never (or an init container failed under Never).
func PodPhase(spec *corev1.PodSpec, initStatuses, statuses []*corev1.ContainerStatus) string {
	policy := spec.GetRestartPolicy()
	if policy == "" {
		policy = "Always"
	}
	for _, c := range spec.GetInitContainers() {
		st := findStatus(initStatuses, c.GetName())
		t := st.GetState().GetTerminated()
		switch {
		case t != nil && t.GetExitCode() == 0:
			continue
		case t != nil && policy == "Never":
			return PhaseFailed
		case st.GetState().GetWaiting() != nil && st.GetLastState().GetTerminated().GetExitCode() != 0 && policy == "Never":
			return PhaseFailed
		}
		return PhasePending
	}
	var running, waiting, stopped, succeeded, unknown int
	for _, c := range spec.GetContainers() {
		st := findStatus(statuses, c.GetName())
		s := st.GetState()
		switch {
		case st == nil:
			unknown++
		case s.GetRunning() != nil:
			running++
		case s.GetTerminated() != nil:
			stopped++
			if s.GetTerminated().GetExitCode() == 0 {
				succeeded++
			}
		case s.GetWaiting() != nil:
			if st.GetLastState().GetTerminated() != nil {
				stopped++
			} else {
				waiting++
			}
		default:
			unknown++
		}
	}
	switch {
	case waiting > 0:
		return PhasePending
	case running > 0 && unknown == 0:
		return PhaseRunning
	case running == 0 && stopped > 0 && unknown == 0:
		switch {
		case policy == "Always":
			return PhaseRunning
		case stopped == succeeded:
			return PhaseSucceeded
		case policy == "Never":
			return PhaseFailed
		}
		return PhaseRunning
	}
	return PhasePending
}

func findStatus(list []*corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for _, s := range list {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

// PodConditions returns the kubelet's conditions of a pod — PodScheduled (kept
// as the scheduler set it), Initialized, ContainersReady and Ready — with
// lastTransitionTime kept from prev while a status does not change.
func PodConditions(pod *corev1.Pod, initStatuses, statuses []*corev1.ContainerStatus, phase string, now time.Time) []*corev1.PodCondition {
	prev := pod.GetStatus().GetConditions()
	var out []*corev1.PodCondition
	if c := findCondition(prev, CondPodScheduled); c != nil {
		out = append(out, proto.Clone(c).(*corev1.PodCondition))
	} else {
		out = append(out, &corev1.PodCondition{Type: CondPodScheduled, Status: "True", LastTransitionTime: timestamppb.New(now)})
	}
	var notInit []string
	for _, c := range pod.GetSpec().GetInitContainers() {
		if t := findStatus(initStatuses, c.GetName()).GetState().GetTerminated(); t == nil || t.GetExitCode() != 0 {
			notInit = append(notInit, c.GetName())
		}
	}
	initialized := condition(CondInitialized, len(notInit) == 0 || phase == PhaseSucceeded, "ContainersNotInitialized",
		fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(notInit, " ")))
	var unready []string
	for _, c := range pod.GetSpec().GetContainers() {
		if st := findStatus(statuses, c.GetName()); st == nil || !st.GetReady() {
			unready = append(unready, c.GetName())
		}
	}
	terminal := phase == PhaseSucceeded || phase == PhaseFailed
	msg := fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	reason := "ContainersNotReady"
	if terminal {
		reason, msg = "PodCompleted", ""
	}
	ready := len(unready) == 0 && !terminal
	containersReady := condition(CondContainersReady, ready, reason, msg)
	podReady := condition(CondReady, ready, reason, msg)
	for _, c := range []*corev1.PodCondition{initialized, containersReady, podReady} {
		if old := findCondition(prev, c.Type); old != nil && old.GetStatus() == c.Status {
			c.LastTransitionTime = old.GetLastTransitionTime()
		} else {
			c.LastTransitionTime = timestamppb.New(now)
		}
		out = append(out, c)
	}
	return out
}

func condition(typ string, ok bool, reason, msg string) *corev1.PodCondition {
	if ok {
		return &corev1.PodCondition{Type: typ, Status: "True"}
	}
	return &corev1.PodCondition{Type: typ, Status: "False", Reason: reason, Message: msg}
}

func findCondition(list []*corev1.PodCondition, typ string) *corev1.PodCondition {
	i := slices.IndexFunc(list, func(c *corev1.PodCondition) bool { return c.GetType() == typ })
	if i < 0 {
		return nil
	}
	return list[i]
}
