package sched

import (
	"fmt"
	"strconv"

	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/api/resource"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// Resource names the scheduler accounts for. Other resources (ephemeral-storage,
// extended resources) are ignored.
const (
	resourceCPU    = "cpu"
	resourceMemory = "memory"
	resourcePods   = "pods"
)

// What kube-scheduler assumes a container asks for when it requests nothing, for
// scoring only (schedutil.DefaultMilliCPURequest and DefaultMemoryRequest): without it
// best-effort pods would all pile onto the node that looks emptiest.
const (
	defaultMilliCPURequest = 100
	defaultMemoryRequest   = 200 << 20
)

// resources is an amount of cpu (millicores) and memory (bytes).
type resources struct {
	milliCPU int64
	memory   int64
}

func (r *resources) add(o resources) {
	r.milliCPU += o.milliCPU
	r.memory += o.memory
}

func (r *resources) sub(o resources) {
	r.milliCPU -= o.milliCPU
	r.memory -= o.memory
}

func maxResources(a, b resources) resources {
	return resources{milliCPU: max(a.milliCPU, b.milliCPU), memory: max(a.memory, b.memory)}
}

// resourceSet records which of cpu and memory a ResourceRequirements mentions.
type resourceSet uint8

const (
	cpuSet resourceSet = 1 << iota
	memorySet
)

// quantity parses a Kubernetes quantity written as a string ("500m") or a number (1),
// the two forms the API server accepts.
func quantity(v *structpb.Value) (resource.Quantity, error) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		q, err := resource.ParseQuantity(k.StringValue)
		if err != nil {
			return resource.Quantity{}, fmt.Errorf("%w %q: %w", ErrInvalidQuantity, k.StringValue, err)
		}
		return q, nil
	case *structpb.Value_NumberValue:
		q, err := resource.ParseQuantity(strconv.FormatFloat(k.NumberValue, 'f', -1, 64))
		if err != nil {
			return resource.Quantity{}, fmt.Errorf("%w %v: %w", ErrInvalidQuantity, k.NumberValue, err)
		}
		return q, nil
	default:
		return resource.Quantity{}, fmt.Errorf("%w: neither a string nor a number", ErrInvalidQuantity)
	}
}

// lookup returns the named quantity of list in the scheduler's units: millicores for
// cpu, whole units (bytes, pods) otherwise. ok is false when list does not name it.
func lookup(list map[string]*structpb.Value, name string) (v int64, ok bool, err error) {
	raw, ok := list[name]
	if !ok {
		return 0, false, nil
	}
	q, err := quantity(raw)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", name, err)
	}
	if name == resourceCPU {
		return q.MilliValue(), true, nil
	}
	return q.Value(), true, nil
}

// requestsOf returns the cpu and memory rr requests. A resource with a limit and no
// request requests its limit, as Kubernetes' defaulting would have set it (Rafter's API
// server does not default requests). set says which of the two rr gives at all.
func requestsOf(rr *corev1.ResourceRequirements) (r resources, set resourceSet, err error) {
	for _, res := range [...]struct {
		name string
		bit  resourceSet
		dst  *int64
	}{{resourceCPU, cpuSet, &r.milliCPU}, {resourceMemory, memorySet, &r.memory}} {
		v, ok, err := lookup(rr.GetRequests(), res.name)
		if err != nil {
			return resources{}, 0, fmt.Errorf("requests: %w", err)
		}
		if !ok {
			if v, ok, err = lookup(rr.GetLimits(), res.name); err != nil {
				return resources{}, 0, fmt.Errorf("limits: %w", err)
			}
		}
		if ok {
			*res.dst = v
			set |= res.bit
		}
	}
	return r, set, nil
}

// withDefaults fills in kube-scheduler's scoring defaults for what set lacks.
func withDefaults(r resources, set resourceSet) resources {
	if set&cpuSet == 0 {
		r.milliCPU = defaultMilliCPURequest
	}
	if set&memorySet == 0 {
		r.memory = defaultMemoryRequest
	}
	return r
}

// podRequests returns what a pod occupies on its node the way kube-scheduler counts it
// (resourcehelper.PodRequests): the sum of its containers' requests, raised to what any
// init container needs while it runs (with the restartable "sidecar" init containers
// started before it), overridden by pod-level spec.resources where given, plus
// spec.overhead. nonZero is the same with the scoring defaults for unset requests.
func podRequests(spec *corev1.PodSpec) (req, nonZero resources, err error) {
	for _, c := range spec.GetContainers() {
		r, set, err := requestsOf(c.GetResources())
		if err != nil {
			return resources{}, resources{}, fmt.Errorf("container %s: %w", c.GetName(), err)
		}
		req.add(r)
		nonZero.add(withDefaults(r, set))
	}
	var initMax, initMaxNZ, sidecars, sidecarsNZ resources
	for _, c := range spec.GetInitContainers() {
		r, set, err := requestsOf(c.GetResources())
		if err != nil {
			return resources{}, resources{}, fmt.Errorf("init container %s: %w", c.GetName(), err)
		}
		nz := withDefaults(r, set)
		if c.GetRestartPolicy() == "Always" {
			// A sidecar runs alongside everything started after it.
			req.add(r)
			nonZero.add(nz)
			sidecars.add(r)
			sidecarsNZ.add(nz)
			r, nz = sidecars, sidecarsNZ
		} else {
			r.add(sidecars)
			nz.add(sidecarsNZ)
		}
		initMax = maxResources(initMax, r)
		initMaxNZ = maxResources(initMaxNZ, nz)
	}
	req = maxResources(req, initMax)
	nonZero = maxResources(nonZero, initMaxNZ)

	podLevel, set, err := requestsOf(spec.GetResources())
	if err != nil {
		return resources{}, resources{}, fmt.Errorf("pod resources: %w", err)
	}
	if set&cpuSet != 0 {
		req.milliCPU, nonZero.milliCPU = podLevel.milliCPU, podLevel.milliCPU
	}
	if set&memorySet != 0 {
		req.memory, nonZero.memory = podLevel.memory, podLevel.memory
	}

	overhead, _, err := requestsOf(&corev1.ResourceRequirements{Requests: spec.GetOverhead()})
	if err != nil {
		return resources{}, resources{}, fmt.Errorf("overhead: %w", err)
	}
	req.add(overhead)
	nonZero.add(overhead)
	return req, nonZero, nil
}

// allocatableOf returns what a node offers pods. As Kubernetes' defaulting does, a
// status without allocatable offers its capacity. A node that states no pods quantity
// admits no pods, as in Kubernetes.
func allocatableOf(st *corev1.NodeStatus) (alloc resources, pods int64, err error) {
	list := st.GetAllocatable()
	if len(list) == 0 {
		list = st.GetCapacity()
	}
	for _, res := range [...]struct {
		name string
		dst  *int64
	}{{resourceCPU, &alloc.milliCPU}, {resourceMemory, &alloc.memory}, {resourcePods, &pods}} {
		v, _, err := lookup(list, res.name)
		if err != nil {
			return resources{}, 0, fmt.Errorf("allocatable: %w", err)
		}
		*res.dst = v
	}
	return alloc, pods, nil
}
