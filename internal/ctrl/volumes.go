package ctrl

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	storagev1 "github.com/rafter-dev/rafter/gen/rafter/storage/v1"
)

// Annotations of PersistentVolume binding (Kubernetes' own).
const (
	// AnnBindCompleted ("yes") on a claim says the controller completed its
	// binding: from then on the claim is treated as bound, and becomes Lost
	// when its volume goes away.
	AnnBindCompleted = "pv.kubernetes.io/bind-completed"
	// AnnBoundByController ("yes") on a volume or claim says the controller,
	// not a user, set its spec.claimRef or spec.volumeName.
	AnnBoundByController = "pv.kubernetes.io/bound-by-controller"
	// AnnDefaultStorageClass ("true") marks the StorageClass that claims
	// without storageClassName get.
	AnnDefaultStorageClass     = "storageclass.kubernetes.io/is-default-class"
	annBetaDefaultStorageClass = "storageclass.beta.kubernetes.io/is-default-class"
	// annBetaStorageClass names the class of a volume or claim and wins over
	// spec.storageClassName, as in Kubernetes.
	annBetaStorageClass = "volume.beta.kubernetes.io/storage-class"

	// VolumeControllerName is the component of the binder's events.
	VolumeControllerName = "persistentvolume-controller"
)

// Phases of volumes and claims.
const (
	pvAvailable  = "Available"
	pvBound      = "Bound"
	pvReleased   = "Released"
	pvFailed     = "Failed"
	claimPending = "Pending"
	claimBound   = "Bound"
	claimLost    = "Lost"
)

// Event reasons and messages of the binder: Kubernetes' own, except
// InvalidVolume (a volume whose capacity cannot be read, which the Kubernetes
// API server would have refused) and the Recycle message.
const (
	reasonFailedBinding     = "FailedBinding"
	reasonVolumeMismatch    = "VolumeMismatch"
	reasonClaimLost         = "ClaimLost"
	reasonClaimMisbound     = "ClaimMisbound"
	reasonFailedRecycle     = "VolumeFailedRecycle"
	reasonUnknownReclaim    = "VolumeUnknownReclaimPolicy"
	reasonInvalidVolume     = "InvalidVolume"
	msgNoVolumesNoClass     = "no persistent volumes available for this claim and no storage class is set"
	msgClaimLostReference   = "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
	msgClaimLostVolume      = "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
	msgClaimMisbound        = "Two claims are bound to the same volume, this one is bound incorrectly"
	msgRecycleUnsupported   = "Recycle reclaim policy is not supported: the volume is kept as with Retain"
	msgUnknownReclaimPolicy = "Volume has unrecognized PersistentVolumeReclaimPolicy"
)

const (
	volumeModeFilesystem = "Filesystem"
	reclaimRetain        = "Retain"
	reclaimDelete        = "Delete"
	reclaimRecycle       = "Recycle"
	storageResource      = "storage"
	claimKind            = "PersistentVolumeClaim"
	claimAPIVersion      = "v1"
)

// VolumeEvent is an event the binder records about a volume or a claim.
type VolumeEvent struct {
	Object                *corev1.ObjectReference
	Type, Reason, Message string
}

// VolumeChange is what ReconcileVolumeBinding decided for at most one volume
// and one claim (a binding touches both). The loop applies it in this order,
// each write conditioned on the resourceVersion of the object it was decided
// on (later writes of the same object on that of the write before), and stops
// at the first failure, leaving the rest to the next reconcile:
//
//  1. the volume: DeleteVolume (conditioned on UID and resourceVersion), or
//     UpdateVolume (metadata and spec of Volume) then UpdateVolumeStatus;
//  2. the claim: UpdateClaim (metadata and spec of Claim) then
//     UpdateClaimStatus;
//  3. Events, recorded only when every write succeeded.
//
// So a binding writes the volume before the claim, as Kubernetes does: a crash
// between the writes leaves a volume whose claimRef names a claim without
// volumeName, which the next reconcile binds to that volume (it is pre-bound).
//
// Volume and Claim are the desired objects (their resourceVersion is the one
// read); Volume is nil when only the claim changes and Claim when only the
// volume does. A flag that is false means that part is unchanged.
type VolumeChange struct {
	Volume                                         *corev1.PersistentVolume
	UpdateVolume, UpdateVolumeStatus, DeleteVolume bool
	Claim                                          *corev1.PersistentVolumeClaim
	UpdateClaim, UpdateClaimStatus                 bool
	// RequireClaimGone, when set, names the claim a volume was bound to and
	// which the snapshot lacks: the change (releasing or deleting the
	// volume) must be applied only when a read from the API confirms that
	// this claim (namespace, name, UID) no longer exists, since the claim
	// cache may simply lag behind the volume cache.
	RequireClaimGone *corev1.ObjectReference
	// RequireVolumeGone, when not empty, names the volume of a bound claim
	// that the snapshot lacks: the change (the claim becoming Lost) must be
	// applied only when a read from the API confirms it does not exist.
	RequireVolumeGone string
	Events            []VolumeEvent
}

