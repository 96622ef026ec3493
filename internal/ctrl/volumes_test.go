package ctrl

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	storagev1 "github.com/rafter-dev/rafter/gen/rafter/storage/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

var vbNow = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

type vbPVOpt func(*corev1.PersistentVolume)

// vbPV is an Available, ReadWriteOnce, Retain volume of the given size and
// class.
func vbPV(name, size, class string, opts ...vbPVOpt) *corev1.PersistentVolume {
	v := &corev1.PersistentVolume{ApiVersion: "v1", Kind: "PersistentVolume",
		Metadata: &metav1.ObjectMeta{Name: name, Uid: "uid-pv-" + name, ResourceVersion: "10"},
		Spec: &corev1.PersistentVolumeSpec{Capacity: map[string]*structpb.Value{"storage": structpb.NewStringValue(size)},
			AccessModes: []string{"ReadWriteOnce"}, StorageClassName: class, PersistentVolumeReclaimPolicy: "Retain",
			VolumeMode: proto.String("Filesystem"), HostPath: &corev1.HostPathVolumeSource{Path: "/srv/" + name}},
		Status: &corev1.PersistentVolumeStatus{Phase: pvAvailable}}
	for _, o := range opts {
		o(v)
	}
	return v
}

func vbModes(modes ...string) vbPVOpt {
	return func(v *corev1.PersistentVolume) { v.Spec.AccessModes = modes }
}

func vbPhase(phase string) vbPVOpt {
	return func(v *corev1.PersistentVolume) { v.Status.Phase = phase }
}

func vbPolicy(p string) vbPVOpt {
	return func(v *corev1.PersistentVolume) { v.Spec.PersistentVolumeReclaimPolicy = p }
}

// vbClaimRef sets the volume's claimRef to default/claim with uid ("" for a
// pre-binding), marked as set by the controller when byController.
func vbClaimRef(claim, uid string, byController bool) vbPVOpt {
	return func(v *corev1.PersistentVolume) {
		v.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", ApiVersion: "v1", Namespace: "default", Name: claim, Uid: uid}
		if byController {
			v.Metadata.Annotations = map[string]string{AnnBoundByController: "yes"}
		}
	}
}

type vbPVCOpt func(*corev1.PersistentVolumeClaim)

// vbPVC is a Pending ReadWriteOnce claim in default of the given request and
// class (nil: unset).
func vbPVC(name, size string, class *string, opts ...vbPVCOpt) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{ApiVersion: "v1", Kind: "PersistentVolumeClaim",
		Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default", Uid: "uid-" + name, ResourceVersion: "20",
			CreationTimestamp: timestamppb.New(vbNow.Add(-time.Hour))},
		Spec: &corev1.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteOnce"}, StorageClassName: class,
			Resources:  &corev1.VolumeResourceRequirements{Requests: map[string]*structpb.Value{"storage": structpb.NewStringValue(size)}},
			VolumeMode: proto.String("Filesystem")},
		Status: &corev1.PersistentVolumeClaimStatus{Phase: claimPending}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// vbBoundClaim is a claim the controller bound to volume (phase Bound).
func vbBoundClaim(name, volume string) *corev1.PersistentVolumeClaim {
	return vbPVC(name, "1Gi", proto.String("local"), func(c *corev1.PersistentVolumeClaim) {
		c.Spec.VolumeName = volume
		c.Metadata.Annotations = map[string]string{AnnBindCompleted: "yes", AnnBoundByController: "yes"}
		c.Status = &corev1.PersistentVolumeClaimStatus{Phase: claimBound, AccessModes: []string{"ReadWriteOnce"},
			Capacity: map[string]*structpb.Value{"storage": structpb.NewStringValue("1Gi")}}
	})
}

func vbClass(name string, isDefault bool, created time.Time) *storagev1.StorageClass {
	sc := &storagev1.StorageClass{Metadata: &metav1.ObjectMeta{Name: name, CreationTimestamp: timestamppb.New(created)},
		Provisioner: "kubernetes.io/no-provisioner"}
	if isDefault {
		sc.Metadata.Annotations = map[string]string{AnnDefaultStorageClass: "true"}
	}
	return sc
}

// vbSummary renders actions one line per write group and event:
//
//	pv NAME [delete] [spec(claim=NS/NAME|-)] [status=PHASE] [ifClaimGone=NS/NAME]
//	pvc NS/NAME [spec(volume=V)] [status=PHASE] [ifVolumeGone=V]
//	event KIND NAME TYPE REASON: MESSAGE
func vbSummary(acts VolumeActions) string {
	var lines []string
	for _, ch := range acts.Changes {
		if v := ch.Volume; v != nil && (ch.UpdateVolume || ch.UpdateVolumeStatus || ch.DeleteVolume) {
			l := "pv " + v.GetMetadata().GetName()
			if ch.DeleteVolume {
				l += " delete"
			}
			if ch.UpdateVolume {
				claim := "-"
				if r := v.GetSpec().GetClaimRef(); r != nil {
					claim = r.GetNamespace() + "/" + r.GetName()
				}
				l += " spec(claim=" + claim + ")"
			}
			if ch.UpdateVolumeStatus {
				l += " status=" + v.GetStatus().GetPhase()
			}
			if r := ch.RequireClaimGone; r != nil {
				l += " ifClaimGone=" + r.GetNamespace() + "/" + r.GetName()
			}
			lines = append(lines, l)
		}
		if c := ch.Claim; c != nil && (ch.UpdateClaim || ch.UpdateClaimStatus) {
			l := "pvc " + KeyOf(c)
			if ch.UpdateClaim {
				l += " spec(volume=" + c.GetSpec().GetVolumeName() + ")"
			}
			if ch.UpdateClaimStatus {
				l += " status=" + c.GetStatus().GetPhase()
			}
			if ch.RequireVolumeGone != "" {
				l += " ifVolumeGone=" + ch.RequireVolumeGone
			}
			lines = append(lines, l)
		}
		for _, e := range ch.Events {
			lines = append(lines, fmt.Sprintf("event %s %s %s %s: %s", e.Object.GetKind(), e.Object.GetName(), e.Type, e.Reason, e.Message))
		}
	}
	return strings.Join(lines, "\n")
}

