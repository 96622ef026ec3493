package client

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"

	autoscalingv1 "github.com/rafter-dev/rafter/gen/rafter/autoscaling/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	policyv1 "github.com/rafter-dev/rafter/gen/rafter/policy/v1"
)

// GetScale reads the scale subresource of a kind that has one (k.HasScale):
// GET .../{name}/scale.
func (c *Client) GetScale(ctx context.Context, k kinds.Kind, namespace, name string) (*autoscalingv1.Scale, error) {
	if !k.HasScale {
		return nil, fmt.Errorf("%s have no scale subresource", k.Resource)
	}
	resp := &autoscalingv1.Scale{}
	req := &metav1.GetRequest{Namespace: namespace, Name: name}
	if err := c.Conn.Invoke(ctx, method(k, "GetScale"), req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// UpdateScale writes the scale subresource (PUT .../{name}/scale) and returns it
// as stored. scale.metadata.resourceVersion, when set, is a precondition (a stale
// one fails with codes.Aborted, Kubernetes' 409 Conflict); without it the server
// applies spec.replicas to the latest version of the object.
func (c *Client) UpdateScale(ctx context.Context, k kinds.Kind, namespace, name string, scale *autoscalingv1.Scale) (*autoscalingv1.Scale, error) {
	if !k.HasScale {
		return nil, fmt.Errorf("%s have no scale subresource", k.Resource)
	}
	req, _, err := newRequest(k, "UpdateScale")
	if err != nil {
		return nil, err
	}
	set(req, "namespace", str(namespace))
	set(req, "name", str(name))
	set(req, "body", protoreflect.ValueOfMessage(scale.ProtoReflect()))
	resp := &autoscalingv1.Scale{}
	if err := c.Conn.Invoke(ctx, method(k, "UpdateScale"), req.Interface(), resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// Evict evicts a pod through its eviction subresource (POST
// pods/{name}/eviction), which deletes it as opts (nil: the defaults) say.
func (c *Client) Evict(ctx context.Context, namespace, name string, opts *metav1.DeleteOptions) error {
	req := &corev1.CreateEvictionRequest{Namespace: namespace, Name: name, Body: &policyv1.Eviction{
		ApiVersion: "policy/v1", Kind: "Eviction",
		Metadata:      &metav1.ObjectMeta{Name: name, Namespace: namespace},
		DeleteOptions: opts,
	}}
	return c.Conn.Invoke(ctx, corev1.Pods_Evict_FullMethodName, req, &metav1.Status{})
}
