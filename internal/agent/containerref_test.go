package agent

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// TestPodsContainer: what logs and exec find of a pod's containers — the
// current run, the previous one after a restart, the default container, and
// the kubelet's errors.
func TestPodsContainer(t *testing.T) {
	w := newPodsWorld(t, objects{}, nil, nil)
	w.pods.Update(testPod("u1", &corev1.Container{Name: "app", Image: "img:1"}))
	multi := testPod("u2", &corev1.Container{Name: "a", Image: "img:1"}, &corev1.Container{Name: "b", Image: "img:1"})
	multi.Metadata.Name = "multi"
	w.pods.Update(multi)
	logDir := filepath.Join(w.pods.cfg.Root, "logs", "default_web_u1", "app")
	logs := func(restart int) []string {
		p := filepath.Join(logDir, fmt.Sprintf("%d.log", restart))
		return []string{p + ".1", p}
	}
	// want waits until Container finds the run id, running or not.
	want := func(pod, uid, ctr string, previous bool, id string, running bool) ContainerRef {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			ref, err := w.pods.Container("default", pod, uid, ctr, previous)
			if err == nil && ref.ID == id && ref.Running() == running {
				return ref
			}
			if time.Now().After(deadline) {
				t.Fatalf("Container(%s, %q, %q, previous %v) = %+v, %v; want run %s (running %v)", pod, uid, ctr, previous, ref, err, id, running)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if ref := want("web", "", "", false, "u1_app_0", true); !slices.Equal(ref.LogPaths, logs(0)) {
		t.Fatalf("log files %v, want %v", ref.LogPaths, logs(0))
	}
	if _, err := w.pods.Container("default", "web", "", "", true); err == nil || err.Error() != `previous terminated container "app" in pod "web" not found` {
		t.Fatalf("previous before a restart: %v", err)
	}

	w.rt.exit("u1_app_0", 1)
	if ref := want("web", "u1", "app", false, "u1_app_1", true); !slices.Equal(ref.LogPaths, logs(1)) {
		t.Fatalf("log files after the restart %v, want %v", ref.LogPaths, logs(1))
	}
	if ref := want("web", "u1", "app", true, "u1_app_0", false); !slices.Equal(ref.LogPaths, logs(0)) {
		t.Fatalf("previous log files %v, want %v", ref.LogPaths, logs(0))
	}
	want("multi", "u2", "b", false, "u2_b_0", true)

	for _, tc := range []struct {
		pod, uid, ctr string
		want          string // the error's text; "" for ErrNotFound
	}{
		{"nope", "", "", ""},
		{"web", "other-uid", "", ""},
		{"web", "", "nope", "container nope is not valid for pod web"},
		{"multi", "", "", "a container name must be specified for pod multi, choose one of: [a b]"},
	} {
		_, err := w.pods.Container("default", tc.pod, tc.uid, tc.ctr, false)
		if tc.want == "" && !errors.Is(err, ErrNotFound) || tc.want != "" && (err == nil || err.Error() != tc.want) {
			t.Errorf("Container(%s, %q, %q): %v, want %q", tc.pod, tc.uid, tc.ctr, err, tc.want)
		}
	}
}
