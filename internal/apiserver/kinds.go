package apiserver

import (
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	"github.com/rafter-dev/rafter/internal/fsm"
)

// kindInfo is one served kind with its strategy and message types.
type kindInfo struct {
	kinds.Kind
	strategy strategy
	msg      protoreflect.MessageType
	list     protoreflect.MessageType
}

// qualifiedResource is how Kubernetes names a resource in messages: "configmaps",
// "deployments.apps".
func (k kindInfo) qualifiedResource() string {
	if k.Group == "" {
		return k.Resource
	}
	return k.Resource + "." + k.Group
}

// newObject returns an empty object of the kind.
func (k kindInfo) newObject() fsm.Object {
	return k.msg.New().Interface().(fsm.Object)
}

// registry resolves every kind in kinds.All once, at start-up.
type registry struct {
	byKind    map[string]*kindInfo
	byService map[protoreflect.FullName]*kindInfo
	ordered   []*kindInfo
}

func newRegistry() (*registry, error) {
	r := &registry{byKind: map[string]*kindInfo{}, byService: map[protoreflect.FullName]*kindInfo{}}
	for _, k := range kinds.All {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(k.Message)
		if err != nil {
			return nil, fmt.Errorf("kind %s: message %s: %w", k.Kind, k.Message, err)
		}
		lt, err := protoregistry.GlobalTypes.FindMessageByName(k.ListMessage)
		if err != nil {
			return nil, fmt.Errorf("kind %s: list %s: %w", k.Kind, k.ListMessage, err)
		}
		if _, ok := mt.New().Interface().(fsm.Object); !ok {
			return nil, fmt.Errorf("kind %s: %s has no metadata", k.Kind, k.Message)
		}
		ki := &kindInfo{Kind: k, strategy: strategyFor(k.Kind), msg: mt, list: lt}
		r.byKind[k.Kind] = ki
		r.byService[k.Service] = ki
		r.ordered = append(r.ordered, ki)
	}
	return r, nil
}
