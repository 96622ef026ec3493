package apiserver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/util/validation/field"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	fsmv1 "github.com/rafter-dev/rafter/gen/rafter/fsm/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

// The generic resource server: create, get, list, update, delete and watch,
// written once for every kind. Per-kind behaviour comes from the kind's strategy.

// reqField returns a request field by its proto name, or an invalid Value.
func reqField(req proto.Message, name string) (protoreflect.Value, bool) {
	m := req.ProtoReflect()
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		return protoreflect.Value{}, false
	}
	return m.Get(fd), true
}

func reqString(req proto.Message, name string) string {
	v, ok := reqField(req, name)
	if !ok {
		return ""
	}
	return v.String()
}

// reqBody returns the object a Create or Update request carries, or nil.
func reqBody(req proto.Message) fsm.Object {
	m := req.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("body")
	if fd == nil || !m.Has(fd) {
		return nil
	}
	obj, _ := m.Get(fd).Message().Interface().(fsm.Object)
	return obj
}

func isDryRun(req proto.Message) bool {
	v, ok := reqField(req, "dryRun")
	if !ok {
		return false
	}
	l := v.List()
	for i := 0; i < l.Len(); i++ {
		if l.Get(i).String() == "All" {
			return true
		}
	}
	return false
}

// setWarnings sends Kubernetes-style warnings as gRPC header metadata; the REST
// gateway turns them into Warning headers.
func setWarnings(ctx context.Context, warnings []string) {
	if len(warnings) == 0 {
		return
	}
	md := metadata.MD{}
	for _, w := range warnings {
		md.Append("warning", `299 - "`+strings.ReplaceAll(w, `"`, `'`)+`"`)
	}
	_ = grpc.SetHeader(ctx, md)
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

const nameSuffixChars = "bcdfghjklmnpqrstvwxz2456789"

func generateName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	out := []byte(prefix)
	for _, c := range b {
		out = append(out, nameSuffixChars[int(c)%len(nameSuffixChars)])
	}
	return string(out)
}

// checkTypeMeta fills apiVersion and kind, rejecting a body of another kind.
func checkTypeMeta(k *kindInfo, obj fsm.Object) error {
	m := obj.ProtoReflect()
	av, kd := m.Descriptor().Fields().ByName("apiVersion"), m.Descriptor().Fields().ByName("kind")
	if av == nil || kd == nil {
		return nil
	}
	if got := m.Get(av).String(); got != "" && got != k.APIVersion() {
		return badRequest("the API version in the data (%s) does not match the expected API version (%s)", got, k.APIVersion())
	}
	if got := m.Get(kd).String(); got != "" && got != k.Kind.Kind {
		return badRequest("the kind in the data (%s) does not match the expected kind (%s)", got, k.Kind.Kind)
	}
	m.Set(av, protoreflect.ValueOfString(k.APIVersion()))
	m.Set(kd, protoreflect.ValueOfString(k.Kind.Kind))
	return nil
}

