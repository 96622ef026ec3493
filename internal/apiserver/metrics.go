package apiserver

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Metrics are the API server's Prometheus metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers the API and Raft metrics of s on reg.
func (s *Server) NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_api_requests_total", Help: "API requests by gRPC method and status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rafter_api_request_duration_seconds", Help: "Latency of unary API requests.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method"}),
	}
	gauge := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn)
	}
	reg.MustRegister(m.requests, m.latency,
		gauge("rafter_raft_term", "Current Raft term.", func() float64 { return float64(s.peer.Status().Term) }),
		gauge("rafter_raft_commit_index", "Raft commit index.", func() float64 { return float64(s.peer.Status().CommitIndex) }),
		gauge("rafter_raft_applied_index", "Index applied by the FSM.", func() float64 { return float64(s.fsm.Applied()) }),
		gauge("rafter_raft_leader", "1 when this peer is the Raft leader.", func() float64 {
			if s.peer.IsLeader() {
				return 1
			}
			return 0
		}),
	)
	return m
}

// UnaryInterceptor counts and times unary calls.
func (m *Metrics) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.latency.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	m.requests.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}

// StreamInterceptor counts streaming calls when they end.
func (m *Metrics) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	m.requests.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return err
}