// HasWrites reports whether c writes anything (else it only records events).
func (c *VolumeChange) HasWrites() bool {
	return c.UpdateVolume || c.UpdateVolumeStatus || c.DeleteVolume || c.UpdateClaim || c.UpdateClaimStatus
}

// VolumeActions is the outcome of ReconcileVolumeBinding: independent
// changes, each touching objects no other change touches, in a deterministic
// order (bindings and volumes by volume name, then claims by key).
type VolumeActions struct {
	Changes []VolumeChange
}

// ReconcileVolumeBinding decides how to bring PersistentVolumes and
// PersistentVolumeClaims to a bound, consistent state, with the semantics of
// Kubernetes' PV controller for statically provisioned volumes:
//
//   - An unbound claim (no AnnBindCompleted) without spec.volumeName gets the
//     best volume that matches it (vbMatch): the one pre-bound to it by
//     spec.claimRef if any, else the Available one with the fewest access
//     modes, then the smallest capacity, then the lowest name. Claims are
//     served bound ones first, then oldest first (then by key), and a volume
//     given to one claim is not offered to the next. A claim without a match
//     stays Pending with a FailedBinding event (noMatchMessage).
//   - An unbound claim that names its volume in spec.volumeName binds to it
//     when the volume is free (and satisfies it, else a VolumeMismatch event)
//     or pre-bound to it; otherwise it waits, Pending.
//   - Binding sets the volume's claimRef (and AnnBoundByController when the
//     controller chose the volume) and phase Bound, then the claim's
//     volumeName, AnnBindCompleted (and AnnBoundByController when the
//     controller chose the volume), phase Bound, capacity and access modes
//     of the volume. A claim with storageClassName unset bound through the
//     default class gets that class written, as admission would have done.
//   - A bound claim whose volume is gone, or that lost its volumeName, is
//     Lost (ClaimLost event); one whose volume belongs to another claim is
//     Lost (ClaimMisbound). Bindings that come half undone are redone.
//   - A volume without claimRef, or pre-bound (claimRef without UID), is
//     Available. A volume whose claim is gone (or was replaced by one of
//     another UID) is Released and its reclaim policy applied: Retain keeps
//     it, Delete deletes it, Recycle is kept as Retain with a warning event.
//     A volume the controller bound to a claim that is bound to another
//     volume is freed again; one a user pre-bound keeps its claimRef
//     without UID.
//
// Objects are never modified; returned objects are copies. Objects without
// metadata are ignored, and unreadable quantities or selectors make the
// object unmatchable, with a warning event. now stamps
// status.lastPhaseTransitionTime of volumes whose phase changes. The result
// depends only on the arguments (not on their order).
func ReconcileVolumeBinding(pvs []*corev1.PersistentVolume, pvcs []*corev1.PersistentVolumeClaim, classes []*storagev1.StorageClass, now time.Time) VolumeActions {
	s := newVbState(pvs, pvcs, classes, now)
	// A volume becomes Available before any claim looks for one, so a volume
	// and a claim created together bind in one pass.
	for _, name := range s.volNames {
		if ref := s.vols[name].GetSpec().GetClaimRef(); ref == nil || ref.GetUid() == "" {
			s.setVolumePhase(name, pvAvailable)
		}
	}
	for _, key := range s.claimOrder() {
		s.syncClaim(key)
	}
	for _, name := range s.volNames {
		s.syncVolume(name)
	}
	return s.actions()
}