// create implements POST on a collection. Leader only (the caller forwards).
func (s *Server) create(ctx context.Context, k *kindInfo, req proto.Message) (proto.Message, error) {
	obj := reqBody(req)
	if obj == nil {
		return nil, badRequest("the request body must be a %s object", k.Kind.Kind)
	}
	if err := checkTypeMeta(k, obj); err != nil {
		return nil, err
	}
	md := obj.GetMetadata()
	if md == nil {
		md = &metav1.ObjectMeta{}
		obj.ProtoReflect().Set(fieldName(obj.ProtoReflect(), "metadata"), protoreflect.ValueOfMessage(md.ProtoReflect()))
	}
	ns := reqString(req, "namespace")
	if k.Namespaced {
		if md.Namespace != "" && md.Namespace != ns {
			return nil, badRequest("the namespace of the provided object (%s) does not match the namespace sent on the request (%s)", md.Namespace, ns)
		}
		md.Namespace = ns
	} else {
		md.Namespace = ""
	}
	if md.Name == "" && md.GenerateName != "" {
		md.Name = generateName(md.GenerateName)
	}
	warnings := s.unsupportedWarnings(k, obj)

	md.Uid = newUID()
	md.CreationTimestamp = timestamppb.New(s.cfg.Clock.Now().UTC().Truncate(1e9))
	md.ResourceVersion, md.Generation, md.SelfLink = "", 0, ""
	md.DeletionTimestamp, md.DeletionGracePeriodSeconds = nil, nil
	st := k.strategy
	if st.prepareCreate != nil {
		st.prepareCreate(obj)
	}
	if st.defaults != nil {
		st.defaults(obj)
	}
	canonicalQuantities(obj.ProtoReflect())
	errs := validateMeta(*k, obj)
	if st.validate != nil {
		errs = append(errs, st.validate(obj, nil)...)
	}
	if len(errs) > 0 {
		return nil, invalid(*k, md.Name, errs)
	}
	view := s.fsm.View()
	if k.Namespaced {
		nsObj, ok := view.Get("Namespace", "", ns)
		if !ok {
			return nil, statusFromStore(*k, md.Name, &fsm.NamespaceNotFoundError{Namespace: ns})
		}
		if err := namespaceTerminating(*k, md.Name, nsObj.(*corev1.Namespace)); err != nil {
			return nil, err
		}
	}
	if _, exists := view.Get(k.Kind.Kind, md.Namespace, md.Name); exists {
		return nil, statusFromStore(*k, md.Name, fsm.ErrAlreadyExists)
	}
	if st.allocate != nil {
		reserved, errs := st.allocate(s.alloc, view, obj, nil)
		defer s.alloc.release(reserved)
		if len(errs) > 0 {
			return nil, invalid(*k, md.Name, errs)
		}
	}
	setWarnings(ctx, warnings)
	if isDryRun(req) {
		return obj, nil
	}
	stored, err := s.put(ctx, k, obj, true, "")
	if err != nil {
		return nil, statusFromStore(*k, md.Name, err)
	}
	return stored, nil
}

