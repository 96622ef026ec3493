// Package client is ctl's connection to a Rafter control plane: one gRPC
// connection over every peer it knows, failing over between them, and generic
// create/get/list/update/delete/watch calls for any kind.
package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"sigs.k8s.io/yaml"

	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// DefaultServers are the peers of `make run`.
var DefaultServers = []string{"127.0.0.1:7441", "127.0.0.1:7442", "127.0.0.1:7443"}

// Config is what ~/.rafter/config (or $RAFTER_CONFIG) holds:
//
//	servers: [127.0.0.1:7441, 127.0.0.1:7442, 127.0.0.1:7443]
type Config struct {
	Servers []string `json:"servers"`
}

// ConfigPath returns $RAFTER_CONFIG, or ~/.rafter/config.
func ConfigPath() string {
	if p := os.Getenv("RAFTER_CONFIG"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".rafter", "config")
}

// Servers decides which peers to use: the --server flag (comma-separated), else the
// config file, else DefaultServers. A config file that exists but does not parse is
// an error.
func Servers(flag string) ([]string, error) {
	if flag != "" {
		return splitList(flag), nil
	}
	path := ConfigPath()
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist) || path == "":
		return DefaultServers, nil
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var cfg Config
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(cfg.Servers) == 0 {
		return nil, fmt.Errorf("%s: no servers listed", path)
	}
	return cfg.Servers, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// serviceConfig: use the first peer that answers, and retry calls that failed