// vbBoundVolume returns the volume the actions bind claim default/name to,
// or "".
func vbBoundVolume(acts VolumeActions, name string) string {
	for _, ch := range acts.Changes {
		if ch.Claim.GetMetadata().GetName() == name && ch.UpdateClaim {
			return ch.Claim.GetSpec().GetVolumeName()
		}
	}
	return ""
}

// vbEvents returns "TYPE REASON: MESSAGE" of every event about object name.
func vbEvents(acts VolumeActions, name string) []string {
	var out []string
	for _, ch := range acts.Changes {
		for _, e := range ch.Events {
			if e.Object.GetName() == name {
				out = append(out, e.Type+" "+e.Reason+": "+e.Message)
			}
		}
	}
	return out
}

func TestReconcileVolumeBindingMatches(t *testing.T) {
	local := proto.String("local")
	sel := func(s *metav1.LabelSelector) vbPVCOpt {
		return func(c *corev1.PersistentVolumeClaim) { c.Spec.Selector = s }
	}
	labelled := func(l map[string]string) vbPVOpt {
		return func(v *corev1.PersistentVolume) { v.Metadata.Labels = l }
	}
	for _, tc := range []struct {
		name    string
		pvs     []*corev1.PersistentVolume
		claim   *corev1.PersistentVolumeClaim
		classes []*storagev1.StorageClass
		want    string // the volume bound, or "" for none
		event   string // the claim's events, when none is bound
	}{
		{name: "smallest that fits wins",
			pvs:   []*corev1.PersistentVolume{vbPV("a-10g", "10Gi", "local"), vbPV("b-1g", "1Gi", "local"), vbPV("c-5g", "5Gi", "local"), vbPV("d-3g", "3Gi", "local")},
			claim: vbPVC("c", "2Gi", local), want: "d-3g"},
		{name: "equal size fits",
			pvs:   []*corev1.PersistentVolume{vbPV("a", "2048Mi", "local"), vbPV("b", "3Gi", "local")},
			claim: vbPVC("c", "2Gi", local), want: "a"},
		{name: "capacity written as a number",
			pvs:   []*corev1.PersistentVolume{vbPV("a", "1Gi", "local", func(v *corev1.PersistentVolume) { v.Spec.Capacity["storage"] = structpb.NewNumberValue(5 << 30) })},
			claim: vbPVC("c", "2Gi", local), want: "a"},
		{name: "equal size and modes: lowest name",
			pvs:   []*corev1.PersistentVolume{vbPV("b", "5Gi", "local"), vbPV("a", "5Gi", "local"), vbPV("c", "5Gi", "local")},
			claim: vbPVC("c", "1Gi", local), want: "a"},
		{name: "class must match",
			pvs:   []*corev1.PersistentVolume{vbPV("fast", "2Gi", "fast"), vbPV("none", "2Gi", ""), vbPV("local", "9Gi", "local")},
			claim: vbPVC("c", "1Gi", local), want: "local"},
		{name: "class in the beta annotation wins over spec",
			pvs: []*corev1.PersistentVolume{vbPV("a", "2Gi", "local"), vbPV("b", "3Gi", "fast")},
			claim: vbPVC("c", "1Gi", local, func(c *corev1.PersistentVolumeClaim) {
				c.Metadata.Annotations = map[string]string{annBetaStorageClass: "fast"}
			}), want: "b"},
		{name: "empty class matches only volumes without class",
			pvs:   []*corev1.PersistentVolume{vbPV("classed", "1Gi", "local"), vbPV("plain", "8Gi", "")},
			claim: vbPVC("c", "1Gi", proto.String("")), classes: []*storagev1.StorageClass{vbClass("local", true, vbNow)}, want: "plain"},
		{name: "unset class without a default matches volumes without class",
			pvs:   []*corev1.PersistentVolume{vbPV("classed", "1Gi", "local"), vbPV("plain", "8Gi", "")},
			claim: vbPVC("c", "1Gi", nil), classes: []*storagev1.StorageClass{vbClass("local", false, vbNow)}, want: "plain"},
		{name: "unset class takes the default class",
			pvs:   []*corev1.PersistentVolume{vbPV("classed", "8Gi", "local"), vbPV("plain", "1Gi", "")},
			claim: vbPVC("c", "1Gi", nil), classes: []*storagev1.StorageClass{vbClass("local", true, vbNow), vbClass("other", false, vbNow)}, want: "classed"},
		{name: "the newest of two defaults",
			pvs:   []*corev1.PersistentVolume{vbPV("old", "1Gi", "old"), vbPV("new", "8Gi", "new")},
			claim: vbPVC("c", "1Gi", nil), classes: []*storagev1.StorageClass{
				vbClass("old", true, vbNow.Add(-time.Hour)), vbClass("new", true, vbNow)}, want: "new"},
		{name: "the beta default annotation counts",
			pvs:   []*corev1.PersistentVolume{vbPV("classed", "8Gi", "local"), vbPV("plain", "1Gi", "")},
			claim: vbPVC("c", "1Gi", nil), classes: []*storagev1.StorageClass{func() *storagev1.StorageClass {
				sc := vbClass("local", false, vbNow)
				sc.Metadata.Annotations = map[string]string{annBetaDefaultStorageClass: "true"}
				return sc
			}()}, want: "classed"},
		{name: "access modes must be a superset",
			pvs: []*corev1.PersistentVolume{vbPV("rwo", "1Gi", "local"), vbPV("rox", "2Gi", "local", vbModes("ReadOnlyMany")),
				vbPV("both", "3Gi", "local", vbModes("ReadOnlyMany", "ReadWriteOnce"))},
			claim: vbPVC("c", "1Gi", local, func(c *corev1.PersistentVolumeClaim) { c.Spec.AccessModes = []string{"ReadWriteOnce", "ReadOnlyMany"} }),
			want:  "both"},
		{name: "fewest access modes before smallest",
			pvs:   []*corev1.PersistentVolume{vbPV("wide", "1Gi", "local", vbModes("ReadWriteOnce", "ReadWriteMany")), vbPV("narrow", "5Gi", "local")},
			claim: vbPVC("c", "1Gi", local), want: "narrow"},
		{name: "selector matchLabels",
			pvs:   []*corev1.PersistentVolume{vbPV("slow", "1Gi", "local", labelled(map[string]string{"tier": "slow"})), vbPV("fast", "5Gi", "local", labelled(map[string]string{"tier": "fast", "zone": "a"}))},
			claim: vbPVC("c", "1Gi", local, sel(&metav1.LabelSelector{MatchLabels: map[string]string{"tier": "fast"}})), want: "fast"},
		{name: "selector matchExpressions",
			pvs: []*corev1.PersistentVolume{vbPV("a", "1Gi", "local", labelled(map[string]string{"zone": "a"})), vbPV("b", "2Gi", "local", labelled(map[string]string{"zone": "b"})),
				vbPV("c", "3Gi", "local", labelled(map[string]string{"zone": "c", "legacy": "yes"})), vbPV("d", "4Gi", "local", labelled(map[string]string{"zone": "c"}))},
			claim: vbPVC("c", "1Gi", local, sel(&metav1.LabelSelector{MatchExpressions: []*metav1.LabelSelectorRequirement{
				{Key: "zone", Operator: "NotIn", Values: []string{"a", "b"}}, {Key: "legacy", Operator: "DoesNotExist"}}})),
			want: "d"},
		{name: "empty selector selects every volume",
			pvs:   []*corev1.PersistentVolume{vbPV("a", "1Gi", "local")},
			claim: vbPVC("c", "1Gi", local, sel(&metav1.LabelSelector{})), want: "a"},
		{name: "volume mode must be equal, unset meaning Filesystem",
			pvs: []*corev1.PersistentVolume{vbPV("block", "1Gi", "local", func(v *corev1.PersistentVolume) { v.Spec.VolumeMode = proto.String("Block") }),
				vbPV("fs-unset", "5Gi", "local", func(v *corev1.PersistentVolume) { v.Spec.VolumeMode = nil })},
			claim: vbPVC("c", "1Gi", local, func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeMode = nil }), want: "fs-unset"},
		{name: "block claim gets a block volume",
			pvs: []*corev1.PersistentVolume{vbPV("block", "5Gi", "local", func(v *corev1.PersistentVolume) { v.Spec.VolumeMode = proto.String("Block") }),
				vbPV("fs", "1Gi", "local")},
			claim: vbPVC("c", "1Gi", local, func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeMode = proto.String("Block") }), want: "block"},
		{name: "a volume claimed by another claim is skipped",
			pvs:   []*corev1.PersistentVolume{vbPV("theirs", "1Gi", "local", vbClaimRef("other", "", false)), vbPV("free", "5Gi", "local")},
			claim: vbPVC("c", "1Gi", local), want: "free"},
		{name: "pre-bound to this claim wins, whatever its class, labels and phase",
			pvs: []*corev1.PersistentVolume{vbPV("free", "1Gi", "local"),
				vbPV("mine", "50Gi", "other", vbClaimRef("c", "", false), vbPhase(pvReleased), labelled(map[string]string{"x": "y"}))},
			claim: vbPVC("c", "1Gi", local, sel(&metav1.LabelSelector{MatchLabels: map[string]string{"tier": "fast"}})), want: "mine"},
		{name: "pre-bound to this claim must still be big enough",
			pvs:   []*corev1.PersistentVolume{vbPV("mine", "1Gi", "local", vbClaimRef("c", "", false)), vbPV("free", "5Gi", "local")},
			claim: vbPVC("c", "2Gi", local), want: "free"},
		{name: "pre-bound to an earlier claim of that name is skipped",
			pvs:   []*corev1.PersistentVolume{vbPV("old", "1Gi", "local", vbClaimRef("c", "uid-old-c", false), vbPhase(pvReleased)), vbPV("free", "5Gi", "local")},
			claim: vbPVC("c", "1Gi", local), want: "free"},
		{name: "volumes being deleted or not Available are skipped",
			pvs: []*corev1.PersistentVolume{vbPV("deleting", "1Gi", "local", func(v *corev1.PersistentVolume) { v.Metadata.DeletionTimestamp = timestamppb.New(vbNow) }),
				vbPV("failed", "1Gi", "local", vbPhase(pvFailed), vbClaimRef("x", "uid-x", false)), vbPV("ok", "5Gi", "local")},
			claim: vbPVC("c", "1Gi", local), want: "ok"},
		{name: "a new volume (Pending) is made Available and bound in one pass",
			pvs:   []*corev1.PersistentVolume{vbPV("new", "1Gi", "local", vbPhase("Pending"))},
			claim: vbPVC("c", "1Gi", local), want: "new"},
		{name: "an unreadable capacity is skipped",
			pvs: []*corev1.PersistentVolume{vbPV("bad", "lots", "local"), vbPV("none", "1Gi", "local", func(v *corev1.PersistentVolume) { v.Spec.Capacity = nil }),
				vbPV("ok", "5Gi", "local")},
			claim: vbPVC("c", "1Gi", local), want: "ok"},
		{name: "no request asks for nothing",
			pvs:   []*corev1.PersistentVolume{vbPV("a", "1Gi", "local")},
			claim: vbPVC("c", "1Gi", local, func(c *corev1.PersistentVolumeClaim) { c.Spec.Resources = nil }), want: "a"},

		{name: "none, no class",
			pvs:   []*corev1.PersistentVolume{vbPV("small", "1Gi", ""), vbPV("classed", "9Gi", "local")},
			claim: vbPVC("c", "2Gi", proto.String("")),
			event: "Normal FailedBinding: no persistent volumes available for this claim and no storage class is set"},
		{name: "none, unset class and no default",
			claim: vbPVC("c", "2Gi", nil),
			event: "Normal FailedBinding: no persistent volumes available for this claim and no storage class is set"},
		{name: "none, class that does not exist",
			pvs:   []*corev1.PersistentVolume{vbPV("small", "1Gi", "local")},
			claim: vbPVC("c", "2Gi", local),
			event: `Normal FailedBinding: storageclass.storage.k8s.io "local" not found`},
		{name: "none, class that exists",
			pvs:   []*corev1.PersistentVolume{vbPV("small", "1Gi", "local")},
			claim: vbPVC("c", "2Gi", local), classes: []*storagev1.StorageClass{vbClass("local", false, vbNow)},
			event: `Normal FailedBinding: no persistent volumes available for this claim in storage class "local"`},
		{name: "none, unset class names the default",
			claim: vbPVC("c", "2Gi", nil), classes: []*storagev1.StorageClass{vbClass("std", true, vbNow)},
			event: `Normal FailedBinding: no persistent volumes available for this claim in storage class "std"`},
		{name: "none, unreadable request",
			pvs:   []*corev1.PersistentVolume{vbPV("a", "1Gi", "local")},
			claim: vbPVC("c", "a lot", local),
			event: `Warning FailedBinding: spec.resources.requests.storage: invalid quantity "a lot": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`},
		{name: "none, invalid selector",
			pvs: []*corev1.PersistentVolume{vbPV("a", "1Gi", "local")},
			claim: vbPVC("c", "1Gi", local, sel(&metav1.LabelSelector{MatchExpressions: []*metav1.LabelSelectorRequirement{
				{Key: "zone", Operator: "Near"}}})),
			event: `Warning FailedBinding: spec.selector: "Near" is not a valid label selector operator`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acts := ReconcileVolumeBinding(tc.pvs, []*corev1.PersistentVolumeClaim{tc.claim}, tc.classes, vbNow)
			if got := vbBoundVolume(acts, "c"); got != tc.want {
				t.Fatalf("bound to %q, want %q\n%s", got, tc.want, vbSummary(acts))
			}
			var claimEvents []string
			if tc.event != "" {
				claimEvents = []string{tc.event}
			}
			if got := vbEvents(acts, "c"); !slices.Equal(got, claimEvents) {
				t.Fatalf("claim events %q, want %q", got, claimEvents)
			}
			if tc.want == "" {
				for _, ch := range acts.Changes {
					if ch.Claim != nil && (ch.UpdateClaim || ch.UpdateClaimStatus) {
						t.Fatalf("an unmatched Pending claim is written:\n%s", vbSummary(acts))
					}
				}
			}
		})
	}
}

