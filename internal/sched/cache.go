package sched

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// Cache is what the scheduler knows of the cluster: per node, what it offers (allocatable
// cpu, memory and pods, labels, taints, cordon) and what the pods assigned to it —
// bound or assumed — take (requests, pod count, host ports, replicas per workload).
//
// The scheduling loop owns a Cache: it feeds it every Node and Pod watch event and
// hands it to Scheduler.Schedule, which assumes each placement it decides. A Cache is
// not safe for concurrent use. Every event costs O(1) in the number of pods and nodes
// (map operations plus the size of the object itself); nothing rescans all pods.
type Cache struct {
	// nodes holds every node known from its Node object or from a pod assigned to it.
	nodes map[string]*nodeInfo
	// list holds the nodes that have a Node object, in a stable order (insertion, with
	// swap-removal): the order Schedule scans them in.
	list []*nodeInfo
	// pods holds every pod counted on a node, by podKey.
	pods map[string]*podState
}

// nodeInfo is one node as the filters and scores see it.
type nodeInfo struct {
	name string
	// idx is the node's position in Cache.list, or -1 when its Node object is unknown
	// (it has pods but was deleted, or its pods arrived first).
	idx int

	// From the Node object.
	labels        map[string]string
	taints        []taint // NoSchedule and NoExecute only, then the readiness taints
	unschedulable bool
	alloc         resources
	allowedPods   int64

	// From the pods assigned to the node.
	requested resources // sum of podState.req
	nonZero   resources // sum of podState.nonZero, for scoring
	pods      int64
	ports     portSet
	workloads map[uint64]int32 // replicas per workload key
}

// taint is a NoSchedule or NoExecute taint, with its rejection reason prepared once.
type taint struct {
	key, value, effect string
	reason             string
}

// podState is what one pod contributes to its node.
type podState struct {
	node     string
	req      resources
	nonZero  resources
	ports    []hostPort
	workload uint64 // 0: not part of a workload
	// assumed is set while the pod's placement is only the scheduler's decision, until
	// the bound pod comes back through AddPod or Forget undoes it.
	assumed bool
}

// Taints that Kubernetes' node lifecycle controller puts on nodes that are not ready;
// the cache derives them from the Ready condition so the scheduler does not depend on
// that controller having run. And the taint a pod tolerates to land on a cordoned node.
const (
	taintNotReady      = "node.kubernetes.io/not-ready"
	taintUnreachable   = "node.kubernetes.io/unreachable"
	taintUnschedulable = "node.kubernetes.io/unschedulable"

	effectNoSchedule = "NoSchedule"
	effectNoExecute  = "NoExecute"
)