// vbState is one reconcile: the desired objects (copied on first change),
// the originals they are compared with at the end, and what was decided.
type vbState struct {
	now          time.Time
	classes      map[string]*storagev1.StorageClass
	defaultClass string

	vols, volOrig     map[string]*corev1.PersistentVolume // by name
	volNames          []string                            // sorted
	claims, claimOrig map[string]*corev1.PersistentVolumeClaim
	claimKeys         []string // sorted

	deleteVol   map[string]bool
	pairs       map[string]string // volume name -> claim key bound in this pass
	claimGone   map[string]*corev1.ObjectReference
	volumeGone  map[string]string // claim key -> missing volume name
	volEvents   map[string][]VolumeEvent
	claimEvents map[string][]VolumeEvent
}

func newVbState(pvs []*corev1.PersistentVolume, pvcs []*corev1.PersistentVolumeClaim, classes []*storagev1.StorageClass, now time.Time) *vbState {
	s := &vbState{now: now, classes: map[string]*storagev1.StorageClass{},
		vols: map[string]*corev1.PersistentVolume{}, volOrig: map[string]*corev1.PersistentVolume{},
		claims: map[string]*corev1.PersistentVolumeClaim{}, claimOrig: map[string]*corev1.PersistentVolumeClaim{},
		deleteVol: map[string]bool{}, pairs: map[string]string{}, claimGone: map[string]*corev1.ObjectReference{},
		volumeGone: map[string]string{}, volEvents: map[string][]VolumeEvent{}, claimEvents: map[string][]VolumeEvent{}}
	for _, v := range pvs {
		if v.GetMetadata().GetName() == "" {
			continue
		}
		name := v.GetMetadata().GetName()
		s.vols[name], s.volOrig[name] = v, v
	}
	for _, c := range pvcs {
		if c.GetMetadata().GetName() == "" {
			continue
		}
		key := KeyOf(c)
		s.claims[key], s.claimOrig[key] = c, c
	}
	s.volNames = slices.Sorted(maps.Keys(s.vols))
	s.claimKeys = slices.Sorted(maps.Keys(s.claims))
	var def *storagev1.StorageClass
	for _, sc := range classes {
		md := sc.GetMetadata()
		if md.GetName() == "" {
			continue
		}
		s.classes[md.GetName()] = sc
		if md.GetAnnotations()[AnnDefaultStorageClass] != "true" && md.GetAnnotations()[annBetaDefaultStorageClass] != "true" {
			continue
		}
		// Several defaults: the newest wins, then the lowest name (Kubernetes).
		if def == nil || vbNewerClass(sc, def) {
			def = sc
		}
	}
	s.defaultClass = def.GetMetadata().GetName()
	return s
}

func vbNewerClass(a, b *storagev1.StorageClass) bool {
	ta, tb := tsTime(a.GetMetadata().GetCreationTimestamp()), tsTime(b.GetMetadata().GetCreationTimestamp())
	if !ta.Equal(tb) {
		return ta.After(tb)
	}
	return a.GetMetadata().GetName() < b.GetMetadata().GetName()
}

// claimOrder is the order claims are served in: claims already bound first
// (so a volume that came loose goes back to its claim, not to a newcomer),
// then by creation time, then by key.
func (s *vbState) claimOrder() []string {
	keys := slices.Clone(s.claimKeys)
	slices.SortStableFunc(keys, func(a, b string) int {
		ca, cb := s.claims[a], s.claims[b]
		ba, bb := vbHasAnn(ca.GetMetadata(), AnnBindCompleted), vbHasAnn(cb.GetMetadata(), AnnBindCompleted)
		if ba != bb {
			if ba {
				return -1
			}
			return 1
		}
		return cmp.Or(tsTime(ca.GetMetadata().GetCreationTimestamp()).Compare(tsTime(cb.GetMetadata().GetCreationTimestamp())),
			cmp.Compare(a, b))
	})
	return keys
}

// editVol returns the desired volume name for changing, copied on first use.
func (s *vbState) editVol(name string) *corev1.PersistentVolume {
	v := s.vols[name]
	if v == s.volOrig[name] {
		v = proto.Clone(v).(*corev1.PersistentVolume)
		s.vols[name] = v
	}
	return v
}