// because a peer (or the leader) was unavailable, so a single failed peer goes
// unnoticed.
const serviceConfig = `{
  "loadBalancingConfig": [{"pick_first": {}}],
  "methodConfig": [{
    "name": [{}],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.2s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// Client talks to the control plane. Safe for concurrent use.
type Client struct {
	Conn *grpc.ClientConn
}

// Dial returns a client over every server; it does not block.
func Dial(servers []string) (*Client, error) {
	if len(servers) == 0 {
		return nil, errors.New("no control-plane servers given")
	}
	r := manual.NewBuilderWithScheme("rafter")
	var addrs []resolver.Address
	for _, s := range servers {
		addrs = append(addrs, resolver.Address{Addr: s})
	}
	r.InitialState(resolver.State{Addresses: addrs})
	conn, err := grpc.NewClient(r.Scheme()+":///control-plane",
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
		grpc.WithConnectParams(connectParams()),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", strings.Join(servers, ","), err)
	}
	return &Client{Conn: conn}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.Conn.Close() }

func method(k kinds.Kind, name string) string { return "/" + string(k.Service) + "/" + name }

// newRequest returns an empty request message for k's method.
func newRequest(k kinds.Kind, name string) (protoreflect.Message, protoreflect.MessageType, error) {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(k.Service)
	if err != nil {
		return nil, nil, fmt.Errorf("service %s: %w", k.Service, err)
	}
	md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return nil, nil, fmt.Errorf("%s has no method %s", k.Service, name)
	}
	in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		return nil, nil, err
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, nil, err
	}
	return in.New(), out, nil
}

func set(m protoreflect.Message, field string, v protoreflect.Value) {
	if fd := m.Descriptor().Fields().ByName(protoreflect.Name(field)); fd != nil {
		m.Set(fd, v)
	}
}

func str(s string) protoreflect.Value { return protoreflect.ValueOfString(s) }

// warnings extracts Kubernetes warning texts from response headers (`299 - "text"`).
func warnings(md metadata.MD) []string {
	var out []string
	for _, v := range md.Get("warning") {
		if i := strings.Index(v, `"`); i >= 0 && strings.HasSuffix(v, `"`) && len(v) > i+1 {
			v = v[i+1 : len(v)-1]
		}
		out = append(out, v)
	}
	return out
}

// Get reads one object. rv "" is a linearizable read; "0" any peer's local state.
func (c *Client) Get(ctx context.Context, k kinds.Kind, namespace, name, rv string) (proto.Message, error) {
	req := &metav1.GetRequest{Namespace: namespace, Name: name, ResourceVersion: rv}
	_, out, err := newRequest(k, "Get")
	if err != nil {
		return nil, err
	}
	resp := out.New().Interface()
	if err := c.Conn.Invoke(ctx, method(k, "Get"), req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// ListOptions are Kubernetes' list parameters.
type ListOptions struct {
	LabelSelector, FieldSelector, ResourceVersion string
}

// List returns the objects of k in namespace ("" = all namespaces) and the list's
// resourceVersion.
func (c *Client) List(ctx context.Context, k kinds.Kind, namespace string, opts ListOptions) ([]proto.Message, string, error) {
	req := &metav1.ListRequest{Namespace: namespace, LabelSelector: opts.LabelSelector,
		FieldSelector: opts.FieldSelector, ResourceVersion: opts.ResourceVersion}
	_, out, err := newRequest(k, "List")
	if err != nil {
		return nil, "", err
	}
	resp := out.New()
	if err := c.Conn.Invoke(ctx, method(k, "List"), req, resp.Interface()); err != nil {
		return nil, "", err
	}
	items := resp.Get(resp.Descriptor().Fields().ByName("items")).List()
	objs := make([]proto.Message, items.Len())
	for i := range objs {
		objs[i] = items.Get(i).Message().Interface()
	}
	rv := ""
	if lm, ok := resp.Get(resp.Descriptor().Fields().ByName("metadata")).Message().Interface().(*metav1.ListMeta); ok {
		rv = lm.GetResourceVersion()
	}
	return objs, rv, nil
}

// Create creates obj; it returns the stored object and the server's warnings.
func (c *Client) Create(ctx context.Context, k kinds.Kind, namespace string, obj proto.Message, dryRun bool) (proto.Message, []string, error) {
	return c.write(ctx, k, "Create", namespace, "", obj, dryRun)
}

// Update replaces obj (PUT); status selects the /status subresource.
func (c *Client) Update(ctx context.Context, k kinds.Kind, namespace, name string, obj proto.Message, dryRun bool) (proto.Message, []string, error) {
	return c.write(ctx, k, "Update", namespace, name, obj, dryRun)
}

func (c *Client) write(ctx context.Context, k kinds.Kind, verb, namespace, name string, obj proto.Message, dryRun bool) (proto.Message, []string, error) {
	req, out, err := newRequest(k, verb)
	if err != nil {
		return nil, nil, err
	}
	set(req, "namespace", str(namespace))
	if name != "" {
		set(req, "name", str(name))
	}
	set(req, "body", protoreflect.ValueOfMessage(obj.ProtoReflect()))
	if dryRun {
		fd := req.Descriptor().Fields().ByName("dryRun")
		req.Mutable(fd).List().Append(str("All"))
	}
	resp := out.New().Interface()
	var md metadata.MD
	if err := c.Conn.Invoke(ctx, method(k, verb), req.Interface(), resp, grpc.Header(&md)); err != nil {
		return nil, warnings(md), err
	}
	return resp, warnings(md), nil
}

// DeleteOptions are Kubernetes' delete parameters.
type DeleteOptions struct {
	PropagationPolicy string
	ResourceVersion   string // precondition
	// GracePeriodSeconds, when set, overrides a pod's
	// terminationGracePeriodSeconds; 0 removes it at once.
	GracePeriodSeconds *int64
}

// Delete deletes one object and returns it as it was.
func (c *Client) Delete(ctx context.Context, k kinds.Kind, namespace, name string, opts DeleteOptions) (proto.Message, error) {
	req := &metav1.DeleteRequest{Namespace: namespace, Name: name, PropagationPolicy: opts.PropagationPolicy}
	if opts.ResourceVersion != "" {
		req.Body = &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &opts.ResourceVersion}}
	}
	req.GracePeriodSeconds = opts.GracePeriodSeconds
	_, out, err := newRequest(k, "Delete")
	if err != nil {
		return nil, err
	}
	resp := out.New().Interface()
	if err := c.Conn.Invoke(ctx, method(k, "Delete"), req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// Event is one watch event.
type Event struct {
	Type   string // ADDED, MODIFIED, DELETED
	Object proto.Message
}

// Watcher reads a watch stream.
type Watcher struct {
	stream grpc.ClientStream
	out    protoreflect.MessageType
}

// Watch starts a watch of k in namespace ("" = all) from resourceVersion rv ("" =
// current state first, as ADDED events).
func (c *Client) Watch(ctx context.Context, k kinds.Kind, namespace string, opts ListOptions) (*Watcher, error) {
	_, out, err := newRequest(k, "Watch")
	if err != nil {
		return nil, err
	}
	stream, err := c.Conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method(k, "Watch"))
	if err != nil {
		return nil, err
	}
	req := &metav1.ListRequest{Namespace: namespace, LabelSelector: opts.LabelSelector,
		FieldSelector: opts.FieldSelector, ResourceVersion: opts.ResourceVersion}
	if err := stream.SendMsg(req); err != nil {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	return &Watcher{stream: stream, out: out}, nil
}

// Next blocks for the next event; it returns the stream's error (io.EOF at the end).
func (w *Watcher) Next() (Event, error) {
	m := w.out.New()
	if err := w.stream.RecvMsg(m.Interface()); err != nil {
		return Event{}, err
	}
	fields := m.Descriptor().Fields()
	return Event{
		Type:   m.Get(fields.ByName("type")).String(),
		Object: m.Get(fields.ByName("object")).Message().Interface(),
	}, nil
}

// Timeout is the default per-call timeout of ctl commands.
const Timeout = 30 * time.Second
