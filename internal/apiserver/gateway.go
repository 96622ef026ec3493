package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	clusterv1 "github.com/rafter-dev/rafter/gen/rafter/cluster/v1"
	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/k8sjson"
)

// k8sJSON is protojson shaped like the Kubernetes API: stream messages are written
// bare (no grpc-gateway {"result": ...} envelope), one per line, and a stream error
// becomes a watch ERROR event carrying a Status.
type k8sJSON struct{ *runtime.JSONPb }

func (m k8sJSON) Marshal(v any) ([]byte, error) {
	switch x := v.(type) {
	case map[string]any:
		if r, ok := x["result"]; ok && len(x) == 1 {
			v = r
		}
	case map[string]proto.Message:
		if e, ok := x["error"].(*spb.Status); ok && len(x) == 1 {
			st, err := protojson.Marshal(statusOf(status.ErrorProto(e)))
			if err != nil {
				return nil, err
			}
			v = json.RawMessage(`{"type":"ERROR","object":` + string(st) + `}`)
		}
	}
	var b []byte
	var err error
	if raw, ok := v.(json.RawMessage); ok {
		b = raw
	} else if b, err = m.JSONPb.Marshal(v); err != nil {
		return nil, err
	}
	// Kubernetes clients refuse protojson's quoted int64s. On an error b is still
	// valid protojson, only less like Kubernetes' JSON, so it is sent as it is.
	if pm, ok := v.(proto.Message); ok {
		if nb, err := k8sjson.Int64AsNumbers(pm.ProtoReflect().Descriptor(), b); err == nil {
			b = nb
		}
	}
	if pm, ok := v.(proto.Message); ok {
		b = withEmptyItems(pm, b)
	}
	// protojson varies its whitespace on purpose; clients diffing output want it stable.
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b, nil
	}
	return out.Bytes(), nil
}

// withEmptyItems adds `"items":[]` to an empty list, which protojson leaves out but
// Kubernetes clients expect.
func withEmptyItems(m proto.Message, b []byte) []byte {
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("items")
	if fd == nil || !fd.IsList() || r.Get(fd).List().Len() > 0 {
		return b
	}
	end := bytes.LastIndexByte(b, '}')
	if end < 0 {
		return b
	}
	sep := ","
	if head := bytes.TrimSpace(b[:end]); len(head) == 0 || head[len(head)-1] == '{' {
		sep = ""
	}
	out := append([]byte{}, b[:end]...)
	out = append(out, sep+`"items":[]`...)
	return append(out, b[end:]...)
}