func TestReconcileVolumeBindingBinds(t *testing.T) {
	pv := vbPV("pv-5g", "5Gi", "local", vbModes("ReadWriteOnce", "ReadOnlyMany"))
	pvc := vbPVC("data", "2Gi", proto.String("local"))
	pvBefore, pvcBefore := proto.Clone(pv), proto.Clone(pvc)
	acts := ReconcileVolumeBinding([]*corev1.PersistentVolume{pv}, []*corev1.PersistentVolumeClaim{pvc}, nil, vbNow)
	if !proto.Equal(pv, pvBefore) || !proto.Equal(pvc, pvcBefore) {
		t.Fatal("inputs were modified")
	}
	if len(acts.Changes) != 1 {
		t.Fatalf("want one change binding both:\n%s", vbSummary(acts))
	}
	ch := acts.Changes[0]
	if !ch.UpdateVolume || !ch.UpdateVolumeStatus || ch.DeleteVolume || !ch.UpdateClaim || !ch.UpdateClaimStatus ||
		ch.RequireClaimGone != nil || ch.RequireVolumeGone != "" || len(ch.Events) != 0 {
		t.Fatalf("flags: %+v", ch)
	}
	wantPV := proto.Clone(pv).(*corev1.PersistentVolume)
	wantPV.Metadata.Annotations = map[string]string{AnnBoundByController: "yes"}
	wantPV.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", ApiVersion: "v1", Namespace: "default",
		Name: "data", Uid: "uid-data", ResourceVersion: "20"}
	wantPV.Status = &corev1.PersistentVolumeStatus{Phase: pvBound, LastPhaseTransitionTime: timestamppb.New(vbNow)}
	if !proto.Equal(ch.Volume, wantPV) {
		t.Errorf("volume:\n%v\nwant\n%v", ch.Volume, wantPV)
	}
	wantPVC := proto.Clone(pvc).(*corev1.PersistentVolumeClaim)
	wantPVC.Metadata.Annotations = map[string]string{AnnBindCompleted: "yes", AnnBoundByController: "yes"}
	wantPVC.Spec.VolumeName = "pv-5g"
	wantPVC.Status = &corev1.PersistentVolumeClaimStatus{Phase: claimBound, AccessModes: []string{"ReadWriteOnce", "ReadOnlyMany"},
		Capacity: map[string]*structpb.Value{"storage": structpb.NewStringValue("5Gi")}}
	if !proto.Equal(ch.Claim, wantPVC) {
		t.Errorf("claim:\n%v\nwant\n%v", ch.Claim, wantPVC)
	}

	// Once both writes landed, nothing is left to do.
	if again := ReconcileVolumeBinding([]*corev1.PersistentVolume{ch.Volume}, []*corev1.PersistentVolumeClaim{ch.Claim}, nil, vbNow.Add(time.Minute)); len(again.Changes) != 0 {
		t.Fatalf("a bound pair is written again:\n%s", vbSummary(again))
	}

	// A claim with storageClassName unset bound through the default class
	// gets the class written, as admission would have.
	unset := vbPVC("data", "2Gi", nil)
	acts = ReconcileVolumeBinding([]*corev1.PersistentVolume{pv}, []*corev1.PersistentVolumeClaim{unset}, []*storagev1.StorageClass{vbClass("local", true, vbNow)}, vbNow)
	if len(acts.Changes) != 1 || acts.Changes[0].Claim.GetSpec().StorageClassName == nil || acts.Changes[0].Claim.GetSpec().GetStorageClassName() != "local" {
		t.Fatalf("default class not written: %v", acts.Changes)
	}
}

