package apiserver

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

const evictionAPIVersion = "policy/v1"

// evict implements POST pods/{name}/eviction: the pod is deleted as a DELETE with
// the eviction's deleteOptions would delete it (their preconditions, grace period,
// propagation policy and dryRun included), and the answer is Kubernetes' Status
// {status: Success} with code 201. Evictions are not checked against
// PodDisruptionBudgets: Rafter has no PodDisruptionBudget kind yet (see DESIGN.md),
// so an eviction is never refused with 429. Leader only (the caller forwards).
func (s *Server) evict(ctx context.Context, k *kindInfo, req *corev1.CreateEvictionRequest) (*metav1.Status, error) {
	ns, name := req.GetNamespace(), req.GetName()
	ev := req.GetBody()
	if ev == nil {
		return nil, badRequest("the request body must be an Eviction object")
	}
	if av := ev.GetApiVersion(); av != "" && av != evictionAPIVersion {
		return nil, badRequest("the API version in the data (%s) does not match the expected API version (%s)", av, evictionAPIVersion)
	}
	if kd := ev.GetKind(); kd != "" && kd != "Eviction" {
		return nil, badRequest("the kind in the data (%s) does not match the expected kind (Eviction)", kd)
	}
	if n := ev.GetMetadata().GetNamespace(); n != "" && n != ns {
		return nil, badRequest("the namespace of the provided object (%s) does not match the namespace sent on the request (%s)", n, ns)
	}
	if ev.GetMetadata().GetName() != name {
		return nil, badRequest("name in URL does not match name in Eviction object")
	}
	opts := &metav1.DeleteOptions{}
	if o := ev.GetDeleteOptions(); o != nil {
		opts = proto.Clone(o).(*metav1.DeleteOptions)
	}
	del := &metav1.DeleteRequest{Namespace: ns, Name: name, Body: opts, DryRun: req.GetDryRun()}
	if _, err := s.remove(discardHeaders(ctx), k, del); err != nil {
		return nil, err
	}
	return &metav1.Status{ApiVersion: "v1", Kind: "Status", Metadata: &metav1.ListMeta{}, Status: "Success", Code: 201}, nil
}

// discardHeaders returns a context in which grpc.SetHeader is accepted and
// dropped: the delete an eviction makes may set the 202 Accepted of a pod only
// marked for deletion, but an eviction's answer is 201 Created in every case.
func discardHeaders(ctx context.Context) context.Context {
	method, _ := grpc.Method(ctx)
	return grpc.NewContextWithServerTransportStream(ctx, headerSink{method: method})
}

// headerSink is a grpc.ServerTransportStream that drops headers and trailers.
type headerSink struct{ method string }

var _ grpc.ServerTransportStream = headerSink{}

func (h headerSink) Method() string             { return h.method }
func (headerSink) SetHeader(metadata.MD) error  { return nil }
func (headerSink) SendHeader(metadata.MD) error { return nil }
func (headerSink) SetTrailer(metadata.MD) error { return nil }
