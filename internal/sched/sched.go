// Package sched decides which node each pending pod runs on: the scheduler's pure
// decision core. It reads a Cache of nodes and the pods on them, filters nodes with
// kube-scheduler's rules and reasons, scores the feasible ones and picks the best.
// It does no I/O: the scheduling loop feeds the Cache from the store's watch, binds
// what Schedule decides and records its FailedScheduling messages. See DESIGN.md.
package sched

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// ErrInvalidQuantity means a resource quantity of a pod or node does not parse. The
// API server validates quantities, so it signals a bug or a foreign writer.
var ErrInvalidQuantity = errors.New("invalid quantity")

// ErrNotPending means Schedule did not consider a pod because it is not waiting for a
// node: it is bound (spec.nodeName is set), being deleted, or already counted on a
// node by the Cache — assumed while its bind is in flight, or bound according to a
// newer copy than the one passed in.
var ErrNotPending = errors.New("pod is not pending")

// NoNodesMessage is the FailedScheduling message when the cluster has no nodes at
// all; kube-scheduler reports ErrNoNodesAvailable's text rather than "0/0 nodes".
const NoNodesMessage = "no nodes available to schedule pods"

// Config tunes a Scheduler.
type Config struct {
	// PercentageOfNodesToScore bounds the search: Schedule stops looking once it has
	// found this percentage of all nodes feasible, but at least 100 (all of them in a
	// smaller cluster). 0 adapts to the cluster as kube-scheduler does: 50% minus 1%
	// per 125 nodes, never below 5%. 100 looks at every node.
	PercentageOfNodesToScore int
	// LeastAllocatedWeight and SpreadWeight weigh the two scores (each 0-100) in a
	// node's total.
	LeastAllocatedWeight int64
	SpreadWeight         int64
	// Rand, when set, breaks ties between the best nodes at random; when nil the
	// lowest node name wins, so decisions are reproducible.
	Rand *rand.Rand
}

// DefaultConfig returns kube-scheduler's defaults: an adaptive search, least
// allocated at weight 1 and spreading at weight 2 (PodTopologySpread's default weight;
// it replaced SelectorSpread, which this spreading follows), ties by node name.
func DefaultConfig() Config {
	return Config{LeastAllocatedWeight: 1, SpreadWeight: 2}
}

// Validate checks the fields of c against their ranges.
func (c Config) Validate() error {
	if c.PercentageOfNodesToScore < 0 || c.PercentageOfNodesToScore > 100 {
		return fmt.Errorf("percentage of nodes to score must be between 0 and 100, got %d", c.PercentageOfNodesToScore)
	}
	if c.LeastAllocatedWeight < 0 || c.SpreadWeight < 0 {
		return fmt.Errorf("score weights must not be negative, got least allocated %d and spread %d",
			c.LeastAllocatedWeight, c.SpreadWeight)
	}
	return nil
}

// Scheduler decides placements. Besides its Config it remembers where the last search
// stopped, so the next one starts after it and every node gets its turn. It is not
// safe for concurrent use: the scheduling loop owns it, as it owns the Cache.
type Scheduler struct {
	cfg  Config
	next int // index in Cache.list the next search starts at

	// Buffers reused from pod to pod.
	feasible []*nodeInfo
	counts   []int32
	reasons  []string
	tally    []reasonCount
}

type reasonCount struct {
	reason string
	n      int
}

// New returns a Scheduler, or an error when cfg is invalid.
func New(cfg Config) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("scheduler config: %w", err)
	}
	return &Scheduler{cfg: cfg}, nil
}

// Decision is the outcome for one pod. Exactly one of Node, Message and Err is set.
type Decision struct {
	Pod *corev1.Pod
	// Node is where the pod goes; the Cache already counts it there as assumed.
	Node string
	// Message says why no node fits, worded as kube-scheduler's FailedScheduling
	// event, e.g. "0/3 nodes are available: 1 node(s) had untolerated taint
	// {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."
	Message string
	// Err is set when the pod was not considered: ErrNotPending or ErrInvalidQuantity.
	Err error
}

// Schedule decides pods in order and returns one Decision per pod, in the same order.
// Each placement is assumed in c at once, so later pods of the batch see the room it
// takes; the caller binds it and, if binding fails, calls c.Forget. A pod that does not
// fit anywhere changes nothing. Schedule does not check spec.schedulerName: the caller
// chooses which pods are its to place.
//
// Deciding one pod costs O(nodes) at worst (no node fits) and about the adaptive
// sample otherwise, never O(pods).
func (s *Scheduler) Schedule(c *Cache, pods []*corev1.Pod) []Decision {
	out := make([]Decision, len(pods))
	for i, p := range pods {
		out[i] = s.scheduleOne(c, p)
	}
	return out
}

func (s *Scheduler) scheduleOne(c *Cache, pod *corev1.Pod) Decision {
	d := Decision{Pod: pod}
	switch {
	case pod.GetSpec().GetNodeName() != "":
		d.Err = fmt.Errorf("pod %s: %w: assigned to node %s", podName(pod), ErrNotPending, pod.GetSpec().GetNodeName())
		return d
	case pod.GetMetadata().GetDeletionTimestamp() != nil:
		d.Err = fmt.Errorf("pod %s: %w: being deleted", podName(pod), ErrNotPending)
		return d
	}
	if st, ok := c.pods[podKey(pod)]; ok {
		d.Err = fmt.Errorf("pod %s: %w: counted on node %s (assumed: %v)", podName(pod), ErrNotPending, st.node, st.assumed)
		return d
	}
	p, err := newPodInfo(pod)
	if err != nil {
		d.Err = fmt.Errorf("pod %s: %w", podName(pod), err)
		return d
	}

	all := len(c.list)
	if all == 0 {
		d.Message = NoNodesMessage
		return d
	}
	feasible := s.findFeasible(c, p)
	if len(feasible) == 0 {
		d.Message = s.failureMessage(all)
		return d
	}
	best := feasible[0]
	if len(feasible) > 1 {
		best = s.pickBest(p, feasible)
	}
	c.assume(p, best.name)
	d.Node = best.name
	return d
}