func (s *vbState) editClaim(key string) *corev1.PersistentVolumeClaim {
	c := s.claims[key]
	if c == s.claimOrig[key] {
		c = proto.Clone(c).(*corev1.PersistentVolumeClaim)
		s.claims[key] = c
	}
	return c
}

// setVolumePhase moves a volume to phase (clearing the status message and
// stamping the transition time) unless it is there already.
func (s *vbState) setVolumePhase(name, phase string) bool {
	if s.vols[name].GetStatus().GetPhase() == phase {
		return false
	}
	v := s.editVol(name)
	v.Status = &corev1.PersistentVolumeStatus{Phase: phase, Reason: v.GetStatus().GetReason(),
		LastPhaseTransitionTime: timestamppb.New(s.now)}
	return true
}

// setClaimStatus sets a claim's phase, and its capacity and access modes to
// those of vol (none when vol is nil), unless they are so already.
func (s *vbState) setClaimStatus(key, phase string, vol *corev1.PersistentVolume) bool {
	c := s.claims[key]
	st := c.GetStatus()
	modes, capacity := vol.GetSpec().GetAccessModes(), vol.GetSpec().GetCapacity()
	same := st.GetPhase() == phase && slices.Equal(st.GetAccessModes(), modes)
	if same {
		if vol == nil {
			same = len(st.GetCapacity()) == 0
		} else {
			a, errA := vbQuantity(st.GetCapacity()[storageResource])
			b, errB := vbQuantity(capacity[storageResource])
			same = errA == nil && errB == nil && a.Cmp(b) == 0
		}
	}
	if same {
		return false
	}
	c = s.editClaim(key)
	if c.Status == nil {
		c.Status = &corev1.PersistentVolumeClaimStatus{}
	}
	c.Status.Phase, c.Status.AccessModes, c.Status.Capacity = phase, slices.Clone(modes), nil
	if len(capacity) > 0 {
		c.Status.Capacity = make(map[string]*structpb.Value, len(capacity))
		for k, v := range capacity {
			c.Status.Capacity[k] = proto.Clone(v).(*structpb.Value)
		}
	}
	return true
}

func (s *vbState) claimEvent(key, typ, reason, message string) {
	ref := Ref(claimKind, claimAPIVersion, s.claims[key].GetMetadata())
	s.claimEvents[key] = append(s.claimEvents[key], VolumeEvent{Object: ref, Type: typ, Reason: reason, Message: message})
}

func (s *vbState) volumeEvent(name, typ, reason, message string) {
	ref := Ref("PersistentVolume", "v1", s.vols[name].GetMetadata())
	s.volEvents[name] = append(s.volEvents[name], VolumeEvent{Object: ref, Type: typ, Reason: reason, Message: message})
}

// claimClass is the storage class a claim asks for: the beta annotation,
// else spec.storageClassName, else (unset) the default class if there is
// one, else "". fromDefault reports the last but one case.
func (s *vbState) claimClass(c *corev1.PersistentVolumeClaim) (class string, fromDefault bool) {
	if a, ok := c.GetMetadata().GetAnnotations()[annBetaStorageClass]; ok {
		return a, false
	}
	if spec := c.GetSpec(); spec != nil && spec.StorageClassName != nil {
		return *spec.StorageClassName, false
	}
	return s.defaultClass, s.defaultClass != ""
}

func vbVolumeClass(v *corev1.PersistentVolume) string {
	if a, ok := v.GetMetadata().GetAnnotations()[annBetaStorageClass]; ok {
		return a
	}
	return v.GetSpec().GetStorageClassName()
}

func (s *vbState) syncClaim(key string) {
	c := s.claims[key]
	if !vbHasAnn(c.GetMetadata(), AnnBindCompleted) {
		s.syncUnboundClaim(key)
		return
	}
	name := c.GetSpec().GetVolumeName()
	v, ok := s.vols[name]
	switch {
	case name == "":
		s.loseClaim(key, reasonClaimLost, msgClaimLostReference)
	case !ok:
		if s.loseClaim(key, reasonClaimLost, msgClaimLostVolume) {
			s.volumeGone[key] = name
		}
	case v.GetSpec().GetClaimRef() == nil || v.GetSpec().GetClaimRef().GetUid() == c.GetMetadata().GetUid():
		s.bind(name, key) // redo what came undone; usually nothing
	default:
		s.loseClaim(key, reasonClaimMisbound, msgClaimMisbound)
	}
}