// TestReconcileVolumeBindingResumes covers a crash between the writes of a
// binding: each state left behind is finished by the next reconcile.
func TestReconcileVolumeBindingResumes(t *testing.T) {
	local := proto.String("local")
	claimAnnotated := func(c *corev1.PersistentVolumeClaim) {
		c.Spec.VolumeName = "pv"
		c.Metadata.Annotations = map[string]string{AnnBindCompleted: "yes", AnnBoundByController: "yes"}
	}
	for _, tc := range []struct {
		name string
		pv   *corev1.PersistentVolume
		pvc  *corev1.PersistentVolumeClaim
		want string
	}{
		{"after the volume's claimRef", vbPV("pv", "5Gi", "local", vbClaimRef("data", "uid-data", true)), vbPVC("data", "1Gi", local),
			"pv pv status=Bound\npvc default/data spec(volume=pv) status=Bound"},
		{"after the volume's phase", vbPV("pv", "5Gi", "local", vbClaimRef("data", "uid-data", true), vbPhase(pvBound)), vbPVC("data", "1Gi", local),
			"pvc default/data spec(volume=pv) status=Bound"},
		{"after the claim's spec", vbPV("pv", "5Gi", "local", vbClaimRef("data", "uid-data", true), vbPhase(pvBound)), vbPVC("data", "1Gi", local, claimAnnotated),
			"pvc default/data status=Bound"},
		{"a bound claim whose volume lost its claimRef takes it back", vbPV("pv", "5Gi", "local", vbPhase(pvBound)), vbBoundClaim("data", "pv"),
			"pv pv spec(claim=default/data) status=Bound\npvc default/data status=Bound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acts := ReconcileVolumeBinding([]*corev1.PersistentVolume{tc.pv}, []*corev1.PersistentVolumeClaim{tc.pvc}, nil, vbNow)
			if got := vbSummary(acts); got != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestReconcileVolumeBindingLifecycle(t *testing.T) {
	local := proto.String("local")
	for _, tc := range []struct {
		name string
		pvs  []*corev1.PersistentVolume
		pvcs []*corev1.PersistentVolumeClaim
		want string
	}{
		{"a new volume becomes Available", []*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbPhase("Pending"))}, nil,
			"pv pv status=Available"},
		{"a volume pre-bound to a missing claim becomes Available", []*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbClaimRef("later", "", false), vbPhase("Pending"))}, nil,
			"pv pv status=Available"},
		{"a Released volume whose claimRef was removed becomes Available", []*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbPhase(pvReleased))}, nil,
			"pv pv status=Available"},
		{"claim deleted, Retain: Released", []*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbClaimRef("gone", "uid-gone", true), vbPhase(pvBound))}, nil,
			"pv pv status=Released ifClaimGone=default/gone"},
		{"claim deleted, no policy: as Retain", []*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbClaimRef("gone", "uid-gone", true), vbPhase(pvBound), vbPolicy(""))}, nil,
			"pv pv status=Released ifClaimGone=default/gone"},
		{"claim deleted and recreated: Released",
			[]*corev1.PersistentVolume{vbPV("pv", "9Gi", "local", vbClaimRef("data", "uid-old", true), vbPhase(pvBound))},
			[]*corev1.PersistentVolumeClaim{vbPVC("data", "1Gi", local)},
			"pv pv status=Released ifClaimGone=default/data\nevent PersistentVolumeClaim data Normal FailedBinding: storageclass.storage.k8s.io \"local\" not found"},
		{"Released stays Released", []*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbClaimRef("gone", "uid-gone", true), vbPhase(pvReleased))}, nil, ""},
		{"Failed stays Failed", []*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbClaimRef("gone", "uid-gone", true), vbPhase(pvFailed))}, nil, ""},
		{"claim deleted, Delete: deleted", []*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbClaimRef("gone", "uid-gone", true), vbPhase(pvBound), vbPolicy("Delete"))}, nil,
			"pv pv delete ifClaimGone=default/gone"},
		{"claim deleted, Delete, volume already being deleted", []*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbClaimRef("gone", "uid-gone", true), vbPhase(pvReleased), vbPolicy("Delete"),
			func(v *corev1.PersistentVolume) { v.Metadata.DeletionTimestamp = timestamppb.New(vbNow) })}, nil, ""},
		{"claim deleted, Recycle: Released with a warning", []*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbClaimRef("gone", "uid-gone", true), vbPhase(pvBound), vbPolicy("Recycle"))}, nil,
			"pv pv status=Released ifClaimGone=default/gone\nevent PersistentVolume pv Warning VolumeFailedRecycle: " + msgRecycleUnsupported},
		{"claim deleted, unknown policy: Released with a warning", []*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbClaimRef("gone", "uid-gone", true), vbPhase(pvBound), vbPolicy("Shred"))}, nil,
			"pv pv status=Released ifClaimGone=default/gone\nevent PersistentVolume pv Warning VolumeUnknownReclaimPolicy: " + msgUnknownReclaimPolicy},
		{"bound claim whose volume is gone: Lost", nil, []*corev1.PersistentVolumeClaim{vbBoundClaim("data", "pv")},
			"pvc default/data status=Lost ifVolumeGone=pv\nevent PersistentVolumeClaim data Warning ClaimLost: " + msgClaimLostVolume},
		{"Lost stays Lost, once", nil, []*corev1.PersistentVolumeClaim{func() *corev1.PersistentVolumeClaim {
			c := vbBoundClaim("data", "pv")
			c.Status = &corev1.PersistentVolumeClaimStatus{Phase: claimLost}
			return c
		}()}, ""},
		{"a Lost claim whose volume is back is Bound again",
			[]*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbClaimRef("data", "uid-data", true), vbPhase(pvBound))},
			[]*corev1.PersistentVolumeClaim{func() *corev1.PersistentVolumeClaim {
				c := vbBoundClaim("data", "pv")
				c.Status = &corev1.PersistentVolumeClaimStatus{Phase: claimLost}
				return c
			}()},
			"pvc default/data status=Bound"},
		{"bound claim that lost its volumeName: Lost", nil, []*corev1.PersistentVolumeClaim{func() *corev1.PersistentVolumeClaim {
			c := vbBoundClaim("data", "pv")
			c.Spec.VolumeName = ""
			return c
		}()}, "pvc default/data status=Lost\nevent PersistentVolumeClaim data Warning ClaimLost: " + msgClaimLostReference},
		{"bound claim whose volume belongs to another: Lost",
			[]*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbClaimRef("other", "uid-other", true), vbPhase(pvBound))},
			[]*corev1.PersistentVolumeClaim{vbBoundClaim("data", "pv"), vbBoundClaim("other", "pv")},
			"pvc default/data status=Lost\nevent PersistentVolumeClaim data Warning ClaimMisbound: " + msgClaimMisbound},
		{"volume the controller gave to a claim bound elsewhere is freed",
			[]*corev1.PersistentVolume{vbPV("extra", "1Gi", "local", vbClaimRef("data", "uid-data", true), vbPhase(pvBound)),
				vbPV("pv", "1Gi", "local", vbClaimRef("data", "uid-data", true), vbPhase(pvBound))},
			[]*corev1.PersistentVolumeClaim{vbBoundClaim("data", "pv")},
			"pv extra spec(claim=-) status=Available"},
		{"volume a user pre-bound to a claim bound elsewhere keeps the name, loses the UID",
			[]*corev1.PersistentVolume{vbPV("extra", "1Gi", "local", vbClaimRef("data", "uid-data", false), vbPhase(pvBound)),
				vbPV("pv", "1Gi", "local", vbClaimRef("data", "uid-data", true), vbPhase(pvBound))},
			[]*corev1.PersistentVolumeClaim{vbBoundClaim("data", "pv")},
			"pv extra spec(claim=default/data) status=Available"},
		{"volume of a claim not yet bound waits for the claim's sync",
			[]*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbClaimRef("data", "uid-data", true), vbPhase(pvBound))},
			[]*corev1.PersistentVolumeClaim{vbPVC("data", "1Gi", proto.String("other-class"))},
			"pvc default/data spec(volume=pv) status=Bound"},
		{"claim naming a free volume that fits binds; only the volume is marked bound by the controller",
			[]*corev1.PersistentVolume{vbPV("pv", "1Gi", "local")},
			[]*corev1.PersistentVolumeClaim{vbPVC("data", "1Gi", local, func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv" })},
			"pv pv spec(claim=default/data) status=Bound\npvc default/data spec(volume=pv) status=Bound"},
		{"claim naming a volume too small waits with a warning",
			[]*corev1.PersistentVolume{vbPV("pv", "1Gi", "local")},
			[]*corev1.PersistentVolumeClaim{vbPVC("data", "2Gi", local, func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv" })},
			`event PersistentVolumeClaim data Warning VolumeMismatch: Cannot bind to requested volume "pv": requested PV is too small`},
		{"claim naming a volume of another class waits with a warning",
			[]*corev1.PersistentVolume{vbPV("pv", "1Gi", "fast")},
			[]*corev1.PersistentVolumeClaim{vbPVC("data", "1Gi", local, func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv" })},
			`event PersistentVolumeClaim data Warning VolumeMismatch: Cannot bind to requested volume "pv": storageClassName does not match`},
		{"claim naming a missing volume waits",
			nil, []*corev1.PersistentVolumeClaim{vbPVC("data", "1Gi", local, func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv" })}, ""},
		{"claim naming a volume taken by another waits",
			[]*corev1.PersistentVolume{vbPV("pv", "1Gi", "local", vbClaimRef("other", "uid-other", true), vbPhase(pvBound))},
			[]*corev1.PersistentVolumeClaim{vbBoundClaim("other", "pv"), vbPVC("data", "1Gi", local, func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv" })}, ""},
		{"a claim being deleted gets no volume",
			[]*corev1.PersistentVolume{vbPV("pv", "1Gi", "local")},
			[]*corev1.PersistentVolumeClaim{vbPVC("data", "1Gi", local, func(c *corev1.PersistentVolumeClaim) { c.Metadata.DeletionTimestamp = timestamppb.New(vbNow) })}, ""},
		{"a volume with an unreadable capacity gets a warning",
			[]*corev1.PersistentVolume{vbPV("pv", "huge", "local")}, nil,
			`event PersistentVolume pv Warning InvalidVolume: spec.capacity.storage: invalid quantity "huge": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`},
		{"objects without metadata or spec are ignored or handled",
			[]*corev1.PersistentVolume{{}, {Metadata: &metav1.ObjectMeta{Name: "bare"}}},
			[]*corev1.PersistentVolumeClaim{{}, {Metadata: &metav1.ObjectMeta{Name: "bare", Namespace: "default"}}},
			"pv bare status=Available\nevent PersistentVolume bare Warning InvalidVolume: spec.capacity.storage: missing\n" +
				"pvc default/bare status=Pending\nevent PersistentVolumeClaim bare Normal FailedBinding: " + msgNoVolumesNoClass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acts := ReconcileVolumeBinding(tc.pvs, tc.pvcs, nil, vbNow)
			if got := vbSummary(acts); got != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestReconcileVolumeBindingSharesVolumesFairly(t *testing.T) {
	local := proto.String("local")
	older := vbPVC("older", "1Gi", local)
	older.Metadata.CreationTimestamp = timestamppb.New(vbNow.Add(-2 * time.Hour))
	newer := vbPVC("a-newer", "1Gi", local)
	pvs := []*corev1.PersistentVolume{vbPV("only", "5Gi", "local")}
	acts := ReconcileVolumeBinding(pvs, []*corev1.PersistentVolumeClaim{newer, older}, nil, vbNow)
	if got := vbBoundVolume(acts, "older"); got != "only" {
		t.Fatalf("older claim got %q:\n%s", got, vbSummary(acts))
	}
	if got := vbBoundVolume(acts, "a-newer"); got != "" {
		t.Fatalf("one volume bound twice, also to a-newer:\n%s", vbSummary(acts))
	}
	if ev := vbEvents(acts, "a-newer"); len(ev) != 1 || !strings.Contains(ev[0], "FailedBinding") {
		t.Fatalf("a-newer events %q", ev)
	}

	// A bound claim whose volume came loose gets it back before an older
	// newcomer can take it.
	loose := vbPV("pv", "5Gi", "local", vbPhase(pvBound))
	acts = ReconcileVolumeBinding([]*corev1.PersistentVolume{loose}, []*corev1.PersistentVolumeClaim{vbBoundClaim("owner", "pv"), older}, nil, vbNow)
	if got := vbSummary(acts); !strings.HasPrefix(got, "pv pv spec(claim=default/owner) status=Bound\npvc default/owner status=Bound\n") {
		t.Fatalf("got:\n%s", got)
	}
}

func TestReconcileVolumeBindingIsDeterministic(t *testing.T) {
	local := proto.String("local")
	var pvs []*corev1.PersistentVolume
	var pvcs []*corev1.PersistentVolumeClaim
	for i := range 30 {
		pvs = append(pvs, vbPV(fmt.Sprintf("pv-%02d", i), fmt.Sprintf("%dGi", 1+i%4), "local"))
		c := vbPVC(fmt.Sprintf("c-%02d", i), fmt.Sprintf("%dGi", 1+i%5), local)
		c.Metadata.CreationTimestamp = timestamppb.New(vbNow.Add(-time.Duration(i%3) * time.Minute))
		pvcs = append(pvcs, c)
	}
	pvs = append(pvs, vbPV("released", "1Gi", "local", vbClaimRef("gone", "uid-gone", true), vbPhase(pvBound)))
	first := vbSummary(ReconcileVolumeBinding(pvs, pvcs, nil, vbNow))
	// Claims ask up to 5Gi, volumes have up to 4Gi: the six 5Gi claims wait.
	if strings.Count(first, "spec(volume=") != 24 || strings.Count(first, "FailedBinding") != 6 {
		t.Fatalf("want 24 claims bound and 6 waiting:\n%s", first)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		rng.Shuffle(len(pvs), func(i, j int) { pvs[i], pvs[j] = pvs[j], pvs[i] })
		rng.Shuffle(len(pvcs), func(i, j int) { pvcs[i], pvcs[j] = pvcs[j], pvcs[i] })
		if again := vbSummary(ReconcileVolumeBinding(pvs, pvcs, nil, vbNow)); again != first {
			t.Fatalf("another input order gave other actions:\n%s\n---\n%s", first, again)
		}
	}
}

func TestVolumeEventMemo(t *testing.T) {
	m := &vbEventMemo{seen: map[string]vbMemoEntry{}}
	ev := func(uid, msg string) VolumeEvent {
		return VolumeEvent{Object: &corev1.ObjectReference{Uid: uid}, Type: "Normal", Reason: reasonFailedBinding, Message: msg}
	}
	t0 := vbNow
	for i, step := range []struct {
		at   time.Duration
		e    VolumeEvent
		want bool
	}{
		{0, ev("a", "x"), true},
		{time.Second, ev("a", "x"), false},
		{time.Second, ev("b", "x"), true},                       // another object
		{2 * time.Second, ev("a", "y"), true},                   // a new message
		{61 * time.Second, ev("a", "y"), false},                 // 1m after the y, not yet
		{62 * time.Second, ev("a", "y"), true},                  // 1m passed
		{62*time.Second + 119*time.Second, ev("a", "y"), false}, // now 2m
		{62*time.Second + 120*time.Second, ev("a", "y"), true},
		{62*time.Second + 120*time.Second + 239*time.Second, ev("a", "y"), false}, // now 4m
	} {
		if got := m.allow(step.e, t0.Add(step.at)); got != step.want {
			t.Fatalf("step %d: allow = %v, want %v", i, got, step.want)
		}
	}
	m.keep(map[string]bool{"b": true})
	if !m.allow(ev("a", "y"), t0.Add(7*time.Minute)) {
		t.Fatal("a forgotten object's event is held back")
	}
	if m.allow(ev("b", "x"), t0.Add(2*time.Second)) {
		t.Fatal("a kept object's event is repeated at once")
	}
	for n := 0; n < 20; n++ {
		m.allow(ev("c", "z"), t0.Add(time.Duration(n)*time.Hour))
	}
	if e := m.seen["c\x00"+reasonFailedBinding]; e.every != vbEventRepeatMax {
		t.Fatalf("repeat interval %s, want the cap %s", e.every, vbEventRepeatMax)
	}
}

func TestVolumeWrittenView(t *testing.T) {
	pv := func(name, uid, rv string) *corev1.PersistentVolume {
		return &corev1.PersistentVolume{Metadata: &metav1.ObjectMeta{Name: name, Uid: uid, ResourceVersion: rv}}
	}
	names := func(list []*corev1.PersistentVolume) string {
		var out []string
		for _, v := range list {
			out = append(out, v.GetMetadata().GetName()+"@"+v.GetMetadata().GetResourceVersion())
		}
		return strings.Join(out, " ")
	}
	w := newVbWritten[*corev1.PersistentVolume]()
	w.wrote(pv("a", "ua", "12"))
	w.wrote(pv("b", "ub", "13"))
	w.wrote(pv("c", "uc-new", "14")) // the cache has an older object of that name
	w.deleted("d", "ud")
	cache := []*corev1.PersistentVolume{pv("a", "ua", "11"), pv("b", "ub", "15"), pv("c", "uc-old", "3"), pv("d", "ud", "9"), pv("e", "ue", "1")}
	if got := names(w.view(cache)); got != "a@12 b@15 c@3 e@1" {
		t.Fatalf("view %q", got)
	}
	if len(w.objs) != 1 || len(w.gone) != 1 {
		t.Fatalf("entries the cache caught up with were kept: %v %v", w.objs, w.gone)
	}
	// The cache catches up: the delete shows, the write is seen.
	if got := names(w.view([]*corev1.PersistentVolume{pv("a", "ua", "12"), pv("e", "ue", "1")})); got != "a@12 e@1" {
		t.Fatalf("view %q", got)
	}
	if len(w.objs) != 0 || len(w.gone) != 0 {
		t.Fatalf("entries kept: %v %v", w.objs, w.gone)
	}
}

// TestVolumeBinderAgainstCluster runs the loop against a real single-peer
// store: binding, the FailedBinding event (once), a later volume binding the
// waiting claim, release on claim deletion, Delete policy and Lost claims.
func TestVolumeBinderAgainstCluster(t *testing.T) {
	c := testcluster.New(t, 1)
	ctx := context.Background()
	conn := c.Peers[0].Conn
	pvs, pvcs := corev1.NewPersistentVolumesClient(conn), corev1.NewPersistentVolumeClaimsClient(conn)
	events := corev1.NewEventsClient(conn)

	mkPV := func(name, size, policy string) {
		t.Helper()
		v := vbPV(name, size, "local", vbPolicy(policy))
		v.Metadata, v.Status = &metav1.ObjectMeta{Name: name}, nil
		if _, err := pvs.Create(ctx, &corev1.CreatePersistentVolumeRequest{Body: v}); err != nil {
			t.Fatal(err)
		}
	}
	mkPVC := func(name, size string) {
		t.Helper()
		p := vbPVC(name, size, proto.String("local"))
		p.Metadata, p.Status = &metav1.ObjectMeta{Name: name}, nil
		if _, err := pvcs.Create(ctx, &corev1.CreatePersistentVolumeClaimRequest{Namespace: "default", Body: p}); err != nil {
			t.Fatal(err)
		}
	}
	getPV := func(name string) *corev1.PersistentVolume {
		v, _ := pvs.Get(ctx, &metav1.GetRequest{Name: name})
		return v
	}
	getPVC := func(name string) *corev1.PersistentVolumeClaim {
		p, _ := pvcs.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: name})
		return p
	}
	claimEvents := func(name, reason string) []*corev1.Event {
		list, err := events.List(ctx, &metav1.ListRequest{Namespace: "default"})
		if err != nil {
			return nil
		}
		var out []*corev1.Event
		for _, e := range list.GetItems() {
			if e.GetInvolvedObject().GetKind() == "PersistentVolumeClaim" && e.GetInvolvedObject().GetName() == name && e.GetReason() == reason {
				out = append(out, e)
			}
		}
		return out
	}
	bound := func(claim, volume string) func() bool {
		return func() bool {
			v, p := getPV(volume), getPVC(claim)
			return v.GetStatus().GetPhase() == pvBound && v.GetSpec().GetClaimRef().GetUid() == p.GetMetadata().GetUid() &&
				p.GetStatus().GetPhase() == claimBound && p.GetSpec().GetVolumeName() == volume &&
				p.GetMetadata().GetAnnotations()[AnnBindCompleted] == "yes"
		}
	}

	mkPV("small", "1Gi", "Retain")
	mkPV("medium", "5Gi", "Retain")
	mkPV("doomed", "3Gi", "Delete")

	vb := NewVolumeBinder(conn, RealClock(), discardLogger())
	lctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- vb.Run(lctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("binder: %v", err)
		}
	})

	c.WaitFor(10*time.Second, "volumes Available", func() bool {
		return getPV("small").GetStatus().GetPhase() == pvAvailable && getPV("medium").GetStatus().GetPhase() == pvAvailable
	})
	mkPVC("data", "4Gi")
	c.WaitFor(10*time.Second, "data bound to medium", bound("data", "medium"))
	if p := getPVC("data"); p.GetStatus().GetCapacity()["storage"].GetStringValue() != "5Gi" || p.GetMetadata().GetAnnotations()[AnnBoundByController] != "yes" {
		t.Errorf("claim status or annotations: %v %v", p.GetStatus(), p.GetMetadata().GetAnnotations())
	}

	// Too big: FailedBinding, and only once while volumes keep changing.
	mkPVC("big", "10Gi")
	c.WaitFor(10*time.Second, "FailedBinding for big", func() bool { return len(claimEvents("big", reasonFailedBinding)) > 0 })
	for i := range 5 {
		v := getPV("small")
		v.Metadata.Labels = map[string]string{"touch": fmt.Sprint(i)}
		if _, err := pvs.Update(ctx, &corev1.UpdatePersistentVolumeRequest{Name: "small", Body: v}); err != nil && status.Code(err) != codes.Aborted {
			t.Fatal(err)
		}
	}
	mkPV("tiny", "1Mi", "Retain")
	c.WaitFor(10*time.Second, "tiny Available", func() bool { return getPV("tiny").GetStatus().GetPhase() == pvAvailable })
	evs := claimEvents("big", reasonFailedBinding)
	if len(evs) != 1 || evs[0].GetCount() != 1 || evs[0].GetType() != "Normal" ||
		evs[0].GetMessage() != `storageclass.storage.k8s.io "local" not found` || evs[0].GetSource().GetComponent() != VolumeControllerName {
		t.Fatalf("FailedBinding events: %v", evs)
	}
	if p := getPVC("big"); p.GetStatus().GetPhase() != claimPending || p.GetSpec().GetVolumeName() != "" {
		t.Fatalf("big: %v", p)
	}
	mkPV("huge", "20Gi", "Retain")
	c.WaitFor(10*time.Second, "big bound to the new huge volume", bound("big", "huge"))

	// Deleting a claim releases a Retain volume and deletes a Delete one.
	mkPVC("short", "2Gi")
	c.WaitFor(10*time.Second, "short bound to doomed", bound("short", "doomed"))
	for _, name := range []string{"data", "short"} {
		if _, err := pvcs.Delete(ctx, &metav1.DeleteRequest{Namespace: "default", Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitFor(10*time.Second, "medium Released", func() bool { return getPV("medium").GetStatus().GetPhase() == pvReleased })
	c.WaitFor(10*time.Second, "doomed deleted", func() bool {
		_, err := pvs.Get(ctx, &metav1.GetRequest{Name: "doomed"})
		return status.Code(err) == codes.NotFound
	})

	// A bound claim whose volume is deleted is Lost.
	if _, err := pvs.Delete(ctx, &metav1.DeleteRequest{Name: "huge"}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(10*time.Second, "big Lost", func() bool {
		return getPVC("big").GetStatus().GetPhase() == claimLost && len(claimEvents("big", reasonClaimLost)) == 1
	})
}