// findFeasible runs the filters over the nodes from s.next on, wrapping around, until
// it has enough feasible nodes or has seen them all, and moves s.next past the nodes
// it saw. It tallies the reasons of rejected nodes in s.tally.
func (s *Scheduler) findFeasible(c *Cache, p *podInfo) []*nodeInfo {
	all := len(c.list)
	want := numFeasibleNodesToFind(s.cfg.PercentageOfNodesToScore, all)
	s.feasible = s.feasible[:0]
	s.tally = s.tally[:0]
	start := s.next % all
	seen := 0
	for seen < all && len(s.feasible) < want {
		n := c.list[(start+seen)%all]
		seen++
		s.reasons = runFilters(p, n, s.reasons[:0])
		if len(s.reasons) == 0 {
			s.feasible = append(s.feasible, n)
			continue
		}
		for _, r := range s.reasons {
			s.count(r)
		}
	}
	s.next = (start + seen) % all
	return s.feasible
}

// count adds one to the tally of reason. Reasons are few and mostly the same string
// constants, so a short slice beats a map.
func (s *Scheduler) count(reason string) {
	for i := range s.tally {
		if s.tally[i].reason == reason {
			s.tally[i].n++
			return
		}
	}
	s.tally = append(s.tally, reasonCount{reason, 1})
}

// failureMessage formats s.tally as kube-scheduler's FitError does: "0/N nodes are
// available: " then "<count> <reason>" entries sorted as strings (so by count's
// digits first, then reason) and joined with ", ", then ".".
func (s *Scheduler) failureMessage(all int) string {
	entries := make([]string, len(s.tally))
	for i, rc := range s.tally {
		entries[i] = strconv.Itoa(rc.n) + " " + rc.reason
	}
	sort.Strings(entries)
	return formatFailure(all, entries)
}

func formatFailure(all int, entries []string) string {
	msg := "0/" + strconv.Itoa(all) + " nodes are available:"
	if len(entries) > 0 {
		msg += " " + strings.Join(entries, ", ") + "."
	}
	return msg
}

// pickBest scores the feasible nodes and returns the best: highest weighted sum of
// least allocated and spread, ties to the lowest name or, with Config.Rand, to a
// uniformly random one of them (reservoir sampling, as kube-scheduler's selectHost).
func (s *Scheduler) pickBest(p *podInfo, feasible []*nodeInfo) *nodeInfo {
	s.counts = s.counts[:0]
	var most int32
	if wk := p.state.workload; wk != 0 && s.cfg.SpreadWeight != 0 {
		for _, n := range feasible {
			cnt := n.workloads[wk]
			s.counts = append(s.counts, cnt)
			most = max(most, cnt)
		}
	}
	var (
		best      *nodeInfo
		bestScore int64 = -1
		ties      int
	)
	for i, n := range feasible {
		score := s.cfg.LeastAllocatedWeight * leastAllocated(p, n)
		if len(s.counts) > 0 {
			score += s.cfg.SpreadWeight * spreadScore(s.counts[i], most)
		} else {
			score += s.cfg.SpreadWeight * maxNodeScore
		}
		switch {
		case score > bestScore:
			best, bestScore, ties = n, score, 1
		case score < bestScore:
		case s.cfg.Rand != nil:
			ties++
			if s.cfg.Rand.IntN(ties) == 0 {
				best = n
			}
		case n.name < best.name:
			best = n
		}
	}
	return best
}

// Constants of kube-scheduler's numFeasibleNodesToFind.
const (
	minFeasibleNodesToFind           = 100
	minFeasibleNodesPercentageToFind = 5
)

// numFeasibleNodesToFind returns how many feasible nodes a search may stop at, out of
// all nodes, as kube-scheduler computes it: every node below 100, else percentage of
// them (adaptive when 0: 50% minus 1% per 125 nodes, at least 5%), at least 100.
func numFeasibleNodesToFind(percentage, all int) int {
	if all < minFeasibleNodesToFind {
		return all
	}
	if percentage == 0 {
		percentage = max(50-all/125, minFeasibleNodesPercentageToFind)
	}
	return max(all*percentage/100, minFeasibleNodesToFind)
}

// podInfo is a pending pod prepared for the filters and scores.
type podInfo struct {
	pod   *corev1.Pod
	key   string
	state podState // what it would take on a node; state.node unset

	nodeSelector []label        // spec.nodeSelector, as a slice: ranging over a map costs more
	hasRequired  bool           // it has a required node affinity
	required     []selectorTerm // its well-formed terms; none matches no node
	tolerations  []*corev1.Toleration
}

type label struct{ key, value string }

func newPodInfo(pod *corev1.Pod) (*podInfo, error) {
	st, err := newPodState(pod)
	if err != nil {
		return nil, err
	}
	spec := pod.GetSpec()
	p := &podInfo{
		pod:         pod,
		key:         podKey(pod),
		state:       st,
		tolerations: spec.GetTolerations(),
	}
	for k, v := range spec.GetNodeSelector() {
		p.nodeSelector = append(p.nodeSelector, label{k, v})
	}
	if req := spec.GetAffinity().GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution(); req != nil {
		p.hasRequired = true
		p.required = compileNodeSelector(req)
	}
	return p, nil
}
