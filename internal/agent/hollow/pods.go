package hollow

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// pod is the loop's state of one pod bound to a hollow node.
type pod struct {
	key     string // namespace/name
	uid     string
	obj     *corev1.Pod // latest version known
	ip      netip.Addr  // held from the node's ipam; invalid when none
	startAt time.Time   // when it may be reported running (StartDelay after first seen)
	retryAt time.Time   // a call failed; nothing before then
	wakeAt  time.Time   // the pending timer for this pod, zero when none
	running bool        // reported running, by this agent or an earlier one
	busy    bool        // a job for it is in flight
	deleted bool        // deleted by this agent, or found gone: waiting for the watch to agree
}

// holder identifies the pod in the ipam: a pod recreated under the same name is
// another holder.
func (p *pod) holder() string { return p.key + "/" + p.uid }

var (
	// errPodGone: the pod was deleted, or replaced by another of the same name.
	errPodGone = errors.New("pod is gone")
	// errPodChanged: the pod started terminating or finished while we meant to
	// report it running; the fresh version comes with it.
	errPodChanged = errors.New("pod changed")
)

// onPods applies a change from the pod watch.
func (l *loop) onPods(c change[*corev1.Pod]) {
	if c.typ != "" {
		if n := l.nodes[c.obj.GetSpec().GetNodeName()]; n != nil {
			l.onPod(c.typ, n, c.obj)
		}
		return
	}
	seen := map[string]bool{}
	for _, obj := range c.items {
		if n := l.nodes[obj.GetSpec().GetNodeName()]; n != nil {
			seen[podKey(obj)] = true
			l.onPod("ADDED", n, obj)
		}
	}
	for _, n := range l.nodes {
		for key, p := range n.pods {
			if !seen[key] && resourceVersion(p.obj) <= c.rv {
				l.forget(n, p)
			}
		}
	}
	if r := l.a.cfg.Runner; r != nil && !l.swept {
		// The first full list says which pods exist: what is left of any
		// other (deleted while the agent was away) can go.
		l.swept = true
		keep := map[string]bool{}
		for _, n := range l.nodes {
			for _, p := range n.pods {
				keep[p.uid] = true
			}
		}
		l.dispatch(false, func(ctx context.Context) func() {
			if err := r.Sweep(ctx, keep); err != nil {
				l.a.cfg.Logger.Warn("remove what deleted pods left", "err", err)
			}
			return func() {}
		})
	}
}

func (l *loop) onPod(typ string, n *node, obj *corev1.Pod) {
	key := podKey(obj)
	p := n.pods[key]
	if p != nil && resourceVersion(obj) < resourceVersion(p.obj) {
		return // older than what we know: a replay after a relist
	}
	if p != nil && (typ == "DELETED" || p.uid != obj.GetMetadata().GetUid()) {
		l.forget(n, p)
		p = nil
	}
	if typ != "ADDED" && typ != "MODIFIED" {
		return
	}
	if p == nil {
		p = &pod{key: key, uid: obj.GetMetadata().GetUid()}
		n.pods[key] = p
	}
	p.obj = obj
	if r := l.a.cfg.Runner; r != nil {
		r.Update(obj)
		return
	}
	l.syncPod(n, p)
}

// forget drops a pod that no longer exists and frees its IP; a Runner gets it
// once more, marked deleted, to tear it down.
func (l *loop) forget(n *node, p *pod) {
	if r := l.a.cfg.Runner; r != nil && p.obj != nil {
		gone := proto.Clone(p.obj).(*corev1.Pod)
		if gone.Metadata.DeletionTimestamp == nil {
			// Deleted at once through the API: the containers still get their
			// terminationGracePeriodSeconds (SIGTERM first).
			gone.Metadata.DeletionTimestamp = timestamppb.New(l.now())
		}
		r.Update(gone)
	}
	l.release(n, p)
	delete(n.pods, p.key)
}

func (l *loop) release(n *node, p *pod) {
	if p.ip.IsValid() && n.ips != nil {
		n.ips.release(p.ip, p.holder())
	}
	p.ip = netip.Addr{}
}

