package apiserver

import (
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/validation/field"

	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
	"github.com/rafter-dev/rafter/internal/peer"
)

// Kubernetes status reasons, as in the metav1.Status "reason" field.
const (
	ReasonNotFound           = "NotFound"
	ReasonAlreadyExists      = "AlreadyExists"
	ReasonConflict           = "Conflict"
	ReasonInvalid            = "Invalid"
	ReasonBadRequest         = "BadRequest"
	ReasonGone               = "Expired"
	ReasonServiceUnavailable = "ServiceUnavailable"
	ReasonTimeout            = "Timeout"
	ReasonInternal           = "InternalError"
	ReasonForbidden          = "Forbidden"
	ReasonMethodNotAllowed   = "MethodNotAllowed"
)

// reasonHTTP maps a reason to its HTTP status code.
var reasonHTTP = map[string]int32{
	ReasonNotFound:           http.StatusNotFound,
	ReasonAlreadyExists:      http.StatusConflict,
	ReasonConflict:           http.StatusConflict,
	ReasonInvalid:            http.StatusUnprocessableEntity,
	ReasonBadRequest:         http.StatusBadRequest,
	ReasonGone:               http.StatusGone,
	ReasonServiceUnavailable: http.StatusServiceUnavailable,
	ReasonTimeout:            http.StatusGatewayTimeout,
	ReasonInternal:           http.StatusInternalServerError,
	ReasonForbidden:          http.StatusForbidden,
	ReasonMethodNotAllowed:   http.StatusMethodNotAllowed,
}

// reasonCode maps a reason to the gRPC code that carries the same meaning.
var reasonCode = map[string]codes.Code{
	ReasonNotFound:           codes.NotFound,
	ReasonAlreadyExists:      codes.AlreadyExists,
	ReasonConflict:           codes.Aborted,
	ReasonInvalid:            codes.InvalidArgument,
	ReasonBadRequest:         codes.InvalidArgument,
	ReasonGone:               codes.OutOfRange,
	ReasonServiceUnavailable: codes.Unavailable,
	ReasonTimeout:            codes.DeadlineExceeded,
	ReasonInternal:           codes.Internal,
	ReasonForbidden:          codes.PermissionDenied,
	ReasonMethodNotAllowed:   codes.Unimplemented,
}

// apiError builds a gRPC error carrying a Kubernetes Status as its detail, so that
// the REST gateway can answer with the same body and HTTP code Kubernetes would.
func apiError(reason, message string, details *metav1.StatusDetails) error {
	st := &metav1.Status{
		ApiVersion: "v1", Kind: "Status", Metadata: &metav1.ListMeta{},
		Status: "Failure", Message: message, Reason: reason, Details: details, Code: reasonHTTP[reason],
	}
	code, ok := reasonCode[reason]
	if !ok {
		code = codes.Unknown
	}
	gs := status.New(code, message)
	if withDetail, err := gs.WithDetails(st); err == nil {
		gs = withDetail
	}
	return gs.Err()
}

func notFound(k kindInfo, name string) error {
	return apiError(ReasonNotFound, fmt.Sprintf("%s %q not found", k.qualifiedResource(), name),
		&metav1.StatusDetails{Name: name, Group: k.Group, Kind: k.Resource})
}

func badRequest(format string, args ...any) error {
	return apiError(ReasonBadRequest, fmt.Sprintf(format, args...), nil)
}

// invalid reports field errors the way Kubernetes does: 422, one cause per field.
func invalid(k kindInfo, name string, errs field.ErrorList) error {
	details := &metav1.StatusDetails{Name: name, Group: k.Group, Kind: k.Kind.Kind}
	for _, e := range errs {
		details.Causes = append(details.Causes, &metav1.StatusCause{
			Reason: string(e.Type), Message: e.ErrorBody(), Field: e.Field,
		})
	}
	msg := fmt.Sprintf("%s %q is invalid: %s", k.Kind.Kind, name, errs.ToAggregate().Error())
	return apiError(ReasonInvalid, msg, details)
}

// statusFromStore translates errors from the FSM, the peer and contexts into API
// errors; an error that already carries a gRPC status passes through.
func statusFromStore(k kindInfo, name string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var nsErr *fsm.NamespaceNotFoundError
	var allocErr *fsm.AllocatedError
	switch {
	case errors.As(err, &nsErr):
		return apiError(ReasonNotFound, nsErr.Error(), &metav1.StatusDetails{Name: nsErr.Namespace, Kind: "namespaces"})
	case errors.Is(err, fsm.ErrNotFound):
		return notFound(k, name)
	case errors.Is(err, fsm.ErrAlreadyExists):
		return apiError(ReasonAlreadyExists, fmt.Sprintf("%s %q already exists", k.qualifiedResource(), name),
			&metav1.StatusDetails{Name: name, Group: k.Group, Kind: k.Resource})
	case errors.Is(err, fsm.ErrConflict):
		return apiError(ReasonConflict, fmt.Sprintf("Operation cannot be fulfilled on %s %q: the object has been modified; please apply your changes to the latest version and try again", k.qualifiedResource(), name),
			&metav1.StatusDetails{Name: name, Group: k.Group, Kind: k.Resource})
	case errors.As(err, &allocErr):
		path := field.NewPath("spec", "clusterIP")
		if allocErr.What == "nodePort" {
			path = field.NewPath("spec", "ports").Child("nodePort")
		}
		return invalid(k, name, field.ErrorList{field.Invalid(path, allocErr.Value, "provided "+allocErr.What+" is already allocated")})
	case errors.Is(err, fsm.ErrGone), errors.Is(err, fsm.ErrTooSlow):
		return apiError(ReasonGone, "too old resource version: "+err.Error(), nil)
	case errors.Is(err, peer.ErrNotLeader):
		return apiError(ReasonServiceUnavailable, "no raft leader reachable: "+err.Error(), nil)
	case errors.Is(err, peer.ErrTimeout), errors.Is(err, errDeadline):
		return apiError(ReasonTimeout, "the request timed out: "+err.Error(), nil)
	default:
		return apiError(ReasonInternal, err.Error(), nil)
	}
}

var errDeadline = errors.New("deadline exceeded")

// statusOf extracts the Kubernetes Status from an error for the REST gateway.
func statusOf(err error) *metav1.Status {
	gs, _ := status.FromError(err)
	for _, d := range gs.Details() {
		if st, ok := d.(*metav1.Status); ok {
			return st
		}
	}
	reason := ReasonInternal
	switch gs.Code() {
	case codes.InvalidArgument:
		reason = ReasonBadRequest
	case codes.NotFound:
		reason = ReasonNotFound
	case codes.AlreadyExists:
		reason = ReasonAlreadyExists
	case codes.Aborted, codes.FailedPrecondition:
		reason = ReasonConflict
	case codes.OutOfRange:
		reason = ReasonGone
	case codes.Unavailable:
		reason = ReasonServiceUnavailable
	case codes.DeadlineExceeded, codes.Canceled:
		reason = ReasonTimeout
	case codes.PermissionDenied:
		reason = ReasonForbidden
	case codes.Unimplemented:
		reason = ReasonMethodNotAllowed
	case codes.Unauthenticated:
		return &metav1.Status{ApiVersion: "v1", Kind: "Status", Metadata: &metav1.ListMeta{}, Status: "Failure",
			Message: gs.Message(), Reason: "Unauthorized", Code: http.StatusUnauthorized}
	}
	return &metav1.Status{ApiVersion: "v1", Kind: "Status", Metadata: &metav1.ListMeta{}, Status: "Failure",
		Message: gs.Message(), Reason: reason, Code: reasonHTTP[reason]}
}
