package ctrl

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

func TestNamespaceDeletion(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := context.Background()
	nss := corev1.NewNamespacesClient(c.Peers[1].Conn)
	cms := corev1.NewConfigMapsClient(c.Peers[2].Conn)
	svcs := corev1.NewServicesClient(c.Peers[0].Conn)
	if _, err := nss.Create(ctx, &corev1.CreateNamespaceRequest{Body: &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: "team"}}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if _, err := cms.Create(ctx, &corev1.CreateConfigMapRequest{Namespace: "team", Body: &corev1.ConfigMap{Metadata: &metav1.ObjectMeta{Name: name}}}); err != nil {
			t.Fatal(err)
		}
	}
	svc := &corev1.Service{Metadata: &metav1.ObjectMeta{Name: "web"}, Spec: &corev1.ServiceSpec{Ports: []*corev1.ServicePort{{Port: 80}}}}
	if _, err := svcs.Create(ctx, &corev1.CreateServiceRequest{Namespace: "team", Body: svc}); err != nil {
		t.Fatal(err)
	}
	// Another namespace's objects stay.
	if _, err := cms.Create(ctx, &corev1.CreateConfigMapRequest{Namespace: "default", Body: &corev1.ConfigMap{Metadata: &metav1.ObjectMeta{Name: "a"}}}); err != nil {
		t.Fatal(err)
	}
	got, err := nss.Delete(ctx, &metav1.DeleteRequest{Name: "team"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetStatus().GetPhase() != "Terminating" {
		t.Fatalf("phase after delete = %q, want Terminating", got.GetStatus().GetPhase())
	}
	// Record when each object goes: contents must go before the namespace.
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	cmWatch, err := cms.Watch(wctx, &metav1.ListRequest{Namespace: "team", ResourceVersion: got.GetMetadata().GetResourceVersion()})
	if err != nil {
		t.Fatal(err)
	}
	nsWatch, err := nss.Watch(wctx, &metav1.ListRequest{FieldSelector: "metadata.name=team", ResourceVersion: got.GetMetadata().GetResourceVersion()})
	if err != nil {
		t.Fatal(err)
	}
	cmGone := make(chan uint64, 2)
	go func() {
		for {
			ev, err := cmWatch.Recv()
			if err != nil {
				return
			}
			if ev.GetType() == "DELETED" {
				rv, _ := strconv.ParseUint(ev.GetObject().GetMetadata().GetResourceVersion(), 10, 64)
				cmGone <- rv
			}
		}
	}()
	nsGone := make(chan uint64, 1)
	go func() {
		for {
			ev, err := nsWatch.Recv()
			if err != nil {
				return
			}
			if ev.GetType() == "DELETED" {
				rv, _ := strconv.ParseUint(ev.GetObject().GetMetadata().GetResourceVersion(), 10, 64)
				nsGone <- rv
				return
			}
		}
	}()
	startLoops(t, c)
	c.WaitFor(20*time.Second, "namespace team gone", func() bool {
		_, err := nss.Get(ctx, &metav1.GetRequest{Name: "team"})
		return err != nil && strings.Contains(err.Error(), "not found")
	})
	nsRV := <-nsGone
	for range 2 {
		select {
		case rv := <-cmGone:
			if rv >= nsRV {
				t.Errorf("a ConfigMap went at %d, not before its namespace (%d)", rv, nsRV)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("ConfigMap deletions not seen")
		}
	}
	if _, err := cms.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "a"}); err != nil {
		t.Fatalf("a ConfigMap of another namespace went too: %v", err)
	}
	// The namespace can be made again, empty.
	if _, err := nss.Create(ctx, &corev1.CreateNamespaceRequest{Body: &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: "team"}}}); err != nil {
		t.Fatal(err)
	}
	list, err := cms.List(ctx, &metav1.ListRequest{Namespace: "team"})
	if err != nil || len(list.GetItems()) != 0 {
		t.Fatalf("recreated namespace holds %d ConfigMaps (%v)", len(list.GetItems()), err)
	}
}
