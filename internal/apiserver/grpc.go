package apiserver

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	clusterv1 "github.com/rafter-dev/rafter/gen/rafter/cluster/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	nodev1 "github.com/rafter-dev/rafter/gen/rafter/node/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

// RegisterGRPC registers every kind's service, the Cluster service and the Peer
// service on gs. The kind services are built from their descriptors and all served
// by the same generic handlers.
func (s *Server) RegisterGRPC(gs *grpc.Server) error {
	for _, k := range s.reg.ordered {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(k.Service)
		if err != nil {
			return fmt.Errorf("service %s: %w", k.Service, err)
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			return fmt.Errorf("%s is not a service", k.Service)
		}
		desc := &grpc.ServiceDesc{ServiceName: string(sd.FullName()), HandlerType: (*any)(nil), Metadata: sd.ParentFile().Path()}
		methods := sd.Methods()
		for i := 0; i < methods.Len(); i++ {
			md := methods.Get(i)
			in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
			if err != nil {
				return fmt.Errorf("method %s input: %w", md.FullName(), err)
			}
			full := "/" + string(sd.FullName()) + "/" + string(md.Name())
			if md.IsStreamingServer() {
				desc.Streams = append(desc.Streams, grpc.StreamDesc{
					StreamName: string(md.Name()), ServerStreams: true,
					Handler: s.streamHandler(k, md, in),
				})
				continue
			}
			desc.Methods = append(desc.Methods, grpc.MethodDesc{
				MethodName: string(md.Name()),
				Handler:    s.unaryHandler(k, md, in, full),
			})
		}
		gs.RegisterService(desc, s)
	}
	clusterv1.RegisterClusterServer(gs, &clusterServer{s: s})
	clusterv1.RegisterPeerServer(gs, &peerServer{s: s})
	nodev1.RegisterNodeAgentServer(gs, newNodeProxy(s))
	return nil
}

func (s *Server) unaryHandler(k *kindInfo, md protoreflect.MethodDescriptor, in protoreflect.MessageType, full string) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	out, _ := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	method := string(md.Name())
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		req := in.New().Interface()
		if err := dec(req); err != nil {
			return nil, err
		}
		handler := func(ctx context.Context, r any) (any, error) {
			return s.dispatch(ctx, k, method, full, r.(proto.Message), out)
		}
		if interceptor == nil {
			return handler(ctx, req)
		}
		return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: full}, handler)
	}
}

// dispatch routes one unary call: writes go to the leader, reads are served here.
func (s *Server) dispatch(ctx context.Context, k *kindInfo, method, full string, req proto.Message, out protoreflect.MessageType) (proto.Message, error) {
	switch method {
	case "Create", "Update", "UpdateStatus", "Delete", "Bind", "Evict", "UpdateScale":
		var err error
		if resp := out.New().Interface(); s.forwardUnlessLeader(ctx, full, req, resp, &err) {
			if err != nil {
				return nil, err
			}
			return resp, nil
		}
	}
	switch method {
	case "Create", "Update", "UpdateStatus", "Delete", "Bind", "Evict", "UpdateScale":
		// A new leader's state may lag what earlier leaders acknowledged until its
		// first barrier, and any leader's FSM may trail what a follower already
		// applied and showed; validating against either could answer NotFound
		// wrongly.
		if err := s.peer.LeaderCaughtUp(ctx); err != nil {
			return nil, statusFromStore(*k, "", err)
		}
	}
	switch method {
	case "Create":
		return s.create(ctx, k, req)
	case "Update":
		return s.update(ctx, k, req, false)
	case "UpdateStatus":
		return s.update(ctx, k, req, true)
	case "Delete":
		return s.remove(ctx, k, req.(*metav1.DeleteRequest))
	case "Bind":
		if r, ok := req.(*corev1.CreateBindingRequest); ok {
			return s.bind(ctx, k, r)
		}
	case "Evict":
		if r, ok := req.(*corev1.CreateEvictionRequest); ok {
			return s.evict(ctx, k, r)
		}
	case "GetScale":
		if r, ok := req.(*metav1.GetRequest); ok && k.HasScale {
			return s.getScale(ctx, k, r)
		}
	case "UpdateScale":
		if r, ok := req.(*appsv1.UpdateScaleRequest); ok && k.HasScale {
			return s.updateScale(ctx, k, r)
		}
	case "Get", "GetStatus":
		return s.get(ctx, k, req.(*metav1.GetRequest))
	case "List":
		return s.list(ctx, k, req.(*metav1.ListRequest))
	}
	return nil, apiError(ReasonMethodNotAllowed, fmt.Sprintf("method %s is not implemented", full), nil)
}