func newMarshaler() k8sJSON {
	return k8sJSON{&runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
}

// writeStatus answers an HTTP request with a Kubernetes Status body.
func writeStatus(w http.ResponseWriter, st *metav1.Status) {
	body, err := newMarshaler().Marshal(st)
	if err != nil {
		body = []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"internal error","code":500}`)
	}
	w.Header().Set("Content-Type", "application/json")
	code := int(st.GetCode())
	if code == 0 {
		code = http.StatusInternalServerError
	}
	w.WriteHeader(code)
	_, _ = w.Write(body)
	_, _ = w.Write([]byte("\n"))
}

func httpError(ctx context.Context, mux *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if md, ok := runtime.ServerMetadataFromContext(ctx); ok {
		for _, v := range md.HeaderMD.Get("warning") {
			w.Header().Add("Warning", v)
		}
	}
	writeStatus(w, statusOf(err))
}

// streamStart writes the 200 and flushes it as soon as a watch stream starts, so
// clients see the response before the first event.
// It also answers a successful create, binding or eviction with 201 Created, and a
// delete that only marked the object for deletion with 202 Accepted when the
// handler asked for it (see accepted), as Kubernetes does.
func streamStart(ctx context.Context, w http.ResponseWriter, resp proto.Message) error {
	if resp != nil {
		if md, ok := runtime.ServerMetadataFromContext(ctx); ok && slices.Contains(md.HeaderMD.Get(httpCodeHeader), "202") {
			w.WriteHeader(http.StatusAccepted)
			return nil
		}
		if m, _ := runtime.RPCMethod(ctx); strings.HasSuffix(m, "/Create") || strings.HasSuffix(m, "/Bind") || strings.HasSuffix(m, "/Evict") {
			w.WriteHeader(http.StatusCreated)
		}
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	return nil
}

// HTTPHandler returns the REST API: every kind at Kubernetes' paths (through
// grpc-gateway, over conn to this peer's own gRPC server), the Cluster service,
// health, readiness, metrics and the OpenAPI document.
func (s *Server) HTTPHandler(ctx context.Context, conn *grpc.ClientConn, metrics http.Handler, openapi []byte) (http.Handler, error) {
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, newMarshaler()),
		runtime.WithErrorHandler(httpError),
		runtime.WithOutgoingHeaderMatcher(func(k string) (string, bool) {
			if k == "warning" {
				return "Warning", true
			}
			return "", false
		}),
		runtime.WithForwardResponseOption(streamStart),
	)
	if err := kinds.RegisterGateway(ctx, mux, conn); err != nil {
		return nil, err
	}
	if err := clusterv1.RegisterClusterHandler(ctx, mux, conn); err != nil {
		return nil, err
	}
	if err := registerPodLog(mux, conn); err != nil {
		return nil, err
	}
	root := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }
	root.HandleFunc("/healthz", ok)
	root.HandleFunc("/livez", ok)
	root.HandleFunc("/readyz", s.readyz)
	if metrics != nil {
		root.Handle("/metrics", metrics)
	}
	root.HandleFunc("/openapi/v2", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi)
	})
	// The backup is binary: served directly rather than through the gateway, whose
	// streams put a newline after every message.
	root.HandleFunc("GET /cluster/v1/snapshot", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="rafter.snapshot"`)
		bw := &deferredWriter{w: w}
		if err := s.writeBackup(r.Context(), bw); err != nil {
			if !bw.started {
				writeStatus(w, statusOf(err))
			}
			return
		}
	})
	root.Handle("/", s.watchRewrite(mux))
	return root, nil
}

// deferredWriter lets a handler still answer with an error status as long as it
// has not written any of the body.
type deferredWriter struct {
	w       http.ResponseWriter
	started bool
}

func (d *deferredWriter) Write(p []byte) (int, error) {
	d.started = true
	return d.w.Write(p)
}

// readyz answers 200 once this peer knows a leader and has applied the log.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	leader, ok := s.peer.Leader()
	if !ok || s.fsm.Applied() == 0 {
		http.Error(w, "not ready: no raft leader known", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok: leader " + leader + "\n"))
}

// maxBodyBytes bounds a REST request body; Kubernetes objects are far smaller.
const maxBodyBytes = 16 << 20

// watchRewrite serves Kubernetes' `?watch=true` on collection paths by routing it to
// the legacy /watch/ paths the Watch RPCs are bound to, and answers 410 Gone up front
// when the requested resourceVersion is older than the watch history.
func (s *Server) watchRewrite(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		}
		q := r.URL.Query()
		if r.Method == http.MethodGet && (q.Get("watch") == "true" || q.Get("watch") == "1") {
			if p, ok := watchPath(r.URL.Path); ok {
				r.URL.Path, r.URL.RawPath = p, ""
			}
		}
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/watch/") {
			if rv := q.Get("resourceVersion"); rv != "" && rv != "0" {
				if n, err := strconv.ParseUint(rv, 10, 64); err == nil && !s.fsm.CanWatchFrom(n) {
					writeStatus(w, statusOf(apiError(ReasonGone, "too old resource version: "+rv, nil)))
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// watchPath turns /api/v1/... into /api/v1/watch/... and /apis/G/V/... into
// /apis/G/V/watch/....
func watchPath(p string) (string, bool) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	n := 0
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		n = 2
	case len(parts) >= 4 && parts[0] == "apis":
		n = 3
	default:
		return "", false
	}
	if parts[n] == "watch" {
		return p, true
	}
	out := append(append(append([]string{}, parts[:n]...), "watch"), parts[n:]...)
	return "/" + strings.Join(out, "/"), true
}
