package hollow

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// failover sends every call to one current peer and moves on to the next one
// when that peer fails. Any reachable peer will do, since followers forward
// writes to the leader. Safe for concurrent use.
type failover struct {
	conns []grpc.ClientConnInterface
	cur   atomic.Uint64 // index into conns, modulo len(conns)
}

// current returns the peer calls go to now and its position, for next.
func (f *failover) current() (uint64, grpc.ClientConnInterface) {
	i := f.cur.Load()
	return i, f.conns[i%uint64(len(f.conns))]
}

// next moves away from the peer at position i, unless another caller already has.
func (f *failover) next(i uint64) { f.cur.CompareAndSwap(i, i+1) }

// call runs fn against the current peer with a timeout, and against the following
// peers in turn (each at most once) while it fails in a way another peer might
// not. Every call this package makes is safe to repeat: creates meet
// AlreadyExists, updates and deletes carry preconditions.
func (f *failover) call(ctx context.Context, timeout time.Duration, fn func(ctx context.Context, c grpc.ClientConnInterface) error) error {
	var err error
	for range f.conns {
		i, c := f.current()
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err = fn(cctx, c)
		cancel()
		if !isPeerFailure(ctx, err) {
			return err
		}
		f.next(i)
	}
	return err
}

// isPeerFailure reports whether err says more about the peer answering than about
// the request, so that another peer should be tried.
func isPeerFailure(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	if errors.Is(err, io.EOF) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Internal, codes.Unknown:
		return true
	}
	return false
}