// syncPods syncs all of a node's pods, those already running first so that they
// keep their IPs (after a restart of the agent) before new ones take any.
func (l *loop) syncPods(n *node) {
	for _, running := range []bool{true, false} {
		for _, p := range n.pods {
			if (p.obj.GetStatus().GetPhase() == "Running") == running {
				l.syncPod(n, p)
			}
		}
	}
}

// syncPod moves a pod one step towards what a kubelet would make of it: finish
// its deletion, or report it running once its start delay has passed.
func (l *loop) syncPod(n *node, p *pod) {
	if l.a.cfg.Runner != nil {
		return // the Runner runs the pods
	}
	if p.busy || p.deleted || n.gone || !n.registered || l.a.isPaused(n.name) {
		return // the job in flight, Resume or registration sync it again
	}
	obj := p.obj
	now := l.now()
	if now.Before(p.retryAt) {
		l.wakePod(n, p, p.retryAt)
		return
	}
	if obj.GetMetadata().GetDeletionTimestamp() != nil {
		l.deletePod(n, p)
		return
	}
	if p.running || isTerminal(obj) {
		return
	}
	hostNetwork := obj.GetSpec().GetHostNetwork()
	if obj.GetStatus().GetPhase() == "Running" && l.adopt(n, p) {
		p.running = true
		return
	}
	if !hostNetwork && n.ips == nil {
		return // waits for spec.podCIDR; setNode syncs the node's pods
	}
	if p.startAt.IsZero() {
		p.startAt = now.Add(l.a.cfg.StartDelay)
	}
	if now.Before(p.startAt) {
		l.wakePod(n, p, p.startAt)
		return
	}
	podIP := n.address
	if !hostNetwork {
		if !p.ip.IsValid() {
			ip, ok := n.ips.allocate(p.holder())
			if !ok {
				l.a.cfg.Logger.Warn("podCIDR exhausted; pod waits", "node", n.name, "pod", p.key, "podCIDR", n.podCIDR)
				p.retryAt = now.Add(l.a.cfg.RetryInterval)
				l.wakePod(n, p, p.retryAt)
				return
			}
			p.ip = ip
		}
		podIP = p.ip
	}
	l.startPod(n, p, podIP)
}

// adopt takes over a pod reported running before (by an earlier run of this
// agent): it keeps its IP if that is in the podCIDR and free.
func (l *loop) adopt(n *node, p *pod) bool {
	st := p.obj.GetStatus()
	if p.obj.GetSpec().GetHostNetwork() {
		return st.GetPodIP() == n.address.String()
	}
	ip, err := netip.ParseAddr(st.GetPodIP())
	if err != nil || n.ips == nil || !n.ips.claim(ip, p.holder()) {
		return false
	}
	p.ip = ip
	return true
}

// wakePod syncs the pod again at due.
func (l *loop) wakePod(n *node, p *pod, due time.Time) {
	if p.wakeAt.Equal(due) {
		return
	}
	p.wakeAt = due
	l.timers.add(due, func() {
		if p.wakeAt.Equal(due) && n.pods[p.key] == p {
			p.wakeAt = time.Time{}
			l.syncPod(n, p)
		}
	})
}

// current reports whether p is still the pod the loop tracks under its key.
func (n *node) current(p *pod) bool { return n.pods[p.key] == p }

func (l *loop) startPod(n *node, p *pod, podIP netip.Addr) {
	p.busy = true
	a, name, obj, hostIP := l.a, n.name, p.obj, n.address
	l.dispatch(false, func(ctx context.Context) func() {
		if a.isPaused(name) {
			return func() { p.busy = false }
		}
		stored, fresh, err := a.startPod(ctx, obj, podIP, hostIP)
		return func() {
			p.busy = false
			if !n.current(p) {
				return // forgotten meanwhile, its IP with it
			}
			switch {
			case errors.Is(err, errPodGone):
				l.release(n, p)
				p.deleted = true
				return
			case errors.Is(err, errPodChanged):
				p.obj = newerPod(p.obj, fresh)
			case err != nil:
				a.cfg.Logger.Warn("report pod running failed; will retry", "node", name, "pod", p.key, "err", err)
				p.retryAt = l.now().Add(a.cfg.RetryInterval)
			default:
				p.running = true
				p.obj = newerPod(p.obj, stored)
				a.cfg.Logger.Debug("pod running", "node", name, "pod", p.key, "podIP", podIP)
			}
			l.syncPod(n, p)
		}
	})
}

