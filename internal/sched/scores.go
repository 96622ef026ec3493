package sched

// maxNodeScore is the best score each scoring function gives, as in kube-scheduler.
const maxNodeScore = 100

// leastAllocated scores how much of n would stay free with p on it: the mean over cpu
// and memory of free/allocatable, 0 to 100, as kube-scheduler's NodeResourcesFit
// LeastAllocated strategy with equal weights. Requests left unset count at the
// scoring defaults (100m cpu, 200Mi memory per container).
func leastAllocated(p *podInfo, n *nodeInfo) int64 {
	cpu := leastRequested(n.nonZero.milliCPU+p.state.nonZero.milliCPU, n.alloc.milliCPU)
	mem := leastRequested(n.nonZero.memory+p.state.nonZero.memory, n.alloc.memory)
	return (cpu + mem) / 2
}

func leastRequested(requested, capacity int64) int64 {
	if capacity <= 0 || requested > capacity {
		return 0
	}
	return (capacity - requested) * maxNodeScore / capacity
}

// spreadScore scores a node already running count replicas of the pod's workload when
// the candidate running the most runs most: 100 for none, down to 0 for the most, as
// kube-scheduler's former SelectorSpread normalised it (without zones). A pod that
// belongs to no workload, or whose workload runs on none of the candidates, scores
// 100 everywhere.
func spreadScore(count, most int32) int64 {
	if most <= 0 {
		return maxNodeScore
	}
	return int64(most-count) * maxNodeScore / int64(most)
}
