package hollow

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/api/resource"

	coordinationv1 "github.com/rafter-dev/rafter/gen/rafter/coordination/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// LeaseNamespace holds the nodes' Leases, as in Kubernetes.
const LeaseNamespace = "kube-node-lease"

// maxConflicts bounds how often one write is re-read and retried after a
// Conflict before the job gives up and is scheduled again.
const maxConflicts = 5

// node is the loop's state of one hollow node.
type node struct {
	name    string
	index   int
	address netip.Addr

	obj      *corev1.Node // latest version known, nil before any
	lease    *coordinationv1.Lease
	ips      *ipam // nil until spec.podCIDR is known
	podCIDR  netip.Prefix
	pods     map[string]*pod // by namespace/name
	gone     bool            // the Node was deleted after registration: act as a kubelet whose Node is gone
	retryReg time.Time       // registration failed; try again then

	registered                     bool
	counted                        bool      // has counted towards Registered once
	registering, renewing, posting bool      // a job is in flight
	leaseDue, statusDue            time.Time // due times of the live renewal and status timers; a timer due at another time is void
}

// syncNode starts whatever the node needs next: registration (again after a
// failure, once retryReg has passed), or syncing its pods once registered.
func (l *loop) syncNode(n *node) {
	if n.gone || n.registering || l.a.isPaused(n.name) {
		return
	}
	if !n.registered {
		if now := l.now(); now.Before(n.retryReg) {
			due := n.retryReg
			l.timers.add(due, func() {
				if n.retryReg.Equal(due) {
					l.syncNode(n)
				}
			})
			return
		}
		l.register(n)
		return
	}
	l.syncPods(n)
}

// register creates or adopts the Node, posts its status and creates its Lease.
func (l *loop) register(n *node) {
	n.registering = true
	a, name, index := l.a, n.name, n.index
	l.dispatch(true, func(ctx context.Context) func() {
		if a.isPaused(name) {
			return func() { n.registering = false }
		}
		obj, lease, err := a.register(ctx, name, index)
		return func() {
			n.registering = false
			if err != nil {
				a.cfg.Logger.Warn("register node failed; will retry", "node", name, "err", err)
				n.retryReg = l.now().Add(a.cfg.RetryInterval)
				l.syncNode(n)
				return
			}
			n.retryReg = time.Time{}
			l.setNode(n, obj)
			n.lease = lease
			n.registered = true
			if !n.counted {
				n.counted = true
				l.registered++
				if l.registered == len(l.nodes) {
					close(a.ready)
				}
			}
			a.cfg.Logger.Debug("node registered", "node", name)
			now := l.now()
			l.scheduleLease(n, now.Add(time.Duration(randFraction()*float64(a.cfg.LeaseInterval))))
			l.scheduleStatus(n, now.Add(jitter(a.cfg.StatusInterval)))
			l.syncNode(n)
		}
	})
}

// setNode records a newer version of the Node and notices a podCIDR.
func (l *loop) setNode(n *node, obj *corev1.Node) {
	if n.obj != nil && resourceVersion(obj) < resourceVersion(n.obj) {
		return
	}
	n.obj = obj
	s := obj.GetSpec().GetPodCIDR()
	if s == "" || n.ips != nil {
		if s != "" && s != n.podCIDR.String() {
			l.a.cfg.Logger.Warn("node podCIDR changed; keeping the first one", "node", n.name, "podCIDR", s, "kept", n.podCIDR)
		}
		return
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		l.a.cfg.Logger.Warn("node podCIDR does not parse", "node", n.name, "podCIDR", s, "err", err)
		return
	}
	n.podCIDR, n.ips = p.Masked(), newIPAM(p)
	if n.registered {
		l.syncNode(n)
	}
}

// onNodes applies a change from the node watch.
func (l *loop) onNodes(c change[*corev1.Node]) {
	if c.typ == "" {
		seen := map[string]bool{}
		for _, obj := range c.items {
			if n := l.nodes[obj.GetMetadata().GetName()]; n != nil {
				seen[n.name] = true
				l.onNode("ADDED", n, obj)
			}
		}
		for _, n := range l.nodes {
			if !seen[n.name] && n.obj != nil && resourceVersion(n.obj) <= c.rv {
				l.onNode("DELETED", n, n.obj)
			}
		}
		return
	}
	if n := l.nodes[c.obj.GetMetadata().GetName()]; n != nil {
		l.onNode(c.typ, n, c.obj)
	}
}