// loseClaim makes a claim Lost with a warning event, once.
func (s *vbState) loseClaim(key, reason, message string) bool {
	if s.claims[key].GetStatus().GetPhase() == claimLost {
		return false
	}
	s.setClaimStatus(key, claimLost, nil)
	s.claimEvent(key, "Warning", reason, message)
	return true
}

func (s *vbState) syncUnboundClaim(key string) {
	c := s.claims[key]
	if name := c.GetSpec().GetVolumeName(); name != "" {
		v, ok := s.vols[name]
		switch {
		case !ok:
			s.setClaimStatus(key, claimPending, nil) // the user's volume may come
		case v.GetSpec().GetClaimRef() == nil:
			if err := s.satisfies(v, c); err != nil {
				s.claimEvent(key, "Warning", reasonVolumeMismatch, fmt.Sprintf("Cannot bind to requested volume %q: %v", name, err))
				s.setClaimStatus(key, claimPending, nil)
				return
			}
			s.bind(name, key)
		case vbBoundTo(v, c):
			s.bind(name, key)
		default:
			s.setClaimStatus(key, claimPending, nil) // taken: wait until it is free
		}
		return
	}
	if c.GetMetadata().GetDeletionTimestamp() != nil {
		return // no new binding for a claim on its way out
	}
	name, msg, typ := s.bestMatch(c)
	if name == "" {
		s.claimEvent(key, typ, reasonFailedBinding, msg)
		s.setClaimStatus(key, claimPending, nil)
		return
	}
	s.bind(name, key)
}

// bestMatch returns the volume claim c should bind to, or "" with the
// message (and event type) explaining why there is none.
func (s *vbState) bestMatch(c *corev1.PersistentVolumeClaim) (name, msg, typ string) {
	spec := c.GetSpec()
	req, err := vbRequest(c)
	if err != nil {
		return "", fmt.Sprintf("spec.resources.requests.storage: %v", err), "Warning"
	}
	var sel labels.Selector // nil: any labels
	if spec.GetSelector() != nil {
		if sel, err = SelectorFor(spec.GetSelector()); err != nil {
			return "", fmt.Sprintf("spec.selector: %v", err), "Warning"
		}
	}
	class, _ := s.claimClass(c)
	var best, bestPrebound *corev1.PersistentVolume
	var bestCap, bestPreboundCap resource.Quantity
	for _, vname := range s.volNames {
		v := s.vols[vname]
		vs := v.GetSpec()
		if vs.GetClaimRef() != nil && !vbBoundTo(v, c) {
			continue
		}
		capacity, err := vbQuantity(vs.GetCapacity()[storageResource])
		if err != nil || capacity.Cmp(req) < 0 || !vbModeMatches(spec.GetVolumeMode(), vs.GetVolumeMode()) ||
			v.GetMetadata().GetDeletionTimestamp() != nil || !vbHasModes(vs.GetAccessModes(), spec.GetAccessModes()) {
			continue
		}
		if vbBoundTo(v, c) {
			// Pre-bound to this claim: chosen whatever its class, labels or
			// phase, as in Kubernetes.
			if bestPrebound == nil || vbBetter(v, capacity, bestPrebound, bestPreboundCap) {
				bestPrebound, bestPreboundCap = v, capacity
			}
			continue
		}
		if s.vols[vname].GetStatus().GetPhase() != pvAvailable || vbVolumeClass(v) != class ||
			(sel != nil && !sel.Matches(labels.Set(v.GetMetadata().GetLabels()))) {
			continue
		}
		if best == nil || vbBetter(v, capacity, best, bestCap) {
			best, bestCap = v, capacity
		}
	}
	switch {
	case bestPrebound != nil:
		return bestPrebound.GetMetadata().GetName(), "", ""
	case best != nil:
		return best.GetMetadata().GetName(), "", ""
	}
	msg = s.noMatchMessage(class)
	return "", msg, "Normal"
}

