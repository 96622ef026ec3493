package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	nodev1 "github.com/rafter-dev/rafter/gen/rafter/node/v1"
)

// nodeMetadataKey names the node a LoadImage call through the API is for.
const nodeMetadataKey = "rafter-node"

// defaultContainerAnnotation names a pod's default container, as for kubectl.
const defaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// defaultKubeletPort is where a node's agent is reached when its Node reports
// no daemonEndpoints.kubeletEndpoint.port.
const defaultKubeletPort = 10250

// agentMaxMessage bounds one message to or from an agent.
const agentMaxMessage = 16 << 20

// nodeProxy serves the NodeAgent service on a peer: logs, exec and image
// loads are piped, both ways, to the agent of the pod's node (or of the node
// named for LoadImage). Nothing goes through the Raft log: the pod and its
// Node are read from this peer's state after a linearizable read barrier.
// Safe for concurrent use.
type nodeProxy struct {
	nodev1.UnimplementedNodeAgentServer
	s *Server

	mu    sync.Mutex // guards conns
	conns map[string]*grpc.ClientConn
}

var _ nodev1.NodeAgentServer = (*nodeProxy)(nil)

// newNodeProxy returns the proxy; its agent connections are closed when the
// server starts stopping.
func newNodeProxy(s *Server) *nodeProxy {
	p := &nodeProxy{s: s, conns: map[string]*grpc.ClientConn{}}
	go func() {
		<-s.stopping
		p.mu.Lock()
		defer p.mu.Unlock()
		for addr, c := range p.conns {
			_ = c.Close()
			delete(p.conns, addr)
		}
	}()
	return p
}

// conn returns a cached connection to an agent. Connecting is bounded: an
// agent that cannot be reached fails a call within a few seconds (Unavailable)
// instead of holding it, and one that comes back is tried again soon.
func (p *nodeProxy) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: 3 * time.Second,
			Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second}}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(agentMaxMessage), grpc.MaxCallSendMsgSize(agentMaxMessage)))
	if err != nil {
		return nil, apiError(ReasonInternal, fmt.Sprintf("dial node agent %s: %v", addr, err), nil)
	}
	p.conns[addr] = c
	return c, nil
}

// badRequestPrecondition is Kubernetes' 400 for a request the object's state
// does not allow, carried as FailedPrecondition over gRPC.
func badRequestPrecondition(msg string) error {
	st := &metav1.Status{ApiVersion: "v1", Kind: "Status", Metadata: &metav1.ListMeta{},
		Status: "Failure", Message: msg, Reason: ReasonBadRequest, Code: reasonHTTP[ReasonBadRequest]}
	gs := status.New(codes.FailedPrecondition, msg)
	if d, err := gs.WithDetails(st); err == nil {
		gs = d
	}
	return gs.Err()
}

// nodeAgent returns a connection to node's agent, at its InternalIP (else
// ExternalIP, else Hostname address) and kubelet endpoint port.
func (p *nodeProxy) nodeAgent(name string) (*grpc.ClientConn, error) {
	obj, ok := p.s.fsm.View().Get("Node", "", name)
	if !ok {
		return nil, notFound(*p.s.reg.byKind["Node"], name)
	}
	node := obj.(*corev1.Node)
	var host string
	for _, typ := range []string{"InternalIP", "ExternalIP", "Hostname"} {
		for _, a := range node.GetStatus().GetAddresses() {
			if host == "" && a.GetType() == typ && a.GetAddress() != "" {
				host = a.GetAddress()
			}
		}
	}
	if host == "" {
		return nil, apiError(ReasonServiceUnavailable, fmt.Sprintf("node %s reports no address", name), nil)
	}
	port := int(node.GetStatus().GetDaemonEndpoints().GetKubeletEndpoint().GetPort())
	if port <= 0 {
		port = defaultKubeletPort
	}
	return p.conn(net.JoinHostPort(host, strconv.Itoa(port)))
}