func (l *loop) onNode(typ string, n *node, obj *corev1.Node) {
	switch typ {
	case "DELETED":
		if n.registered && !n.gone && (n.obj == nil || resourceVersion(obj) >= resourceVersion(n.obj)) {
			// A kubelet whose Node is deleted does not recreate it; it stops.
			l.a.cfg.Logger.Warn("node deleted; it stops until the Node is created again", "node", n.name)
			n.gone = true
		}
	case "ADDED", "MODIFIED":
		if n.gone && resourceVersion(obj) > resourceVersion(n.obj) {
			// Someone created the Node again: adopt it.
			n.gone, n.registered, n.obj, n.ips, n.podCIDR = false, false, nil, nil, netip.Prefix{}
			l.syncNode(n)
		}
		l.setNode(n, obj)
		// Something else marked the node not ready (the node lifecycle controller
		// while it was paused): a live kubelet posts its status again at once.
		if n.registered && !n.gone && n.obj == obj && !isReady(obj) && !l.a.isPaused(n.name) {
			l.scheduleStatus(n, l.now())
		}
	}
}

// onToggled reacts to Pause or Resume of n.
func (l *loop) onToggled(n *node) {
	if l.a.isPaused(n.name) {
		l.a.cfg.Logger.Info("node paused", "node", n.name)
		return
	}
	l.a.cfg.Logger.Info("node resumed", "node", n.name)
	if n.registered {
		now := l.now()
		l.scheduleLease(n, now)
		l.scheduleStatus(n, now)
	}
	l.syncNode(n)
}

// scheduleLease sets the node's next Lease renewal, replacing any other.
func (l *loop) scheduleLease(n *node, due time.Time) {
	n.leaseDue = due
	l.timers.add(due, func() {
		if n.leaseDue.Equal(due) {
			l.renewLease(n)
		}
	})
}

// scheduleStatus sets the node's next status update, replacing any other.
func (l *loop) scheduleStatus(n *node, due time.Time) {
	n.statusDue = due
	l.timers.add(due, func() {
		if n.statusDue.Equal(due) {
			l.postStatus(n)
		}
	})
}

func (l *loop) renewLease(n *node) {
	if n.gone || n.renewing || !n.registered || l.a.isPaused(n.name) {
		return // Resume and the end of the job in flight schedule again
	}
	n.renewing = true
	a, name, lease, nodeObj := l.a, n.name, n.lease, n.obj
	l.dispatch(true, func(ctx context.Context) func() {
		if a.isPaused(name) {
			return func() { n.renewing = false }
		}
		stored, err := a.renewLease(ctx, name, lease, nodeObj)
		return func() {
			n.renewing = false
			next := l.now().Add(jitter(a.cfg.LeaseInterval))
			if err != nil {
				a.cfg.Logger.Warn("renew lease failed; will retry", "node", name, "err", err)
				next = l.now().Add(min(a.cfg.RetryInterval, a.cfg.LeaseInterval))
			} else {
				n.lease = stored
			}
			if !a.isPaused(name) {
				l.scheduleLease(n, next)
			}
		}
	})
}

func (l *loop) postStatus(n *node) {
	if n.gone || n.posting || !n.registered || l.a.isPaused(n.name) {
		return
	}
	n.posting = true
	a, name, index, obj := l.a, n.name, n.index, n.obj
	l.dispatch(true, func(ctx context.Context) func() {
		if a.isPaused(name) {
			return func() { n.posting = false }
		}
		stored, err := a.postStatus(ctx, name, index, obj)
		return func() {
			n.posting = false
			next := l.now().Add(jitter(a.cfg.StatusInterval))
			switch {
			case status.Code(err) == codes.NotFound:
				a.cfg.Logger.Warn("node deleted; it stops until the Node is created again", "node", name)
				n.gone = true
				return
			case err != nil:
				a.cfg.Logger.Warn("post node status failed; will retry", "node", name, "err", err)
				next = l.now().Add(a.cfg.RetryInterval)
			default:
				l.setNode(n, stored)
			}
			if !a.isPaused(name) {
				l.scheduleStatus(n, next)
			}
		}
	})
}

