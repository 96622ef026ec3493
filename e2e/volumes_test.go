package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// volumeManifest is a statically provisioned volume of class local.
func volumeManifest(name, size string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: %s}
spec:
  storageClassName: local
  capacity: {storage: %s}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /srv/rafter/%s}
`, name, size, name)
}

// claimManifest is a claim in default asking for size of class local.
func claimManifest(name, size string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %s, namespace: default}
spec:
  storageClassName: local
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: %s}}
`, name, size)
}

// TestVolumeBindingOverRealPeers: the leader's binder gives a claim the
// smallest volume that fits, leaves a claim nothing fits Pending with a
// FailedBinding event, and binds it once a big enough volume appears.
func TestVolumeBindingOverRealPeers(t *testing.T) {
	c := newCluster(t, 3)
	ctx := context.Background()
	pvs := corev1.NewPersistentVolumesClient(c.conn(1))
	pvcs := corev1.NewPersistentVolumeClaimsClient(c.conn(2))
	events := corev1.NewEventsClient(c.conn(0))
	apply := func(manifest string) {
		t.Helper()
		if out, errOut, err := c.ctlRun(manifest, "apply", "-f", "-"); err != nil {
			t.Fatalf("apply: %v\n%s%s", err, out, errOut)
		}
	}
	// boundTo checks that claim and volume are Bound to each other.
	boundTo := func(claim, volume, capacity string) func() error {
		return func() error {
			pvc, err := pvcs.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: claim})
			if err != nil {
				return err
			}
			pv, err := pvs.Get(ctx, &metav1.GetRequest{Name: volume})
			if err != nil {
				return err
			}
			ref := pv.GetSpec().GetClaimRef()
			switch {
			case pvc.GetSpec().GetVolumeName() != volume || pvc.GetStatus().GetPhase() != "Bound":
				return fmt.Errorf("claim %s: volume %q phase %q", claim, pvc.GetSpec().GetVolumeName(), pvc.GetStatus().GetPhase())
			case ref.GetName() != claim || ref.GetNamespace() != "default" || ref.GetUid() != pvc.GetMetadata().GetUid() || pv.GetStatus().GetPhase() != "Bound":
				return fmt.Errorf("volume %s: claimRef %v phase %q", volume, ref, pv.GetStatus().GetPhase())
			case pvc.GetStatus().GetCapacity()["storage"].GetStringValue() != capacity:
				return fmt.Errorf("claim %s: status.capacity %v, want %s", claim, pvc.GetStatus().GetCapacity(), capacity)
			case pvc.GetMetadata().GetAnnotations()["pv.kubernetes.io/bind-completed"] != "yes":
				return fmt.Errorf("claim %s: annotations %v", claim, pvc.GetMetadata().GetAnnotations())
			}
			return nil
		}
	}

	apply(volumeManifest("pv-1g", "1Gi") + "---\n" + volumeManifest("pv-5g", "5Gi") + "---\n" + claimManifest("small", "2Gi"))
	c.eventually(30*time.Second, "small bound to pv-5g", boundTo("small", "pv-5g", "5Gi"))
	c.eventually(10*time.Second, "pv-1g Available", func() error {
		pv, err := pvs.Get(ctx, &metav1.GetRequest{Name: "pv-1g"})
		if err != nil {
			return err
		}
		if pv.GetStatus().GetPhase() != "Available" || pv.GetSpec().GetClaimRef() != nil {
			return fmt.Errorf("phase %q claimRef %v", pv.GetStatus().GetPhase(), pv.GetSpec().GetClaimRef())
		}
		return nil
	})

	apply(claimManifest("big", "10Gi"))
	big, err := pvcs.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "big"})
	if err != nil {
		t.Fatal(err)
	}
	want := `storageclass.storage.k8s.io "local" not found` // no StorageClass local exists, as in Kubernetes
	c.eventually(30*time.Second, "a FailedBinding event for big", func() error {
		list, err := events.List(ctx, &metav1.ListRequest{Namespace: "default"})
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range list.GetItems() {
			o := e.GetInvolvedObject()
			if o.GetKind() != "PersistentVolumeClaim" || o.GetName() != "big" {
				continue
			}
			seen = append(seen, e.GetType()+" "+e.GetReason()+": "+e.GetMessage())
			if e.GetReason() == "FailedBinding" && e.GetType() == "Normal" && e.GetMessage() == want &&
				o.GetNamespace() == "default" && o.GetUid() == big.GetMetadata().GetUid() &&
				e.GetSource().GetComponent() == "persistentvolume-controller" {
				return nil
			}
		}
		return fmt.Errorf("events about big: %q", seen)
	})
	big, err = pvcs.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "big"})
	if err != nil || big.GetStatus().GetPhase() != "Pending" || big.GetSpec().GetVolumeName() != "" {
		t.Fatalf("big: phase %q volume %q (%v)", big.GetStatus().GetPhase(), big.GetSpec().GetVolumeName(), err)
	}

	apply(volumeManifest("pv-20g", "20Gi"))
	c.eventually(30*time.Second, "big bound to pv-20g", boundTo("big", "pv-20g", "20Gi"))
	if err := boundTo("small", "pv-5g", "5Gi")(); err != nil {
		t.Fatalf("the first binding changed: %v", err)
	}
}