// podAgent reads a pod (linearizably) and connects to its node's agent.
func (p *nodeProxy) podAgent(ctx context.Context, namespace, name string) (*corev1.Pod, *grpc.ClientConn, error) {
	k := p.s.reg.byKind["Pod"]
	if err := p.s.readBarrier(ctx, ""); err != nil {
		return nil, nil, statusFromStore(*k, name, err)
	}
	obj, ok := p.s.fsm.View().Get("Pod", namespace, name)
	if !ok {
		return nil, nil, notFound(*k, name)
	}
	pod := obj.(*corev1.Pod)
	node := pod.GetSpec().GetNodeName()
	if node == "" {
		return nil, nil, badRequestPrecondition(fmt.Sprintf("pod %s does not have a host assigned", name))
	}
	conn, err := p.nodeAgent(node)
	if err != nil {
		return nil, nil, err
	}
	return pod, conn, nil
}

// podContainer picks the container a request is for: the one named (which
// must be the pod's), else the default-container annotation's, else the
// pod's only container.
func podContainer(pod *corev1.Pod, name string) (string, error) {
	var ctrs, inits []string
	for _, c := range pod.GetSpec().GetContainers() {
		ctrs = append(ctrs, c.GetName())
	}
	for _, c := range pod.GetSpec().GetInitContainers() {
		inits = append(inits, c.GetName())
	}
	valid := func(n string) bool {
		for _, c := range append(append([]string(nil), ctrs...), inits...) {
			if c == n {
				return true
			}
		}
		return false
	}
	podName := pod.GetMetadata().GetName()
	if name != "" {
		if !valid(name) {
			return "", badRequest("container %s is not valid for pod %s", name, podName)
		}
		return name, nil
	}
	if d := pod.GetMetadata().GetAnnotations()[defaultContainerAnnotation]; d != "" && valid(d) {
		return d, nil
	}
	if len(ctrs) == 1 {
		return ctrs[0], nil
	}
	msg := fmt.Sprintf("a container name must be specified for pod %s, choose one of: %v", podName, ctrs)
	if len(inits) > 0 {
		msg += fmt.Sprintf(" or one of the init containers: %v", inits)
	}
	return "", badRequest("%s", msg)
}

// agentError gives an agent's error the API's shape: its code as a Kubernetes
// reason, and an agent that cannot be reached as 503 naming the node.
func agentError(node string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return apiError(ReasonInternal, fmt.Sprintf("node %s: %v", node, err), nil)
	}
	if len(st.Details()) > 0 {
		return err
	}
	switch st.Code() {
	case codes.NotFound:
		return apiError(ReasonNotFound, st.Message(), nil)
	case codes.InvalidArgument, codes.FailedPrecondition:
		return apiError(ReasonBadRequest, st.Message(), nil)
	case codes.Unavailable:
		return apiError(ReasonServiceUnavailable, fmt.Sprintf("node %s: the node agent cannot be reached: %s", node, st.Message()), nil)
	}
	return err
}

// withStop returns a context that also ends when the server starts stopping,
// so that an open stream (a `logs -f`, an exec) does not hold up a graceful
// stop; watches end then too.
func (p *nodeProxy) withStop(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-p.s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// streamError is agentError, or 503 when the stream ended because this peer
// is stopping.
func (p *nodeProxy) streamError(node string, err error) error {
	select {
	case <-p.s.stopping:
		return apiError(ReasonServiceUnavailable, "the API server is shutting down; the stream was ended", nil)
	default:
		return agentError(node, err)
	}
}

// agentAccepted waits until the agent has accepted a stream (sent its headers),
// or returns the error it answered with instead. first is a message that
// arrived with the answer, if any.
func agentAccepted[T any](cs grpc.ClientStream) (first *T, err error) {
	md, err := cs.Header()
	if err == nil && md != nil {
		return nil, nil
	}
	m := new(T)
	if err := cs.RecvMsg(m); err != nil {
		return nil, err // io.EOF: the agent ended the call at once, successfully
	}
	return m, nil
}

// Logs streams a container's log from the agent of the pod's node.
func (p *nodeProxy) Logs(req *nodev1.LogsRequest, ss grpc.ServerStreamingServer[nodev1.Chunk]) error {
	ctx, cancel := p.withStop(ss.Context())
	defer cancel()
	pod, conn, err := p.podAgent(ctx, req.GetNamespace(), req.GetPod())
	if err != nil {
		return err
	}
	fwd := proto.Clone(req).(*nodev1.LogsRequest)
	if fwd.Container, err = podContainer(pod, req.GetContainer()); err != nil {
		return err
	}
	fwd.Uid = pod.GetMetadata().GetUid()
	node := pod.GetSpec().GetNodeName()
	as, err := nodev1.NewNodeAgentClient(conn).Logs(ctx, fwd)
	if err != nil {
		return p.streamError(node, err)
	}
	return relay[nodev1.Chunk](p, node, as, ss, nil)
}

// relay waits until the agent has accepted its stream as, then commits the
// call to the client (headers: from here on clients do not retry it), runs
// started if given, and passes every message of the agent to the client until
// the agent's stream ends.
func relay[T any](p *nodeProxy, node string, as grpc.ClientStream, ss grpc.ServerStream, started func()) error {
	m, err := agentAccepted[T](as)
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return p.streamError(node, err)
	}
	if err := ss.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	if started != nil {
		started()
	}
	for {
		if m != nil {
			if err := ss.SendMsg(m); err != nil {
				return err
			}
		}
		m = new(T)
		if err := as.RecvMsg(m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return p.streamError(node, err)
		}
	}
}