func (l *loop) deletePod(n *node, p *pod) {
	p.busy = true
	a, name, ns, podName, uid := l.a, n.name, p.obj.GetMetadata().GetNamespace(), p.obj.GetMetadata().GetName(), p.uid
	l.dispatch(false, func(ctx context.Context) func() {
		if a.isPaused(name) {
			return func() { p.busy = false }
		}
		err := a.deletePod(ctx, ns, podName, uid)
		return func() {
			p.busy = false
			if !n.current(p) {
				return
			}
			if err != nil {
				a.cfg.Logger.Warn("delete pod failed; will retry", "node", name, "pod", p.key, "err", err)
				p.retryAt = l.now().Add(a.cfg.RetryInterval)
				l.syncPod(n, p)
				return
			}
			l.release(n, p)
			p.deleted = true
		}
	})
}

// startPod reports obj running with podIP, with obj's resourceVersion as the
// precondition; on Conflict it re-reads the pod and tries again while the pod is
// still the same, alive and not terminating. It returns the stored pod, or
// errPodGone, or errPodChanged with the fresh pod.
func (a *Agent) startPod(ctx context.Context, obj *corev1.Pod, podIP, hostIP netip.Addr) (stored, fresh *corev1.Pod, err error) {
	cur := obj
	for attempt := 0; ; attempt++ {
		md := cur.GetMetadata()
		upd := &corev1.Pod{
			ApiVersion: "v1", Kind: "Pod",
			Metadata: &metav1.ObjectMeta{Name: md.GetName(), Namespace: md.GetNamespace(), ResourceVersion: md.GetResourceVersion()},
			Status:   runningStatus(cur, podIP, hostIP, a.cfg.Clock.Now()),
		}
		var out *corev1.Pod
		err := a.conns.call(ctx, a.cfg.CallTimeout, func(ctx context.Context, c grpc.ClientConnInterface) error {
			var err error
			out, err = corev1.NewPodsClient(c).UpdateStatus(ctx, &corev1.UpdatePodRequest{Namespace: md.GetNamespace(), Name: md.GetName(), Body: upd})
			return err
		})
		switch code := status.Code(err); {
		case err == nil:
			return out, nil, nil
		case code != codes.Aborted && code != codes.NotFound || attempt >= maxConflicts:
			// NotFound is re-read like a Conflict: the leader may not have
			// applied yet the pod a follower's watch showed.
			return nil, nil, fmt.Errorf("update pod status: %w", err)
		}
		err = a.conns.call(ctx, a.cfg.CallTimeout, func(ctx context.Context, c grpc.ClientConnInterface) error {
			var err error
			cur, err = corev1.NewPodsClient(c).Get(ctx, &metav1.GetRequest{Namespace: md.GetNamespace(), Name: md.GetName()})
			return err
		})
		switch {
		case status.Code(err) == codes.NotFound, err == nil && cur.GetMetadata().GetUid() != obj.GetMetadata().GetUid():
			return nil, nil, errPodGone
		case err != nil:
			return nil, nil, fmt.Errorf("get pod: %w", err)
		case cur.GetMetadata().GetDeletionTimestamp() != nil || isTerminal(cur):
			return nil, cur, errPodChanged
		}
	}
}