// put proposes a Put and returns the object as stored.
func (s *Server) put(ctx context.Context, k *kindInfo, obj fsm.Object, create bool, expectedRV string) (fsm.Object, error) {
	a, err := anypb.New(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", k.Kind.Kind, err)
	}
	cmd := &fsmv1.Command{Op: &fsmv1.Command_Put{Put: &fsmv1.Put{
		Kind: k.Kind.Kind, Object: a, Create: create, ExpectedResourceVersion: expectedRV,
	}}}
	if s.cfg.UnsafeAckBeforeCommit {
		// Deliberately broken (see Config): answer before Raft has committed anything.
		go func() { _, _, _ = s.peer.Propose(context.WithoutCancel(ctx), cmd) }()
		return obj, nil
	}
	_, res, err := s.peer.Propose(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return res.Object, nil
}

// update implements PUT on an object (status: PUT on its /status subresource).
func (s *Server) update(ctx context.Context, k *kindInfo, req proto.Message, status bool) (proto.Message, error) {
	body := reqBody(req)
	if body == nil {
		return nil, badRequest("the request body must be a %s object", k.Kind.Kind)
	}
	if err := checkTypeMeta(k, body); err != nil {
		return nil, err
	}
	ns, name := reqString(req, "namespace"), reqString(req, "name")
	if !k.Namespaced {
		ns = ""
	}
	bmd := body.GetMetadata()
	if bmd.GetName() != "" && bmd.GetName() != name {
		return nil, badRequest("the name of the object (%s) does not match the name on the URL (%s)", bmd.GetName(), name)
	}
	if k.Namespaced && bmd.GetNamespace() != "" && bmd.GetNamespace() != ns {
		return nil, badRequest("the namespace of the provided object (%s) does not match the namespace sent on the request (%s)", bmd.GetNamespace(), ns)
	}
	var warnings []string
	if !status {
		warnings = s.unsupportedWarnings(k, body)
	}
	expected := bmd.GetResourceVersion()
	if expected != "" {
		if _, err := strconv.ParseUint(expected, 10, 64); err != nil {
			return nil, invalid(*k, name, field.ErrorList{field.Invalid(field.NewPath("metadata", "resourceVersion"), expected, "must be a Raft index as returned by the server")})
		}
	}
	for attempt := 0; ; attempt++ {
		view := s.fsm.View()
		old, ok := view.Get(k.Kind.Kind, ns, name)
		if !ok {
			return nil, notFound(*k, name)
		}
		obj := s.merge(k, body, old, status)
		precondition := expected
		if precondition == "" {
			precondition = old.GetMetadata().GetResourceVersion()
		}
		st := k.strategy
		if st.defaults != nil {
			st.defaults(obj)
		}
		canonicalQuantities(obj.ProtoReflect())
		errs := validateMeta(*k, obj)
		errs = append(errs, validateMetaUpdate(obj, old)...)
		errs = append(errs, validateNoNewFinalizers(obj, old)...)
		if st.validate != nil {
			errs = append(errs, st.validate(obj, old)...)
		}
		if len(errs) > 0 {
			return nil, invalid(*k, name, errs)
		}
		var reserved []string
		if st.allocate != nil && !status {
			var aerrs field.ErrorList
			reserved, aerrs = st.allocate(s.alloc, view, obj, old)
			if len(aerrs) > 0 {
				s.alloc.release(reserved)
				return nil, invalid(*k, name, aerrs)
			}
		}
		if isDryRun(req) {
			s.alloc.release(reserved)
			setWarnings(ctx, warnings)
			return obj, nil
		}
		var stored fsm.Object
		var err error
		if finalized(obj) {
			stored, err = s.removeFinalized(ctx, k, obj, precondition)
		} else {
			stored, err = s.put(ctx, k, obj, false, precondition)
		}
		s.alloc.release(reserved)
		if errors.Is(err, fsm.ErrConflict) && expected == "" && attempt < 5 {
			continue // an unconditional update lost a race: read again and reapply
		}
		if err != nil {
			return nil, statusFromStore(*k, name, err)
		}
		setWarnings(ctx, warnings)
		return stored, nil
	}
}

// merge builds the object an update proposes. A main-resource update keeps status
// and server-set metadata from old; a status update takes only status from body.
func (s *Server) merge(k *kindInfo, body, old fsm.Object, status bool) fsm.Object {
	var obj fsm.Object
	statusFD := fieldName(old.ProtoReflect(), "status")
	if status {
		obj = proto.Clone(old).(fsm.Object)
		if statusFD != nil {
			if body.ProtoReflect().Has(statusFD) {
				obj.ProtoReflect().Set(statusFD, protoreflect.ValueOfMessage(proto.Clone(body.ProtoReflect().Get(statusFD).Message().Interface()).ProtoReflect()))
			} else {
				obj.ProtoReflect().Clear(statusFD)
			}
		}
		return obj
	}
	obj = proto.Clone(body).(fsm.Object)
	if obj.GetMetadata() == nil {
		obj.ProtoReflect().Set(fieldName(obj.ProtoReflect(), "metadata"), protoreflect.ValueOfMessage((&metav1.ObjectMeta{}).ProtoReflect()))
	}
	if statusFD != nil && k.HasStatus {
		if old.ProtoReflect().Has(statusFD) {
			obj.ProtoReflect().Set(statusFD, old.ProtoReflect().Get(statusFD))
		} else {
			obj.ProtoReflect().Clear(statusFD)
		}
	}
	md, omd := obj.GetMetadata(), old.GetMetadata()
	md.Name, md.Namespace = omd.Name, omd.Namespace
	if md.Uid == "" {
		md.Uid = omd.Uid
	}
	md.CreationTimestamp, md.DeletionTimestamp = omd.CreationTimestamp, omd.DeletionTimestamp
	md.DeletionGracePeriodSeconds, md.Generation, md.SelfLink = omd.DeletionGracePeriodSeconds, omd.Generation, ""
	return obj
}

// remove implements DELETE on an object.
func (s *Server) remove(ctx context.Context, k *kindInfo, req *metav1.DeleteRequest) (proto.Message, error) {
	ns := req.GetNamespace()
	if !k.Namespaced {
		ns = ""
	}
	if k.Kind.Kind == "Namespace" && systemNamespaces[req.GetName()] {
		return nil, apiError(ReasonForbidden, fmt.Sprintf("namespaces %q is forbidden: this namespace may not be deleted", req.GetName()),
			&metav1.StatusDetails{Name: req.GetName(), Kind: "namespaces"})
	}
	if k.Kind.Kind == "Namespace" {
		if obj, done, err := s.terminateNamespace(ctx, k, req); done {
			return obj, err
		}
	}
	policy, err := propagationPolicy(req)
	if err != nil {
		return nil, err
	}
	if k.Kind.Kind == "Pod" {
		if obj, done, err := s.deletePodGracefully(ctx, k, ns, req, policy); done {
			return obj, err
		}
	}
	if obj, done, err := s.markDeleted(ctx, k, ns, req, policy); done {
		return obj, err
	}
	pre := req.GetBody().GetPreconditions()
	del := &fsmv1.Delete{Kind: k.Kind.Kind, Namespace: ns, Name: req.GetName(),
		ExpectedResourceVersion: pre.GetResourceVersion(), ExpectedUid: pre.GetUid()}
	if isDryRun(req) || containsAll(req.GetBody().GetDryRun()) {
		obj, ok := s.fsm.View().Get(k.Kind.Kind, ns, req.GetName())
		if !ok {
			return nil, notFound(*k, req.GetName())
		}
		return obj, nil
	}
	_, res, err := s.peer.Propose(ctx, &fsmv1.Command{Op: &fsmv1.Command_Delete{Delete: del}})
	if err != nil {
		return nil, statusFromStore(*k, req.GetName(), err)
	}
	return res.Object, nil
}

func containsAll(list []string) bool {
	for _, v := range list {
		if v == "All" {
			return true
		}
	}
	return false
}

// get implements GET on an object.
func (s *Server) get(ctx context.Context, k *kindInfo, req *metav1.GetRequest) (proto.Message, error) {
	if err := s.readBarrier(ctx, req.GetResourceVersion()); err != nil {
		return nil, statusFromStore(*k, req.GetName(), err)
	}
	ns := req.GetNamespace()
	if !k.Namespaced {
		ns = ""
	}
	obj, ok := s.fsm.View().Get(k.Kind.Kind, ns, req.GetName())
	if !ok {
		return nil, notFound(*k, req.GetName())
	}
	return obj, nil
}

// list implements GET on a collection.
func (s *Server) list(ctx context.Context, k *kindInfo, req *metav1.ListRequest) (proto.Message, error) {
	match, err := newMatcher(k, req.GetLabelSelector(), req.GetFieldSelector())
	if err != nil {
		return nil, err
	}
	if err := s.readBarrier(ctx, req.GetResourceVersion()); err != nil {
		return nil, statusFromStore(*k, "", err)
	}
	ns := req.GetNamespace()
	if !k.Namespaced {
		ns = ""
	}
	after := ""
	if c := req.GetContinue(); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			return nil, badRequest("continue key is not valid: %v", err)
		}
		after = string(b)
	}
	view := s.fsm.View()
	list := k.list.New()
	items := list.Mutable(list.Descriptor().Fields().ByName("items")).List()
	next := ""
	view.List(k.Kind.Kind, ns, func(o fsm.Object) bool {
		md := o.GetMetadata()
		key := md.GetNamespace() + "/" + md.GetName()
		if after != "" && key <= after {
			return true
		}
		if !match(o) {
			return true
		}
		if req.GetLimit() > 0 && int64(items.Len()) == req.GetLimit() {
			next = base64.RawURLEncoding.EncodeToString([]byte(lastKey(items)))
			return false
		}
		items.Append(protoreflect.ValueOfMessage(o.ProtoReflect()))
		return true
	})
	fields := list.Descriptor().Fields()
	list.Set(fields.ByName("apiVersion"), protoreflect.ValueOfString(k.APIVersion()))
	list.Set(fields.ByName("kind"), protoreflect.ValueOfString(k.Kind.Kind+"List"))
	lm := &metav1.ListMeta{ResourceVersion: strconv.FormatUint(view.Index, 10), Continue: next}
	list.Set(fields.ByName("metadata"), protoreflect.ValueOfMessage(lm.ProtoReflect()))
	return list.Interface(), nil
}

func lastKey(items protoreflect.List) string {
	md := items.Get(items.Len() - 1).Message().Interface().(fsm.Object).GetMetadata()
	return md.GetNamespace() + "/" + md.GetName()
}

// unsupportedWarnings names the fields of obj the system stores but does not act on.
func (s *Server) unsupportedWarnings(k *kindInfo, obj fsm.Object) []string {
	paths := s.support[k.Kind.Kind].unsupported(obj.ProtoReflect())
	if len(paths) == 0 {
		return nil
	}
	return []string{warningText(k.Kind.Kind, paths)}
}

var systemNamespaces = map[string]bool{"default": true, "kube-system": true, "kube-public": true, "kube-node-lease": true}