// Exec runs a command in a container through the agent of the pod's node:
// the client's inputs go to the agent, the agent's outputs to the client,
// until the agent's stream ends; either side's end cancels the other.
func (p *nodeProxy) Exec(ss grpc.BidiStreamingServer[nodev1.ExecInput, nodev1.ExecOutput]) error {
	ctx, cancel := p.withStop(ss.Context())
	defer cancel()
	in, err := ss.Recv()
	if err != nil {
		return err
	}
	start := in.GetStart()
	if start == nil {
		return badRequest("the first exec message must be a start")
	}
	pod, conn, err := p.podAgent(ctx, start.GetNamespace(), start.GetPod())
	if err != nil {
		return err
	}
	fwd := proto.Clone(start).(*nodev1.ExecStart)
	if fwd.Container, err = podContainer(pod, start.GetContainer()); err != nil {
		return err
	}
	fwd.Uid = pod.GetMetadata().GetUid()
	node := pod.GetSpec().GetNodeName()
	as, err := nodev1.NewNodeAgentClient(conn).Exec(ctx)
	if err != nil {
		return p.streamError(node, err)
	}
	if err := as.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_Start{Start: fwd}}); err != nil && !errors.Is(err, io.EOF) {
		return p.streamError(node, err)
	}
	// Once the command runs, the client's stdin goes to the agent.
	return relay[nodev1.ExecOutput](p, node, as, ss, func() { go pipeStdin(ss, as, cancel) })
}

// pipeStdin passes the client's exec inputs to the agent until the client
// closes its side (then the agent's) or fails (then the call ends).
func pipeStdin(ss grpc.BidiStreamingServer[nodev1.ExecInput, nodev1.ExecOutput], as grpc.BidiStreamingClient[nodev1.ExecInput, nodev1.ExecOutput], cancel func()) {
	for {
		in, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			_ = as.CloseSend()
			return
		}
		if err != nil {
			cancel()
			return
		}
		if err := as.Send(in); err != nil {
			return // the agent's stream ended; its status comes from Recv
		}
	}
}

// LoadImage passes an image archive to the agent of the node named in the
// call's rafter-node metadata.
func (p *nodeProxy) LoadImage(ss grpc.ClientStreamingServer[nodev1.Chunk, nodev1.LoadImageResponse]) error {
	ctx, cancel := p.withStop(ss.Context())
	defer cancel()
	md, _ := metadata.FromIncomingContext(ctx)
	nodes := md.Get(nodeMetadataKey)
	if len(nodes) != 1 || nodes[0] == "" {
		return badRequest("LoadImage through the API needs exactly one node name in the %q metadata", nodeMetadataKey)
	}
	node := nodes[0]
	if err := p.s.readBarrier(ctx, ""); err != nil {
		return statusFromStore(*p.s.reg.byKind["Node"], node, err)
	}
	conn, err := p.nodeAgent(node)
	if err != nil {
		return err
	}
	as, err := nodev1.NewNodeAgentClient(conn).LoadImage(ctx)
	if err != nil {
		return p.streamError(node, err)
	}
	for {
		c, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := as.Send(c); err != nil {
			// The agent ended the call; CloseAndRecv has its answer.
			break
		}
	}
	resp, err := as.CloseAndRecv()
	if err != nil {
		return p.streamError(node, err)
	}
	return ss.SendAndClose(resp)
}