// noMatchMessage explains why a claim of class found no volume. Kubernetes
// says so with FailedBinding only for a claim without class; for a class it
// hands the claim to the class's provisioner, which fails with
// `storageclass.storage.k8s.io "NAME" not found` when the class does not
// exist. Rafter has no provisioners (statically provisioned volumes only), so
// the binder reports both cases as FailedBinding, and for a class that exists
// names the class in Kubernetes' no-volumes sentence.
func (s *vbState) noMatchMessage(class string) string {
	switch {
	case class == "":
		return msgNoVolumesNoClass
	case s.classes[class] == nil:
		return fmt.Sprintf("storageclass.storage.k8s.io %q not found", class)
	default:
		return fmt.Sprintf("no persistent volumes available for this claim in storage class %q", class)
	}
}

// vbBetter reports whether volume a (of capacity ca) is a better match than
// b: fewer access modes (Kubernetes tries the narrowest mode sets first),
// then smaller, then the lower name.
func vbBetter(a *corev1.PersistentVolume, ca resource.Quantity, b *corev1.PersistentVolume, cb resource.Quantity) bool {
	if na, nb := len(a.GetSpec().GetAccessModes()), len(b.GetSpec().GetAccessModes()); na != nb {
		return na < nb
	}
	if c := ca.Cmp(cb); c != 0 {
		return c < 0
	}
	return a.GetMetadata().GetName() < b.GetMetadata().GetName()
}

// satisfies explains why volume v cannot serve claim c (nil when it can):
// Kubernetes' checks for a volume the claim names in spec.volumeName.
func (s *vbState) satisfies(v *corev1.PersistentVolume, c *corev1.PersistentVolumeClaim) error {
	if v.GetMetadata().GetDeletionTimestamp() != nil {
		return fmt.Errorf("the volume is marked for deletion %q", v.GetMetadata().GetName())
	}
	req, err := vbRequest(c)
	if err != nil {
		return fmt.Errorf("claim request: %w", err)
	}
	capacity, err := vbQuantity(v.GetSpec().GetCapacity()[storageResource])
	if err != nil {
		return fmt.Errorf("volume capacity: %w", err)
	}
	if capacity.Cmp(req) < 0 {
		return fmt.Errorf("requested PV is too small")
	}
	if class, _ := s.claimClass(c); vbVolumeClass(v) != class {
		return fmt.Errorf("storageClassName does not match")
	}
	if !vbModeMatches(c.GetSpec().GetVolumeMode(), v.GetSpec().GetVolumeMode()) {
		return fmt.Errorf("incompatible volumeMode")
	}
	if !vbHasModes(v.GetSpec().GetAccessModes(), c.GetSpec().GetAccessModes()) {
		return fmt.Errorf("incompatible accessMode")
	}
	return nil
}

// bind binds volume name and claim key to each other (Kubernetes' bind):
// the volume's claimRef and phase, then the claim's volumeName, annotations
// and status. Parts already right are left as they are.
func (s *vbState) bind(name, key string) {
	if _, taken := s.pairs[name]; taken {
		return
	}
	s.pairs[name] = key
	c := s.claims[key]
	v := s.vols[name]
	cmd := c.GetMetadata()
	if ref := v.GetSpec().GetClaimRef(); ref.GetName() != cmd.GetName() || ref.GetNamespace() != cmd.GetNamespace() || ref.GetUid() != cmd.GetUid() {
		prebound := vbBoundTo(v, c)
		v = s.editVol(name)
		if v.Spec == nil {
			v.Spec = &corev1.PersistentVolumeSpec{}
		}
		v.Spec.ClaimRef = &corev1.ObjectReference{Kind: claimKind, ApiVersion: claimAPIVersion, Namespace: cmd.GetNamespace(),
			Name: cmd.GetName(), Uid: cmd.GetUid(), ResourceVersion: cmd.GetResourceVersion()}
		if !prebound {
			vbSetAnn(v.Metadata, AnnBoundByController)
		}
	}
	s.setVolumePhase(name, pvBound)

	if c.GetSpec().GetVolumeName() != name || !vbHasAnn(cmd, AnnBindCompleted) {
		class, fromDefault := s.claimClass(c)
		c = s.editClaim(key)
		if c.Spec == nil {
			c.Spec = &corev1.PersistentVolumeClaimSpec{}
		}
		if c.Spec.VolumeName != name {
			c.Spec.VolumeName = name
			vbSetAnn(c.Metadata, AnnBoundByController)
		}
		if fromDefault {
			c.Spec.StorageClassName = proto.String(class)
		}
		vbSetAnn(c.Metadata, AnnBindCompleted)
	}
	s.setClaimStatus(key, claimBound, s.vols[name])
}

