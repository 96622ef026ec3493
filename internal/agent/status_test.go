package agent

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func TestBackoffDoublesToFiveMinutesAndStartsOver(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := NewBackoff(clk)
	var got []time.Duration
	for range 8 {
		got = append(got, b.Failed("pod/app"))
		clk.now = clk.now.Add(time.Second)
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second, 300 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
	finished := clk.now
	clk.now = finished.Add(4 * time.Minute)
	if w := b.Wait("pod/app", finished); w != time.Minute {
		t.Fatalf("Wait = %v, want 1m left of 5m", w)
	}
	if w := b.Wait("other", finished); w != 0 {
		t.Fatalf("Wait of an unknown container = %v", w)
	}
	clk.now = clk.now.Add(11 * time.Minute) // more than twice the maximum since the last failure
	if d := b.Failed("pod/app"); d != 10*time.Second {
		t.Fatalf("after a long healthy run the delay is %v, want 10s again", d)
	}
	b.Forget("pod/app")
	if w := b.Wait("pod/app", clk.now); w != 0 {
		t.Fatalf("Wait after Forget = %v", w)
	}
}

func running() *corev1.ContainerState {
	return &corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
}

func exited(code int32) *corev1.ContainerState {
	return &corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}
}

func waitingAfter(code int32) *corev1.ContainerStatus {
	return &corev1.ContainerStatus{State: &corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastState: exited(code)}
}

func TestPodPhase(t *testing.T) {
	spec := func(policy string, inits ...string) *corev1.PodSpec {
		s := &corev1.PodSpec{RestartPolicy: policy, Containers: []*corev1.Container{{Name: "a"}, {Name: "b"}}}
		for _, n := range inits {
			s.InitContainers = append(s.InitContainers, &corev1.Container{Name: n})
		}
		return s
	}
	st := func(name string, s *corev1.ContainerState) *corev1.ContainerStatus {
		return &corev1.ContainerStatus{Name: name, State: s}
	}
	named := func(name string, s *corev1.ContainerStatus) *corev1.ContainerStatus { s.Name = name; return s }
	wait := &corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	tests := []struct {
		name     string
		spec     *corev1.PodSpec
		inits    []*corev1.ContainerStatus
		statuses []*corev1.ContainerStatus
		want     string
	}{
		{"nothing reported", spec("Always"), nil, nil, PhasePending},
		{"creating", spec("Always"), nil, []*corev1.ContainerStatus{st("a", wait), st("b", running())}, PhasePending},
		{"all running", spec("Always"), nil, []*corev1.ContainerStatus{st("a", running()), st("b", running())}, PhaseRunning},
		{"crash looping is still running", spec("Always"), nil, []*corev1.ContainerStatus{named("a", waitingAfter(1)), st("b", running())}, PhaseRunning},
		{"all done under Always restarts", spec("Always"), nil, []*corev1.ContainerStatus{st("a", exited(0)), st("b", exited(0))}, PhaseRunning},
		{"all succeeded", spec("OnFailure"), nil, []*corev1.ContainerStatus{st("a", exited(0)), st("b", exited(0))}, PhaseSucceeded},
		{"one failed under Never", spec("Never"), nil, []*corev1.ContainerStatus{st("a", exited(0)), st("b", exited(2))}, PhaseFailed},
		{"one failed under OnFailure restarts", spec("OnFailure"), nil, []*corev1.ContainerStatus{st("a", exited(0)), st("b", exited(2))}, PhaseRunning},
		{"init running", spec("Always", "i1"), []*corev1.ContainerStatus{st("i1", running())}, nil, PhasePending},
		{"init failed under Never", spec("Never", "i1"), []*corev1.ContainerStatus{st("i1", exited(1))}, nil, PhaseFailed},
		{"init failed under Always retries", spec("Always", "i1"), []*corev1.ContainerStatus{st("i1", exited(1))}, nil, PhasePending},
		{"init done, containers running", spec("Always", "i1"), []*corev1.ContainerStatus{st("i1", exited(0))},
			[]*corev1.ContainerStatus{st("a", running()), st("b", running())}, PhaseRunning},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PodPhase(tt.spec, tt.inits, tt.statuses); got != tt.want {
				t.Fatalf("phase %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPodConditions(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pod := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "p"},
		Spec: &corev1.PodSpec{InitContainers: []*corev1.Container{{Name: "init"}}, Containers: []*corev1.Container{{Name: "a"}, {Name: "b"}}},
		Status: &corev1.PodStatus{Conditions: []*corev1.PodCondition{
			{Type: CondPodScheduled, Status: "True", LastTransitionTime: timestamppb.New(t0)},
			{Type: CondReady, Status: "False", LastTransitionTime: timestamppb.New(t0)},
		}}}
	inits := []*corev1.ContainerStatus{{Name: "init", State: exited(0)}}
	statuses := []*corev1.ContainerStatus{{Name: "a", Ready: true, State: running()}, {Name: "b", State: running()}}
	now := t0.Add(time.Minute)
	got := PodConditions(pod, inits, statuses, PhaseRunning, now)
	byType := map[string]*corev1.PodCondition{}
	for _, c := range got {
		byType[c.GetType()] = c
	}
	if len(got) != 4 || byType[CondPodScheduled].GetLastTransitionTime().AsTime() != t0 {
		t.Fatalf("conditions %v", got)
	}
	if c := byType[CondInitialized]; c.GetStatus() != "True" || !c.GetLastTransitionTime().AsTime().Equal(now) {
		t.Fatalf("Initialized %v", c)
	}
	if c := byType[CondReady]; c.GetStatus() != "False" || c.GetReason() != "ContainersNotReady" ||
		c.GetMessage() != "containers with unready status: [b]" || !c.GetLastTransitionTime().AsTime().Equal(t0) {
		t.Fatalf("Ready %v (an unchanged status keeps its transition time)", c)
	}
	statuses[1].Ready = true
	got = PodConditions(pod, inits, statuses, PhaseRunning, now)
	for _, c := range got {
		if c.GetStatus() != "True" {
			t.Fatalf("all ready, yet %v", c)
		}
		if c.GetType() == CondReady && !c.GetLastTransitionTime().AsTime().Equal(now) {
			t.Fatalf("Ready changed but kept its old transition time: %v", c)
		}
	}
	got = PodConditions(pod, nil, statuses, PhaseRunning, now)
	for _, c := range got {
		if c.GetType() == CondInitialized && (c.GetStatus() != "False" || c.GetMessage() != "containers with incomplete status: [init]") {
			t.Fatalf("Initialized without init status: %v", c)
		}
	}
}