func (s *Server) streamHandler(k *kindInfo, md protoreflect.MethodDescriptor, in protoreflect.MessageType) grpc.StreamHandler {
	out, _ := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	return func(srv any, stream grpc.ServerStream) error {
		req := in.New().Interface()
		if err := stream.RecvMsg(req); err != nil {
			return err
		}
		if md.Name() != "Watch" {
			return apiError(ReasonMethodNotAllowed, "not implemented", nil)
		}
		return s.watch(stream, k, req.(*metav1.ListRequest), out)
	}
}

// watch streams changes of one kind. resourceVersion "" starts with the current
// state (as ADDED events) read linearizably, "0" with this peer's current state, and
// N with every change after N (410 Gone when N is older than the history window).
func (s *Server) watch(stream grpc.ServerStream, k *kindInfo, req *metav1.ListRequest, out protoreflect.MessageType) error {
	ctx := stream.Context()
	if t := req.GetTimeoutSeconds(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Second)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	match, err := newMatcher(k, req.GetLabelSelector(), req.GetFieldSelector())
	if err != nil {
		return err
	}
	ns := req.GetNamespace()
	if !k.Namespaced {
		ns = ""
	}
	filter := watchFilter(k, ns, match)
	var (
		w       *fsm.Watcher
		initial []fsm.Object
	)
	switch rv := req.GetResourceVersion(); rv {
	case "", "0":
		if err := s.readBarrier(ctx, rv); err != nil {
			return statusFromStore(*k, "", err)
		}
		var view *fsm.View
		view, w = s.fsm.ViewAndWatch(filter)
		view.List(k.Kind.Kind, ns, func(o fsm.Object) bool {
			if match(o) {
				initial = append(initial, o)
			}
			return true
		})
	default:
		n, err := strconv.ParseUint(rv, 10, 64)
		if err != nil {
			return badRequest("resourceVersion %q is not valid: must be a decimal Raft index", rv)
		}
		// Like Kubernetes, a version this peer has not reached is waited for briefly,
		// then refused, rather than watched forever.
		wctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
		err = s.peer.WaitApplied(wctx, n)
		cancel()
		if err != nil {
			return apiError(ReasonTimeout, fmt.Sprintf("Too large resource version: %d, current: %d", n, s.fsm.Applied()), nil)
		}
		if w, err = s.fsm.Watch(n, filter); err != nil {
			return statusFromStore(*k, "", fmt.Errorf("watch from %d: %w", n, err))
		}
	}
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	send := func(typ string, obj fsm.Object) error {
		ev := out.New()
		ev.Set(ev.Descriptor().Fields().ByName("type"), protoreflect.ValueOfString(typ))
		ev.Set(ev.Descriptor().Fields().ByName("object"), protoreflect.ValueOfMessage(obj.ProtoReflect()))
		return stream.SendMsg(ev.Interface())
	}
	for _, o := range initial {
		if err := send(string(fsm.Added), o); err != nil {
			return err
		}
	}
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // timeoutSeconds elapsed, the client left, or shutdown
			}
			return statusFromStore(*k, "", err)
		}
		if err := send(string(ev.Type), ev.Object); err != nil {
			return err
		}
	}
}
