package ctrl

import (
	"context"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
)

// RateLimit returns a client interceptor that lets at most qps unary calls per
// second through (bursts of burst), like kube-controller-manager's --kube-api-qps
// and --kube-api-burst; a call waits for its turn or for its context. Streams
// (watches) are not limited. qps <= 0 means no limit.
func RateLimit(qps float64, burst int) grpc.UnaryClientInterceptor {
	if qps <= 0 {
		return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
	}
	lim := rate.NewLimiter(rate.Limit(qps), max(burst, 1))
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if err := lim.Wait(ctx); err != nil {
			return err
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}