func (s *vbState) syncVolume(name string) {
	v := s.vols[name]
	if _, err := vbQuantity(v.GetSpec().GetCapacity()[storageResource]); err != nil {
		s.volumeEvent(name, "Warning", reasonInvalidVolume, fmt.Sprintf("spec.capacity.storage: %v", err))
	}
	ref := v.GetSpec().GetClaimRef()
	if ref == nil || ref.GetUid() == "" {
		return // Available, set before the claims were served
	}
	key := ref.GetName()
	if ref.GetNamespace() != "" {
		key = ref.GetNamespace() + "/" + key
	}
	c, ok := s.claims[key]
	if ok && c.GetMetadata().GetUid() != ref.GetUid() {
		ok = false // deleted, and another claim took its name
	}
	switch {
	case !ok:
		s.release(name)
	case c.GetSpec().GetVolumeName() == "":
		// Half bound: the claim's sync finishes it (it is pre-bound).
	case c.GetSpec().GetVolumeName() == name:
		s.setVolumePhase(name, pvBound)
	case vbHasAnn(v.GetMetadata(), AnnBoundByController):
		// The controller gave this volume to a claim that is bound to
		// another: free it.
		v = s.editVol(name)
		v.Spec.ClaimRef = nil
		delete(v.Metadata.Annotations, AnnBoundByController)
		s.setVolumePhase(name, pvAvailable)
	default:
		// A user pre-bound it to a claim bound elsewhere: keep the
		// reservation, drop the UID.
		v = s.editVol(name)
		v.Spec.ClaimRef.Uid = ""
		s.setVolumePhase(name, pvAvailable)
	}
}

// release handles a volume whose claim is gone, by its reclaim policy.
func (s *vbState) release(name string) {
	v := s.vols[name]
	ref := v.GetSpec().GetClaimRef()
	s.claimGone[name] = &corev1.ObjectReference{Kind: claimKind, Namespace: ref.GetNamespace(), Name: ref.GetName(), Uid: ref.GetUid()}
	policy := v.GetSpec().GetPersistentVolumeReclaimPolicy()
	if policy == reclaimDelete {
		if v.GetMetadata().GetDeletionTimestamp() == nil {
			s.deleteVol[name] = true
		}
		return
	}
	if phase := v.GetStatus().GetPhase(); phase == pvReleased || phase == pvFailed {
		return // Released already, or Failed: let the user see it
	}
	s.setVolumePhase(name, pvReleased)
	switch policy {
	case reclaimRetain, "":
	case reclaimRecycle:
		s.volumeEvent(name, "Warning", reasonFailedRecycle, msgRecycleUnsupported)
	default:
		s.volumeEvent(name, "Warning", reasonUnknownReclaim, msgUnknownReclaimPolicy)
	}
}

// actions compares the desired objects with the originals.
func (s *vbState) actions() VolumeActions {
	var out VolumeActions
	usedClaims := map[string]bool{}
	for _, name := range s.volNames {
		ch := VolumeChange{}
		s.volumeChange(&ch, name)
		if key, ok := s.pairs[name]; ok {
			s.claimChange(&ch, key)
			usedClaims[key] = true
		}
		if ch.HasWrites() || len(ch.Events) > 0 {
			out.Changes = append(out.Changes, ch)
		}
	}
	for _, key := range s.claimKeys {
		if usedClaims[key] {
			continue
		}
		ch := VolumeChange{}
		s.claimChange(&ch, key)
		if ch.HasWrites() || len(ch.Events) > 0 {
			out.Changes = append(out.Changes, ch)
		}
	}
	return out
}