// register creates the Node or adopts an existing one (setting its labels and,
// in self-assign mode, an empty podCIDR), posts its status and creates or takes
// over its Lease. Safe to repeat.
func (a *Agent) register(ctx context.Context, name string, index int) (*corev1.Node, *coordinationv1.Lease, error) {
	desired := a.desiredNode(name, index)
	var obj *corev1.Node
	err := a.conns.call(ctx, a.cfg.CallTimeout, func(ctx context.Context, c grpc.ClientConnInterface) error {
		var err error
		obj, err = corev1.NewNodesClient(c).Create(ctx, &corev1.CreateNodeRequest{Body: desired})
		return err
	})
	if status.Code(err) == codes.AlreadyExists {
		obj, err = a.adoptNode(ctx, desired)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("create node: %w", err)
	}
	if obj, err = a.postStatus(ctx, name, index, obj); err != nil {
		return nil, nil, err
	}
	lease, err := a.renewLease(ctx, name, nil, obj)
	if err != nil {
		return nil, nil, err
	}
	return obj, lease, nil
}

func (a *Agent) desiredNode(name string, index int) *corev1.Node {
	labels := map[string]string{
		"kubernetes.io/hostname": name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     runtime.GOARCH,
	}
	maps.Copy(labels, a.cfg.Labels)
	n := &corev1.Node{
		ApiVersion: "v1", Kind: "Node",
		Metadata: &metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:     &corev1.NodeSpec{},
	}
	if p := a.cfg.selfPodCIDR(index); p.IsValid() {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = p.String(), []string{p.String()}
	}
	return n
}

// adoptNode brings an existing Node in line with desired: missing labels, and an
// empty podCIDR in self-assign mode. Everything else is left as found.
func (a *Agent) adoptNode(ctx context.Context, desired *corev1.Node) (*corev1.Node, error) {
	name := desired.GetMetadata().GetName()
	for attempt := 0; ; attempt++ {
		cur, err := a.getNode(ctx, name)
		if err != nil {
			return nil, err
		}
		upd := proto.Clone(cur).(*corev1.Node)
		if upd.Metadata.Labels == nil {
			upd.Metadata.Labels = map[string]string{}
		}
		changed := false
		for k, v := range desired.GetMetadata().GetLabels() {
			if upd.Metadata.Labels[k] != v {
				upd.Metadata.Labels[k], changed = v, true
			}
		}
		if upd.Spec == nil {
			upd.Spec = &corev1.NodeSpec{}
		}
		if upd.Spec.PodCIDR == "" && desired.GetSpec().GetPodCIDR() != "" {
			upd.Spec.PodCIDR, upd.Spec.PodCIDRs, changed = desired.Spec.PodCIDR, desired.Spec.PodCIDRs, true
		}
		if !changed {
			return cur, nil
		}
		var out *corev1.Node
		err = a.conns.call(ctx, a.cfg.CallTimeout, func(ctx context.Context, c grpc.ClientConnInterface) error {
			out, err = corev1.NewNodesClient(c).Update(ctx, &corev1.UpdateNodeRequest{Name: name, Body: upd})
			return err
		})
		if status.Code(err) == codes.Aborted && attempt < maxConflicts {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("adopt node: %w", err)
		}
		return out, nil
	}
}

