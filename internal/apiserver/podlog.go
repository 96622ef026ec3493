package apiserver

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	nodev1 "github.com/rafter-dev/rafter/gen/rafter/node/v1"
)

// podLogPath is Kubernetes' pods/log subresource.
const podLogPath = "/api/v1/namespaces/{namespace}/pods/{name}/log"

// registerPodLog serves GET pods/{name}/log as Kubernetes does: the log as
// text/plain, streamed and flushed as it comes with follow=true. It is read
// through conn (this peer's own gRPC server) from the NodeAgent proxy, as the
// gateway reads everything else. Query parameters: container, follow,
// previous, timestamps, tailLines, limitBytes; sinceSeconds and sinceTime are
// refused (400) rather than ignored.
func registerPodLog(mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	client := nodev1.NewNodeAgentClient(conn)
	return mux.HandlePath(http.MethodGet, podLogPath, func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		req, err := podLogRequest(r, params)
		if err != nil {
			writeStatus(w, statusOf(err))
			return
		}
		stream, err := client.Logs(r.Context(), req)
		if err != nil {
			writeStatus(w, statusOf(err))
			return
		}
		first, err := agentAccepted[nodev1.Chunk](stream)
		if err != nil && !errors.Is(err, io.EOF) {
			writeStatus(w, statusOf(err))
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		flush := func() {
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
		flush()
		if errors.Is(err, io.EOF) {
			return
		}
		if first != nil {
			if _, err := w.Write(first.GetData()); err != nil {
				return
			}
			flush()
		}
		for {
			c, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				if status.Code(err) == codes.Canceled || r.Context().Err() != nil {
					return
				}
				// The 200 is gone: only a broken response tells the client
				// that the log is incomplete.
				panic(http.ErrAbortHandler)
			}
			if _, err := w.Write(c.GetData()); err != nil {
				return
			}
			flush()
		}
	})
}

// podLogRequest reads PodLogOptions from the query.
func podLogRequest(r *http.Request, params map[string]string) (*nodev1.LogsRequest, error) {
	q := r.URL.Query()
	req := &nodev1.LogsRequest{Namespace: params["namespace"], Pod: params["name"], Container: q.Get("container")}
	for name, dst := range map[string]*bool{"follow": &req.Follow, "previous": &req.Previous, "timestamps": &req.Timestamps} {
		if v := q.Get(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, badRequest("%s: invalid boolean %q", name, v)
			}
			*dst = b
		}
	}
	if v := q.Get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, badRequest("tailLines: must be a number greater than or equal to 0, got %q", v)
		}
		req.TailLines = &n
	}
	if v := q.Get("limitBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return nil, badRequest("limitBytes: must be a number greater than 0, got %q", v)
		}
		req.LimitBytes = n
	}
	for _, name := range []string{"sinceSeconds", "sinceTime"} {
		if q.Get(name) != "" {
			return nil, badRequest("%s is not supported by this server", name)
		}
	}
	return req, nil
}
