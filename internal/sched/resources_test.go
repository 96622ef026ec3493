package sched

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

func TestPodRequests(t *testing.T) {
	ctr := func(requests, limits map[string]*structpb.Value) *corev1.Container {
		return &corev1.Container{Name: "c", Resources: &corev1.ResourceRequirements{Requests: requests, Limits: limits}}
	}
	sidecar := func(c *corev1.Container) *corev1.Container {
		always := "Always"
		c.RestartPolicy = &always
		return c
	}
	const mi = 1 << 20
	tests := []struct {
		name         string
		spec         *corev1.PodSpec
		req, nonZero resources
	}{
		{
			name:    "nothing requested",
			spec:    &corev1.PodSpec{Containers: []*corev1.Container{ctr(nil, nil), ctr(nil, nil)}},
			nonZero: resources{200, 400 * mi},
		},
		{
			name: "containers add up",
			spec: &corev1.PodSpec{Containers: []*corev1.Container{
				ctr(list("cpu", "250m", "memory", "64Mi"), nil), ctr(list("cpu", "1", "memory", "1Gi"), nil)}},
			req: resources{1250, 1088 * mi}, nonZero: resources{1250, 1088 * mi},
		},
		{
			name: "numbers and strings",
			spec: &corev1.PodSpec{Containers: []*corev1.Container{ctr(map[string]*structpb.Value{
				"cpu": structpb.NewNumberValue(0.5), "memory": structpb.NewNumberValue(1000)}, nil)}},
			req: resources{500, 1000}, nonZero: resources{500, 1000},
		},
		{
			name: "limits stand in for missing requests",
			spec: &corev1.PodSpec{Containers: []*corev1.Container{
				ctr(list("cpu", "100m"), list("cpu", "2", "memory", "128Mi"))}},
			req: resources{100, 128 * mi}, nonZero: resources{100, 128 * mi},
		},
		{
			name: "explicit zero is not defaulted for scoring",
			spec: &corev1.PodSpec{Containers: []*corev1.Container{ctr(list("cpu", "0"), nil)}},
			req:  resources{0, 0}, nonZero: resources{0, 200 * mi},
		},
		{
			name: "an init container larger than the sum wins",
			spec: &corev1.PodSpec{
				InitContainers: []*corev1.Container{ctr(list("cpu", "2", "memory", "10Mi"), nil)},
				Containers:     []*corev1.Container{ctr(list("cpu", "500m", "memory", "100Mi"), nil)},
			},
			req: resources{2000, 100 * mi}, nonZero: resources{2000, 100 * mi},
		},
		{
			name: "sidecars run with the containers and later init containers",
			spec: &corev1.PodSpec{
				InitContainers: []*corev1.Container{
					sidecar(ctr(list("cpu", "100m", "memory", "10Mi"), nil)),
					ctr(list("cpu", "1", "memory", "10Mi"), nil),
				},
				Containers: []*corev1.Container{ctr(list("cpu", "200m", "memory", "100Mi"), nil)},
			},
			// max(100m+200m, 100m+1) cpu; max(10Mi+100Mi, 10Mi+10Mi) memory.
			req: resources{1100, 110 * mi}, nonZero: resources{1100, 110 * mi},
		},
		{
			name: "pod-level requests override the containers",
			spec: &corev1.PodSpec{
				Resources:  &corev1.ResourceRequirements{Requests: list("cpu", "3")},
				Containers: []*corev1.Container{ctr(list("cpu", "1", "memory", "1Mi"), nil)},
			},
			req: resources{3000, 1 * mi}, nonZero: resources{3000, 1 * mi},
		},
		{
			name: "overhead is added",
			spec: &corev1.PodSpec{
				Overhead:   list("cpu", "250m", "memory", "120Mi"),
				Containers: []*corev1.Container{ctr(list("cpu", "1", "memory", "1Gi"), nil)},
			},
			req: resources{1250, 1144 * mi}, nonZero: resources{1250, 1144 * mi},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, nonZero, err := podRequests(tc.spec)
			if err != nil {
				t.Fatalf("podRequests: %v", err)
			}
			if req != tc.req || nonZero != tc.nonZero {
				t.Errorf("podRequests = %+v, %+v; want %+v, %+v", req, nonZero, tc.req, tc.nonZero)
			}
		})
	}
}

func TestInvalidQuantities(t *testing.T) {
	tests := []struct {
		name string
		run  func() error
	}{
		{"pod request", func() error {
			_, _, err := podRequests(&corev1.PodSpec{Containers: []*corev1.Container{
				{Resources: &corev1.ResourceRequirements{Requests: list("cpu", "lots")}}}})
			return err
		}},
		{"pod limit", func() error {
			_, _, err := podRequests(&corev1.PodSpec{Containers: []*corev1.Container{
				{Resources: &corev1.ResourceRequirements{Limits: list("memory", "1Zz")}}}})
			return err
		}},
		{"not a string or number", func() error {
			_, _, err := podRequests(&corev1.PodSpec{Overhead: map[string]*structpb.Value{"cpu": structpb.NewBoolValue(true)}})
			return err
		}},
		{"node allocatable", func() error {
			_, _, err := allocatableOf(&corev1.NodeStatus{Allocatable: list("pods", "many")})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); !errors.Is(err, ErrInvalidQuantity) {
				t.Errorf("err = %v, want ErrInvalidQuantity", err)
			}
		})
	}
}

func TestAllocatableOf(t *testing.T) {
	tests := []struct {
		name   string
		status *corev1.NodeStatus
		alloc  resources
		pods   int64
	}{
		{"allocatable", &corev1.NodeStatus{
			Capacity:    list("cpu", "8", "memory", "16Gi", "pods", "110"),
			Allocatable: list("cpu", "7500m", "memory", "15Gi", "pods", "100"),
		}, resources{7500, 15 << 30}, 100},
		{"capacity when allocatable is unset", &corev1.NodeStatus{
			Capacity: list("cpu", "8", "memory", "16Gi", "pods", "110"),
		}, resources{8000, 16 << 30}, 110},
		{"missing quantities offer nothing", &corev1.NodeStatus{Allocatable: list("cpu", "2")}, resources{2000, 0}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			alloc, pods, err := allocatableOf(tc.status)
			if err != nil {
				t.Fatalf("allocatableOf: %v", err)
			}
			if alloc != tc.alloc || pods != tc.pods {
				t.Errorf("allocatableOf = %+v, %d; want %+v, %d", alloc, pods, tc.alloc, tc.pods)
			}
		})
	}
}