func (a *Agent) getNode(ctx context.Context, name string) (*corev1.Node, error) {
	var obj *corev1.Node
	err := a.conns.call(ctx, a.cfg.CallTimeout, func(ctx context.Context, c grpc.ClientConnInterface) error {
		var err error
		obj, err = corev1.NewNodesClient(c).Get(ctx, &metav1.GetRequest{Name: name})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get node: %w", err)
	}
	return obj, nil
}

// postStatus writes the node's status over cur (the latest version known, nil
// to read it first), re-reading it on Conflict. An error with code NotFound
// means the Node is gone.
func (a *Agent) postStatus(ctx context.Context, name string, index int, cur *corev1.Node) (*corev1.Node, error) {
	for attempt := 0; ; attempt++ {
		if cur == nil {
			var err error
			if cur, err = a.getNode(ctx, name); err != nil {
				return nil, err
			}
		}
		upd := &corev1.Node{
			ApiVersion: "v1", Kind: "Node",
			Metadata: &metav1.ObjectMeta{Name: name, ResourceVersion: cur.GetMetadata().GetResourceVersion()},
			Status:   a.nodeStatus(index, cur.GetStatus(), a.cfg.Clock.Now()),
		}
		var out *corev1.Node
		err := a.conns.call(ctx, a.cfg.CallTimeout, func(ctx context.Context, c grpc.ClientConnInterface) error {
			var err error
			out, err = corev1.NewNodesClient(c).UpdateStatus(ctx, &corev1.UpdateNodeRequest{Name: name, Body: upd})
			return err
		})
		if c := status.Code(err); (c == codes.Aborted || c == codes.NotFound) && attempt < maxConflicts {
			// NotFound is re-read too: the leader may not have applied yet the
			// Node a follower showed; the linearizable Get decides.
			cur = nil
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update node status: %w", err)
		}
		return out, nil
	}
}

// nodeStatus is what the kubelet of node index reports at now. Conditions of
// other types in prev (set by other components) are kept, and so is a
// condition's lastTransitionTime while its status stays the same.
func (a *Agent) nodeStatus(index int, prev *corev1.NodeStatus, now time.Time) *corev1.NodeStatus {
	ts := timestamppb.New(now.UTC().Truncate(time.Second))
	quantities := func() map[string]*structpb.Value {
		return map[string]*structpb.Value{
			"cpu":    structpb.NewStringValue(canonical(a.cfg.CPU)),
			"memory": structpb.NewStringValue(canonical(a.cfg.Memory)),
			"pods":   structpb.NewStringValue(canonical(a.cfg.Pods)),
		}
	}
	name := a.cfg.nodeName(index)
	st := &corev1.NodeStatus{
		Capacity:    quantities(),
		Allocatable: quantities(),
		Addresses: []*corev1.NodeAddress{
			{Type: "InternalIP", Address: a.cfg.nodeAddress(index).String()},
			{Type: "Hostname", Address: name},
		},
		DaemonEndpoints: &corev1.NodeDaemonEndpoints{KubeletEndpoint: &corev1.DaemonEndpoint{Port: int32(a.cfg.KubeletPort)}},
		NodeInfo:        a.nodeInfo(name),
	}
	own := []*corev1.NodeCondition{
		{Type: "MemoryPressure", Status: "False", Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
		{Type: "DiskPressure", Status: "False", Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
		{Type: "PIDPressure", Status: "False", Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
		{Type: "Ready", Status: "True", Reason: "KubeletReady", Message: "kubelet is posting ready status (hollow node)"},
	}
	mine := map[string]bool{}
	for _, c := range own {
		mine[c.Type] = true
		c.LastHeartbeatTime, c.LastTransitionTime = ts, ts
		for _, p := range prev.GetConditions() {
			if p.GetType() == c.Type && p.GetStatus() == c.Status && p.GetLastTransitionTime() != nil {
				c.LastTransitionTime = p.GetLastTransitionTime()
			}
		}
	}
	for _, p := range prev.GetConditions() {
		if !mine[p.GetType()] {
			st.Conditions = append(st.Conditions, p)
		}
	}
	st.Conditions = append(st.Conditions, own...)
	return st
}

// nodeInfo is Config.NodeInfo, or a hollow node's made-up system info.
func (a *Agent) nodeInfo(name string) *corev1.NodeSystemInfo {
	if a.cfg.NodeInfo != nil {
		return proto.Clone(a.cfg.NodeInfo).(*corev1.NodeSystemInfo)
	}
	return &corev1.NodeSystemInfo{
		MachineID:               fakeID("machine", name),
		SystemUUID:              fakeID("system", name),
		BootID:                  fakeID("boot", name),
		KernelVersion:           "hollow",
		OsImage:                 "Rafter hollow node",
		ContainerRuntimeVersion: "hollow://1.0.0",
		KubeletVersion:          "v1.37.2-hollow",
		OperatingSystem:         "linux",
		Architecture:            runtime.GOARCH,
	}
}

// renewLease writes the node's Lease with renewTime now: an update of cur (the
// latest version known; nil to read it first), re-read on Conflict, or a create
// when there is none.
func (a *Agent) renewLease(ctx context.Context, name string, cur *coordinationv1.Lease, nodeObj *corev1.Node) (*coordinationv1.Lease, error) {
	for attempt := 0; ; attempt++ {
		now := timestamppb.New(a.cfg.Clock.Now().UTC().Truncate(time.Microsecond))
		if cur == nil {
			var err error
			cur, err = a.getLease(ctx, name)
			if errors.Is(err, errNoLease) {
				return a.createLease(ctx, name, nodeObj, now)
			}
			if err != nil {
				return nil, err
			}
		}
		upd := proto.Clone(cur).(*coordinationv1.Lease)
		if upd.Spec == nil {
			upd.Spec = &coordinationv1.LeaseSpec{}
		}
		if upd.Spec.GetHolderIdentity() != name {
			upd.Spec.AcquireTime = now
		}
		upd.Spec.HolderIdentity, upd.Spec.LeaseDurationSeconds = proto.String(name), proto.Int32(int32(a.cfg.LeaseDuration/time.Second))
		upd.Spec.RenewTime = now
		var out *coordinationv1.Lease
		err := a.conns.call(ctx, a.cfg.CallTimeout, func(ctx context.Context, c grpc.ClientConnInterface) error {
			var err error
			out, err = coordinationv1.NewLeasesClient(c).Update(ctx, &coordinationv1.UpdateLeaseRequest{Namespace: LeaseNamespace, Name: name, Body: upd})
			return err
		})
		switch {
		case status.Code(err) == codes.Aborted && attempt < maxConflicts:
			cur = nil
			continue
		case status.Code(err) == codes.NotFound:
			return a.createLease(ctx, name, nodeObj, now)
		case err != nil:
			return nil, fmt.Errorf("update lease: %w", err)
		}
		return out, nil
	}
}

var errNoLease = errors.New("no lease")

func (a *Agent) getLease(ctx context.Context, name string) (*coordinationv1.Lease, error) {
	var obj *coordinationv1.Lease
	err := a.conns.call(ctx, a.cfg.CallTimeout, func(ctx context.Context, c grpc.ClientConnInterface) error {
		var err error
		obj, err = coordinationv1.NewLeasesClient(c).Get(ctx, &metav1.GetRequest{Namespace: LeaseNamespace, Name: name})
		return err
	})
	if status.Code(err) == codes.NotFound {
		return nil, errNoLease
	}
	if err != nil {
		return nil, fmt.Errorf("get lease: %w", err)
	}
	return obj, nil
}

// createLease creates the node's Lease, owned by its Node (so that deleting the
// Node collects it); if one appeared meanwhile, it renews that one instead.
func (a *Agent) createLease(ctx context.Context, name string, nodeObj *corev1.Node, now *timestamppb.Timestamp) (*coordinationv1.Lease, error) {
	lease := &coordinationv1.Lease{
		ApiVersion: "coordination.k8s.io/v1", Kind: "Lease",
		Metadata: &metav1.ObjectMeta{Name: name, Namespace: LeaseNamespace},
		Spec: &coordinationv1.LeaseSpec{
			HolderIdentity:       proto.String(name),
			LeaseDurationSeconds: proto.Int32(int32(a.cfg.LeaseDuration / time.Second)),
			AcquireTime:          now,
			RenewTime:            now,
		},
	}
	if uid := nodeObj.GetMetadata().GetUid(); uid != "" {
		lease.Metadata.OwnerReferences = []*metav1.OwnerReference{{ApiVersion: "v1", Kind: "Node", Name: name, Uid: uid}}
	}
	var out *coordinationv1.Lease
	err := a.conns.call(ctx, a.cfg.CallTimeout, func(ctx context.Context, c grpc.ClientConnInterface) error {
		var err error
		out, err = coordinationv1.NewLeasesClient(c).Create(ctx, &coordinationv1.CreateLeaseRequest{Namespace: LeaseNamespace, Body: lease})
		return err
	})
	if status.Code(err) == codes.AlreadyExists {
		cur, err := a.getLease(ctx, name)
		if err != nil {
			return nil, err
		}
		return a.renewLease(ctx, name, cur, nodeObj)
	}
	if err != nil {
		return nil, fmt.Errorf("create lease: %w", err)
	}
	return out, nil
}

func isReady(n *corev1.Node) bool {
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus() == "True"
		}
	}
	return false
}

// canonical writes a quantity the way the API server stores it, so that
// re-posting the same status changes nothing. Config.Validate parsed it.
func canonical(q string) string {
	v, err := resource.ParseQuantity(q)
	if err != nil {
		return q
	}
	return v.String()
}

// fakeID is a stable UUID-shaped identifier for a node.
func fakeID(kind, name string) string {
	h := fnv.New128a()
	h.Write([]byte(kind + "/" + name))
	b := h.Sum(nil)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// randFraction is uniform in [0, 1): where in its first interval a node's first
// renewal falls.
func randFraction() float64 { return rand.Float64() }