// NewCache returns a cache of the given nodes and pods. Nodes are listed in name order.
// An object that cannot be accounted (a quantity that does not parse) is left out and
// reported in the returned error, which joins one error per such object; the cache
// holds everything else and is always usable.
func NewCache(nodes []*corev1.Node, pods []*corev1.Pod) (*Cache, error) {
	c := &Cache{
		nodes: make(map[string]*nodeInfo, len(nodes)),
		list:  make([]*nodeInfo, 0, len(nodes)),
		pods:  make(map[string]*podState, len(pods)),
	}
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b *corev1.Node) int {
		return strings.Compare(a.GetMetadata().GetName(), b.GetMetadata().GetName())
	})
	var errs []error
	for _, n := range sorted {
		if err := c.UpdateNode(n); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range pods {
		if err := c.AddPod(p); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}

// UpdateNode adds n or replaces what the cache knows of it; the pods counted on it stay.
// It returns an error wrapping ErrInvalidQuantity, and leaves the cache unchanged, when
// an allocatable quantity does not parse.
func (c *Cache) UpdateNode(n *corev1.Node) error {
	name := n.GetMetadata().GetName()
	alloc, allowedPods, err := allocatableOf(n.GetStatus())
	if err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	ni := c.nodes[name]
	if ni == nil {
		ni = &nodeInfo{name: name, idx: -1}
		c.nodes[name] = ni
	}
	ni.labels = n.GetMetadata().GetLabels()
	ni.taints = nodeTaints(n)
	ni.unschedulable = n.GetSpec().GetUnschedulable()
	ni.alloc = alloc
	ni.allowedPods = allowedPods
	if ni.idx < 0 {
		ni.idx = len(c.list)
		c.list = append(c.list, ni)
	}
	return nil
}

// RemoveNode forgets the Node object called name. Pods still counted on it stay until
// they are removed, so a node that comes back finds them (as kube-scheduler's cache does).
func (c *Cache) RemoveNode(name string) {
	ni := c.nodes[name]
	if ni == nil || ni.idx < 0 {
		return
	}
	last := len(c.list) - 1
	c.list[ni.idx] = c.list[last]
	c.list[ni.idx].idx = ni.idx
	c.list[last] = nil
	c.list = c.list[:last]
	*ni = nodeInfo{
		name: ni.name, idx: -1,
		requested: ni.requested, nonZero: ni.nonZero, pods: ni.pods,
		ports: ni.ports, workloads: ni.workloads,
	}
	c.dropIfEmpty(ni)
}

// AddPod counts p on the node it is assigned to, replacing what was counted for it
// before; a pod the scheduler assumed is thereby confirmed. A pod that is not assigned
// (empty spec.nodeName) is ignored: only Schedule places pending pods. A pod in phase
// Succeeded or Failed no longer takes anything and is removed. It returns an error
// wrapping ErrInvalidQuantity, and leaves the cache unchanged, when a request does not
// parse.
func (c *Cache) AddPod(p *corev1.Pod) error {
	node := p.GetSpec().GetNodeName()
	if node == "" {
		return nil
	}
	key := podKey(p)
	if terminal(p) {
		c.remove(key)
		return nil
	}
	st, err := newPodState(p)
	if err != nil {
		return fmt.Errorf("pod %s: %w", podName(p), err)
	}
	st.node = node
	c.remove(key)
	c.add(key, &st)
	return nil
}

// RemovePod stops counting p (deleted, or seen terminal), whether bound or assumed.
func (c *Cache) RemovePod(p *corev1.Pod) {
	c.remove(podKey(p))
}

// Forget undoes Schedule's assumption of p, for when binding it failed. It reports
// whether there was an assumption to undo: a pod already confirmed by AddPod, or never
// assumed, is left as it is.
func (c *Cache) Forget(p *corev1.Pod) bool {
	key := podKey(p)
	st := c.pods[key]
	if st == nil || !st.assumed {
		return false
	}
	c.remove(key)
	return true
}

// NumNodes returns how many nodes Schedule considers: those with a Node object.
func (c *Cache) NumNodes() int { return len(c.list) }

// Usage is what the cache accounts on one node.
type Usage struct {
	AllocatableMilliCPU int64
	AllocatableMemory   int64 // bytes
	AllocatablePods     int64
	RequestedMilliCPU   int64
	RequestedMemory     int64 // bytes
	Pods                int64 // bound and assumed pods
}

// Usage returns what the cache accounts on the named node, and false when it knows
// neither the node nor any pod on it.
func (c *Cache) Usage(node string) (Usage, bool) {
	ni := c.nodes[node]
	if ni == nil {
		return Usage{}, false
	}
	return Usage{
		AllocatableMilliCPU: ni.alloc.milliCPU, AllocatableMemory: ni.alloc.memory,
		AllocatablePods:   ni.allowedPods,
		RequestedMilliCPU: ni.requested.milliCPU, RequestedMemory: ni.requested.memory,
		Pods: ni.pods,
	}, true
}

// assume counts a pending pod on node as Schedule decided, until AddPod confirms it or
// Forget undoes it.
func (c *Cache) assume(p *podInfo, node string) {
	st := p.state
	st.node = node
	st.assumed = true
	c.remove(p.key)
	c.add(p.key, &st)
}

func (c *Cache) add(key string, st *podState) {
	ni := c.nodes[st.node]
	if ni == nil {
		ni = &nodeInfo{name: st.node, idx: -1}
		c.nodes[st.node] = ni
	}
	ni.requested.add(st.req)
	ni.nonZero.add(st.nonZero)
	ni.pods++
	for _, hp := range st.ports {
		ni.ports.add(hp)
	}
	if st.workload != 0 {
		if ni.workloads == nil {
			ni.workloads = make(map[uint64]int32)
		}
		ni.workloads[st.workload]++
	}
	c.pods[key] = st
}

func (c *Cache) remove(key string) {
	st := c.pods[key]
	if st == nil {
		return
	}
	delete(c.pods, key)
	ni := c.nodes[st.node]
	ni.requested.sub(st.req)
	ni.nonZero.sub(st.nonZero)
	ni.pods--
	for _, hp := range st.ports {
		ni.ports.remove(hp)
	}
	if st.workload != 0 {
		if ni.workloads[st.workload]--; ni.workloads[st.workload] <= 0 {
			delete(ni.workloads, st.workload)
		}
	}
	c.dropIfEmpty(ni)
}

// dropIfEmpty deletes a node that has neither a Node object nor pods.
func (c *Cache) dropIfEmpty(ni *nodeInfo) {
	if ni.idx < 0 && ni.pods == 0 {
		delete(c.nodes, ni.name)
	}
}

// nodeTaints returns the taints of n that keep pods off (NoSchedule, NoExecute), then
// the one its Ready condition implies when the node does not carry it already:
// not-ready when Ready is False or missing, unreachable when Ready is Unknown.
func nodeTaints(n *corev1.Node) []taint {
	var out []taint
	for _, t := range n.GetSpec().GetTaints() {
		if t.GetEffect() == effectNoSchedule || t.GetEffect() == effectNoExecute {
			out = append(out, newTaint(t.GetKey(), t.GetValue(), t.GetEffect()))
		}
	}
	implied := taintNotReady
	for _, cond := range n.GetStatus().GetConditions() {
		if cond.GetType() != "Ready" {
			continue
		}
		switch cond.GetStatus() {
		case "True":
			implied = ""
		case "Unknown":
			implied = taintUnreachable
		}
		break
	}
	if implied != "" && !slices.ContainsFunc(out, func(t taint) bool {
		return t.key == implied && t.effect == effectNoSchedule
	}) {
		out = append(out, newTaint(implied, "", effectNoSchedule))
	}
	return out
}

func newTaint(key, value, effect string) taint {
	return taint{key: key, value: value, effect: effect, reason: untoleratedTaintReason(key, value)}
}

// newPodState returns what p takes on a node (without the node).
func newPodState(p *corev1.Pod) (podState, error) {
	req, nonZero, err := podRequests(p.GetSpec())
	if err != nil {
		return podState{}, err
	}
	return podState{req: req, nonZero: nonZero, ports: podHostPorts(p.GetSpec()), workload: workloadKey(p)}, nil
}

// podKey identifies a pod in the cache: its uid, or namespace/name when it has none.
func podKey(p *corev1.Pod) string {
	if uid := p.GetMetadata().GetUid(); uid != "" {
		return uid
	}
	return podName(p)
}

func podName(p *corev1.Pod) string {
	return p.GetMetadata().GetNamespace() + "/" + p.GetMetadata().GetName()
}

func terminal(p *corev1.Pod) bool {
	phase := p.GetStatus().GetPhase()
	return phase == "Succeeded" || phase == "Failed"
}

// workloadKey names the set of replicas a pod is spread with: the uid of its
// controller owner (ReplicaSet, StatefulSet, ...), or for a pod without one its
// namespace and labels. A pod with neither owner nor labels belongs to no workload (0).
// Keys are 64-bit FNV-1a hashes; a collision only blurs spreading between two workloads.
func workloadKey(p *corev1.Pod) uint64 {
	md := p.GetMetadata()
	for _, ref := range md.GetOwnerReferences() {
		if ref.GetController() && ref.GetUid() != "" {
			return fnv64a(fnv64a(fnvOffset, "owner\x00"), ref.GetUid())
		}
	}
	if len(md.GetLabels()) == 0 {
		return 0
	}
	keys := make([]string, 0, len(md.GetLabels()))
	for k := range md.GetLabels() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := fnv64a(fnv64a(fnvOffset, "labels\x00"), md.GetNamespace())
	for _, k := range keys {
		h = fnv64a(fnv64a(fnv64a(fnv64a(h, "\x00"), k), "="), md.GetLabels()[k])
	}
	if h == 0 {
		h = 1
	}
	return h
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnv64a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}
