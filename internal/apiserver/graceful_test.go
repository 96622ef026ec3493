package apiserver_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/rafter-dev/rafter/internal/testcluster"
)

type podMeta struct {
	Metadata struct {
		DeletionTimestamp          *time.Time `json:"deletionTimestamp"`
		DeletionGracePeriodSeconds *int64     `json:"deletionGracePeriodSeconds"`
		Finalizers                 []string   `json:"finalizers"`
	} `json:"metadata"`
}

// TestPodDeletionIsGraceful: DELETE of a pod a node may run marks it
// (200, deletionTimestamp = now + grace period, deletionGracePeriodSeconds)
// and leaves it readable; a second DELETE may shorten the period but not
// lengthen it; grace period 0 removes it; a pod on no node, or one that
// finished, goes at once.
func TestPodDeletionIsGraceful(t *testing.T) {
	c := testcluster.New(t, 3)
	const podsPath = "/api/v1/namespaces/default/pods"
	create := func(name, node string, grace int) {
		t.Helper()
		body := `{"metadata":{"name":"` + name + `"},"spec":{"nodeName":"` + node + `","terminationGracePeriodSeconds":` +
			jsonInt(grace) + `,"containers":[{"name":"c","image":"busybox"}]}}`
		if code, b, _ := c.Do(0, "POST", podsPath, body); code != 201 {
			t.Fatalf("create %s: %d %s", name, code, b)
		}
	}
	decode := func(b []byte) podMeta {
		t.Helper()
		var m podMeta
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		return m
	}
	expectMarked := func(what string, code int, b []byte, grace int64, from time.Time) time.Time {
		t.Helper()
		m := decode(b)
		md := m.Metadata
		if code != 200 || md.DeletionTimestamp == nil || md.DeletionGracePeriodSeconds == nil || *md.DeletionGracePeriodSeconds != grace {
			t.Fatalf("%s: %d %s; want 200 marked with deletionGracePeriodSeconds %d", what, code, b, grace)
		}
		lo, hi := from.Add(time.Duration(grace)*time.Second-2*time.Second), time.Now().Add(time.Duration(grace)*time.Second+time.Second)
		if md.DeletionTimestamp.Before(lo) || md.DeletionTimestamp.After(hi) {
			t.Fatalf("%s: deletionTimestamp %v, want now + %ds (%v..%v)", what, md.DeletionTimestamp, grace, lo, hi)
		}
		return *md.DeletionTimestamp
	}

	create("web", "n1", 45)
	start := time.Now()
	code, b, _ := c.Do(1, "DELETE", podsPath+"/web", "")
	first := expectMarked("delete", code, b, 45, start)
	code, b, _ = c.Do(2, "GET", podsPath+"/web", "")
	if code != 200 {
		t.Fatalf("a Terminating pod must still be readable: %d %s", code, b)
	}
	expectMarked("get", code, b, 45, start)

	code, b, _ = c.Do(2, "DELETE", podsPath+"/web?gracePeriodSeconds=120", "")
	if got := expectMarked("a longer period", code, b, 45, start); !got.Equal(first) {
		t.Fatalf("a longer grace period moved deletionTimestamp from %v to %v", first, got)
	}
	start = time.Now()
	code, b, _ = c.Do(0, "DELETE", podsPath+"/web", `{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":5}`)
	expectMarked("a shorter period (body)", code, b, 5, start)
	start = time.Now()
	code, b, _ = c.Do(2, "DELETE", podsPath+"/web?gracePeriodSeconds=-3", "")
	expectMarked("a negative period counts as 1", code, b, 1, start)

	if code, b, _ := c.Do(1, "DELETE", podsPath+"/web?gracePeriodSeconds=0", ""); code != 200 {
		t.Fatalf("delete with grace period 0: %d %s", code, b)
	}
	if code, _, _ := c.Do(1, "GET", podsPath+"/web", ""); code != 404 {
		t.Fatalf("pod still there after grace period 0: %d", code)
	}

	create("unscheduled", "", 30)
	if code, b, _ := c.Do(0, "DELETE", podsPath+"/unscheduled", ""); code != 200 {
		t.Fatalf("delete of a pod on no node: %d %s", code, b)
	}
	if code, _, _ := c.Do(0, "GET", podsPath+"/unscheduled", ""); code != 404 {
		t.Fatalf("a pod on no node must go at once: %d", code)
	}

	create("done", "n1", 30)
	if code, b, _ := c.Do(0, "PUT", podsPath+"/done/status",
		`{"metadata":{"name":"done"},"spec":{"nodeName":"n1","containers":[{"name":"c","image":"busybox"}]},"status":{"phase":"Succeeded"}}`); code != 200 {
		t.Fatalf("status: %d %s", code, b)
	}
	if code, b, _ := c.Do(0, "DELETE", podsPath+"/done", ""); code != 200 {
		t.Fatalf("delete of a finished pod: %d %s", code, b)
	}
	if code, _, _ := c.Do(0, "GET", podsPath+"/done", ""); code != 404 {
		t.Fatalf("a finished pod must go at once: %d", code)
	}

	// A finalizer outlasts the grace period: the agent's final delete leaves
	// the pod marked until the finalizer is removed.
	if code, b, _ := c.Do(0, "POST", podsPath, `{"metadata":{"name":"held","finalizers":["example.com/hold"]},`+
		`"spec":{"nodeName":"n1","containers":[{"name":"c","image":"busybox"}]}}`); code != 201 {
		t.Fatalf("create held: %d %s", code, b)
	}
	start = time.Now()
	code, b, _ = c.Do(0, "DELETE", podsPath+"/held", "")
	expectMarked("held", code, b, 30, start)
	if code, b, _ := c.Do(0, "DELETE", podsPath+"/held?gracePeriodSeconds=0", ""); code != 200 {
		t.Fatalf("final delete of a pod with a finalizer: %d %s, want 200", code, b)
	}
	code, b, _ = c.Do(0, "GET", podsPath+"/held", "")
	if m := decode(b); code != 200 || len(m.Metadata.Finalizers) != 1 || m.Metadata.DeletionTimestamp == nil {
		t.Fatalf("held pod after its final delete: %d %s", code, b)
	}
}

func jsonInt(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