// deletePod finishes a pod's deletion as a kubelet does once its containers
// have stopped: gracePeriodSeconds=0, only if it is still the pod with uid. A pod
// already gone (or replaced by another of the same name) is not an error.
func (a *Agent) deletePod(ctx context.Context, namespace, name, uid string) error {
	zero := int64(0)
	req := &metav1.DeleteRequest{
		Namespace: namespace, Name: name, GracePeriodSeconds: &zero,
		Body: &metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{Uid: proto.String(uid)}},
	}
	err := a.conns.call(ctx, a.cfg.CallTimeout, func(ctx context.Context, c grpc.ClientConnInterface) error {
		_, err := corev1.NewPodsClient(c).Delete(ctx, req)
		return err
	})
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.NotFound, codes.Aborted:
		// Gone, or another pod took the name; unless the leader had not applied
		// yet what a follower's watch showed: a linearizable read decides.
		var cur *corev1.Pod
		gerr := a.conns.call(ctx, a.cfg.CallTimeout, func(ctx context.Context, c grpc.ClientConnInterface) error {
			var err error
			cur, err = corev1.NewPodsClient(c).Get(ctx, &metav1.GetRequest{Namespace: namespace, Name: name})
			return err
		})
		switch {
		case status.Code(gerr) == codes.NotFound, gerr == nil && cur.GetMetadata().GetUid() != uid:
			return nil
		case gerr != nil:
			return fmt.Errorf("get pod: %w", gerr)
		}
	}
	return fmt.Errorf("delete pod: %w", err)
}

// runningStatus is the status a kubelet reports for pod once all its containers
// run: init containers completed, every container started and ready.
// Conditions already true keep their transition time, and startTime stays.
func runningStatus(p *corev1.Pod, podIP, hostIP netip.Addr, now time.Time) *corev1.PodStatus {
	ts := timestamppb.New(now.UTC().Truncate(time.Second))
	prev := p.GetStatus()
	st := &corev1.PodStatus{
		Phase:     "Running",
		HostIP:    hostIP.String(),
		HostIPs:   []*corev1.HostIP{{Ip: hostIP.String()}},
		PodIP:     podIP.String(),
		PodIPs:    []*corev1.PodIP{{Ip: podIP.String()}},
		StartTime: prev.GetStartTime(),
		QosClass:  prev.GetQosClass(),
	}
	if st.StartTime == nil {
		st.StartTime = ts
	}
	for _, t := range []string{"PodScheduled", "Initialized", "ContainersReady", "Ready"} {
		c := &corev1.PodCondition{Type: t, Status: "True", LastTransitionTime: ts}
		for _, pc := range prev.GetConditions() {
			if pc.GetType() == t && pc.GetStatus() == "True" && pc.GetLastTransitionTime() != nil {
				c.LastTransitionTime = pc.GetLastTransitionTime()
			}
		}
		st.Conditions = append(st.Conditions, c)
	}
	uid := p.GetMetadata().GetUid()
	for _, c := range p.GetSpec().GetInitContainers() {
		st.InitContainerStatuses = append(st.InitContainerStatuses, &corev1.ContainerStatus{
			Name: c.GetName(), Image: c.GetImage(), ImageID: "hollow://" + c.GetImage(),
			ContainerID: containerID(uid, c.GetName()), Ready: true, Started: proto.Bool(false),
			State: &corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: ts, FinishedAt: ts, ContainerID: containerID(uid, c.GetName()),
			}},
		})
	}
	for _, c := range p.GetSpec().GetContainers() {
		st.ContainerStatuses = append(st.ContainerStatuses, &corev1.ContainerStatus{
			Name: c.GetName(), Image: c.GetImage(), ImageID: "hollow://" + c.GetImage(),
			ContainerID: containerID(uid, c.GetName()), Ready: true, Started: proto.Bool(true), RestartCount: 0,
			State: &corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ts}},
		})
	}
	return st
}

func containerID(podUID, container string) string {
	h := fnv.New128a()
	h.Write([]byte(podUID + "/" + container))
	return fmt.Sprintf("hollow://%x", h.Sum(nil))
}

func isTerminal(p *corev1.Pod) bool {
	ph := p.GetStatus().GetPhase()
	return ph == "Succeeded" || ph == "Failed"
}

func podKey(p *corev1.Pod) string {
	return p.GetMetadata().GetNamespace() + "/" + p.GetMetadata().GetName()
}

// newerPod returns whichever of two versions of a pod is newer.
func newerPod(known, got *corev1.Pod) *corev1.Pod {
	if got == nil || resourceVersion(got) < resourceVersion(known) {
		return known
	}
	return got
}
