package apiserver

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Regression for an anomaly the Jepsen-style suite found (kill -9 of the leader):
// a follower retried a forwarded write after the connection broke mid-call, so a
// write the dead leader had committed was applied a second time, after later
// writes. Only a failure to connect at all may be retried.
func TestForwardedWriteIsNotRetriedAfterConnectionLoss(t *testing.T) {
	cases := []struct {
		err   error
		retry bool
	}{
		{status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 10.0.0.1:7443: connect: connection refused"`), true},
		{status.Error(codes.Unavailable, "error reading from server: EOF"), false},
		{status.Error(codes.Unavailable, "transport is closing"), false},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), false},
		{apiError(ReasonServiceUnavailable, "this peer is no longer the raft leader; retry", nil), false},
		{nil, false},
	}
	for _, c := range cases {
		if got := unreachable(c.err); got != c.retry {
			t.Errorf("unreachable(%v) = %v, want %v", c.err, got, c.retry)
		}
	}
}
