package printers

import (
	"fmt"
	"strconv"
	"time"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

func init() {
	register("Pod", []column{
		{name: "NAME"}, {name: "READY"}, {name: "STATUS"}, {name: "RESTARTS"}, {name: "AGE"},
		{name: "IP", wide: true}, {name: "NODE", wide: true}, {name: "NOMINATED NODE", wide: true}, {name: "READINESS GATES", wide: true},
	}, podRow)
}

// podRow follows kubectl's printPod.
func podRow(pod *corev1.Pod, c rowContext) []string {
	spec, status := pod.GetSpec(), pod.GetStatus()
	ready, reason, restarts, lastRestart := podState(pod)
	total := len(spec.GetContainers())
	for _, ic := range spec.GetInitContainers() {
		if isSidecar(ic) {
			total++
		}
	}
	row := []string{
		pod.GetMetadata().GetName(),
		fmt.Sprintf("%d/%d", ready, total),
		reason,
		strconv.Itoa(restarts),
		c.age(pod.GetMetadata()),
	}
	if restarts != 0 && !lastRestart.IsZero() {
		row[3] = fmt.Sprintf("%d (%s ago)", restarts, Age(c.now.Sub(lastRestart)))
	}

	ip := status.GetPodIP()
	if ip == "" && len(status.GetPodIPs()) > 0 {
		ip = status.GetPodIPs()[0].GetIp()
	}
	gates := "<none>"
	if n := len(spec.GetReadinessGates()); n > 0 {
		passed := 0
		for _, g := range spec.GetReadinessGates() {
			for _, cond := range status.GetConditions() {
				if cond.GetType() == g.GetConditionType() {
					if cond.GetStatus() == "True" {
						passed++
					}
					break
				}
			}
		}
		gates = fmt.Sprintf("%d/%d", passed, n)
	}
	return append(row, orNone(ip), orNone(spec.GetNodeName()), orNone(status.GetNominatedNodeName()), gates)
}

// podState is kubectl's summary of a pod: how many containers are ready, the
// STATUS column, the number of restarts and when the last one happened (the zero
// time if unknown).
func podState(pod *corev1.Pod) (ready int, reason string, restarts int, lastRestart time.Time) {
	spec, status := pod.GetSpec(), pod.GetStatus()
	reason = status.GetPhase()
	if status.GetReason() != "" {
		reason = status.GetReason()
	}
	for _, cond := range status.GetConditions() {
		if cond.GetType() == "PodScheduled" && cond.GetReason() == "SchedulingGated" {
			reason = "SchedulingGated"
		}
	}

	initContainers := make(map[string]*corev1.Container, len(spec.GetInitContainers()))
	for _, ic := range spec.GetInitContainers() {
		initContainers[ic.GetName()] = ic
	}
	sidecarRestarts := 0
	var lastSidecarRestart time.Time
	initializing := false
	for i, cs := range status.GetInitContainerStatuses() {
		restarts += int(cs.GetRestartCount())
		lastRestart = later(lastRestart, cs)
		sidecar := isSidecar(initContainers[cs.GetName()])
		if sidecar {
			sidecarRestarts += int(cs.GetRestartCount())
			lastSidecarRestart = later(lastSidecarRestart, cs)
		}
		state := cs.GetState()
		switch term := state.GetTerminated(); {
		case term != nil && term.GetExitCode() == 0:
			continue
		case sidecar && cs.GetStarted():
			if cs.GetReady() {
				ready++
			}
			continue
		case term != nil:
			switch {
			case term.GetReason() != "":
				reason = "Init:" + term.GetReason()
			case term.GetSignal() != 0:
				reason = fmt.Sprintf("Init:Signal:%d", term.GetSignal())
			default:
				reason = fmt.Sprintf("Init:ExitCode:%d", term.GetExitCode())
			}
		case state.GetWaiting().GetReason() != "" && state.GetWaiting().GetReason() != "PodInitializing":
			reason = "Init:" + state.GetWaiting().GetReason()
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(spec.GetInitContainers()))
		}
		initializing = true
		break
	}

	if !initializing || hasCondition(status.GetConditions(), "Initialized") {
		restarts, lastRestart = sidecarRestarts, lastSidecarRestart
		running := false
		statuses := status.GetContainerStatuses()
		for i := len(statuses) - 1; i >= 0; i-- {
			cs := statuses[i]
			restarts += int(cs.GetRestartCount())
			lastRestart = later(lastRestart, cs)
			state := cs.GetState()
			switch term := state.GetTerminated(); {
			case state.GetWaiting().GetReason() != "":
				reason = state.GetWaiting().GetReason()
			case term != nil && term.GetReason() != "":
				reason = term.GetReason()
			case term != nil && term.GetSignal() != 0:
				reason = fmt.Sprintf("Signal:%d", term.GetSignal())
			case term != nil:
				reason = fmt.Sprintf("ExitCode:%d", term.GetExitCode())
			case cs.GetReady() && state.GetRunning() != nil:
				running = true
				ready++
			}
		}
		if reason == "Completed" && running {
			reason = "NotReady"
			if hasCondition(status.GetConditions(), "Ready") {
				reason = "Running"
			}
		}
	}

	if pod.GetMetadata().GetDeletionTimestamp() != nil {
		if status.GetReason() == "NodeLost" {
			reason = "Unknown"
		} else if p := status.GetPhase(); p != "Succeeded" && p != "Failed" {
			reason = "Terminating"
		}
	}
	return ready, reason, restarts, lastRestart
}

// later is the later of t and the time cs's container last terminated.
func later(t time.Time, cs *corev1.ContainerStatus) time.Time {
	if f := cs.GetLastState().GetTerminated().GetFinishedAt(); f != nil && f.AsTime().After(t) {
		return f.AsTime()
	}
	return t
}

// isSidecar reports whether c is a restartable init container (a sidecar).
func isSidecar(c *corev1.Container) bool {
	return c.GetRestartPolicy() == "Always"
}

// hasCondition reports whether the pod condition typ is True.
func hasCondition(conds []*corev1.PodCondition, typ string) bool {
	for _, c := range conds {
		if c.GetType() == typ {
			return c.GetStatus() == "True"
		}
	}
	return false
}

// orNone is s, or kubectl's "<none>" for an empty s.
func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
