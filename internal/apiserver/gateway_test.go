package apiserver

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// The REST marshaler writes 64-bit integers as JSON numbers, for single responses
// and for stream messages (which grpc-gateway hands over as {"result": msg}), and
// adds "items":[] to empty lists.
func TestGatewayMarshalerKubernetesJSON(t *testing.T) {
	pod := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "p", Generation: 3},
		Spec: &corev1.PodSpec{TerminationGracePeriodSeconds: proto.Int64(30)}}
	m := newMarshaler()
	for name, v := range map[string]any{"message": pod, "stream": map[string]any{"result": pod}} {
		b, err := m.Marshal(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, want := range []string{`"terminationGracePeriodSeconds":30`, `"generation":3`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s: %s lacks %s", name, b, want)
			}
		}
		if strings.Contains(string(b), `"result"`) || strings.Contains(string(b), " ") {
			t.Errorf("%s: not a bare compact object: %s", name, b)
		}
	}
	b, err := m.Marshal(&corev1.PodList{ApiVersion: "v1", Kind: "PodList"})
	if err != nil || !strings.Contains(string(b), `"items":[]`) {
		t.Fatalf("empty list: %s %v", b, err)
	}
}