func (s *vbState) volumeChange(ch *VolumeChange, name string) {
	v, orig := s.vols[name], s.volOrig[name]
	ch.Events = append(ch.Events, s.volEvents[name]...)
	switch {
	case s.deleteVol[name]:
		ch.Volume, ch.DeleteVolume = orig, true
	case v != orig:
		ch.Volume = v
		ch.UpdateVolume = !vbSame(v.GetMetadata(), orig.GetMetadata()) || !vbSame(v.GetSpec(), orig.GetSpec())
		ch.UpdateVolumeStatus = !vbSame(v.GetStatus(), orig.GetStatus())
	}
	if ch.HasWrites() {
		ch.RequireClaimGone = s.claimGone[name]
	} else if len(ch.Events) > 0 {
		ch.Volume = orig
	}
}

func (s *vbState) claimChange(ch *VolumeChange, key string) {
	c, orig := s.claims[key], s.claimOrig[key]
	ch.Claim = orig
	if c != orig {
		ch.Claim = c
		ch.UpdateClaim = !vbSame(c.GetMetadata(), orig.GetMetadata()) || !vbSame(c.GetSpec(), orig.GetSpec())
		ch.UpdateClaimStatus = !vbSame(c.GetStatus(), orig.GetStatus())
	}
	if ch.UpdateClaim || ch.UpdateClaimStatus {
		ch.RequireVolumeGone = s.volumeGone[key]
	}
	ch.Events = append(ch.Events, s.claimEvents[key]...)
}

// vbSame reports whether two messages are equal, a nil one equal to an empty one.
func vbSame[M proto.Message](a, b M) bool {
	ra, rb := a.ProtoReflect(), b.ProtoReflect()
	if !ra.IsValid() {
		ra = ra.Type().New()
	}
	if !rb.IsValid() {
		rb = rb.Type().New()
	}
	return proto.Equal(ra.Interface(), rb.Interface())
}

// vbBoundTo reports whether v's claimRef names c: same namespace and name,
// and c's UID unless the claimRef has none (a user's pre-binding).
func vbBoundTo(v *corev1.PersistentVolume, c *corev1.PersistentVolumeClaim) bool {
	ref, md := v.GetSpec().GetClaimRef(), c.GetMetadata()
	if ref == nil || ref.GetName() != md.GetName() || ref.GetNamespace() != md.GetNamespace() {
		return false
	}
	return ref.GetUid() == "" || ref.GetUid() == md.GetUid()
}

// vbHasModes reports whether have includes every mode of want.
func vbHasModes(have, want []string) bool {
	for _, m := range want {
		if !slices.Contains(have, m) {
			return false
		}
	}
	return true
}

// vbModeMatches compares volume modes, unset meaning Filesystem.
func vbModeMatches(claim, volume string) bool {
	return cmp.Or(claim, volumeModeFilesystem) == cmp.Or(volume, volumeModeFilesystem)
}

// vbRequest is a claim's storage request; none is zero, as in Kubernetes.
func vbRequest(c *corev1.PersistentVolumeClaim) (resource.Quantity, error) {
	v, ok := c.GetSpec().GetResources().GetRequests()[storageResource]
	if !ok {
		return resource.Quantity{}, nil
	}
	return vbQuantity(v)
}

// vbQuantity parses a quantity written as a string ("5Gi") or a number, the
// two forms the API server accepts; a missing value is an error.
func vbQuantity(v *structpb.Value) (resource.Quantity, error) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		q, err := resource.ParseQuantity(k.StringValue)
		if err != nil {
			return resource.Quantity{}, fmt.Errorf("invalid quantity %q: %w", k.StringValue, err)
		}
		return q, nil
	case *structpb.Value_NumberValue:
		q, err := resource.ParseQuantity(strconv.FormatFloat(k.NumberValue, 'f', -1, 64))
		if err != nil {
			return resource.Quantity{}, fmt.Errorf("invalid quantity %v: %w", k.NumberValue, err)
		}
		return q, nil
	case nil:
		return resource.Quantity{}, fmt.Errorf("missing")
	default:
		return resource.Quantity{}, fmt.Errorf("neither a string nor a number")
	}
}

func vbHasAnn(md *metav1.ObjectMeta, key string) bool {
	_, ok := md.GetAnnotations()[key]
	return ok
}

// vbSetAnn sets annotation key to "yes" unless md has it (with any value).
func vbSetAnn(md *metav1.ObjectMeta, key string) {
	if vbHasAnn(md, key) {
		return
	}
	if md.Annotations == nil {
		md.Annotations = map[string]string{}
	}
	md.Annotations[key] = "yes"
}
