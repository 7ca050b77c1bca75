// Package grpchealth is grpc.health.v1.Health for a server that drains: the
// standard health server, whose Shutdown also ends the Watch streams once
// they have told their client NOT_SERVING, so that GracefulStop does not
// wait for watching clients. It knows gRPC and nothing of the service.
package grpchealth

import (
	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Server is gRPC's standard health server, whose Shutdown also ends Watch
// streams once they have told their client NOT_SERVING. The
// standard one leaves them open, so GracefulStop would wait the whole
// shutdown timeout for any client watching (grpc-go issues 8776, 8882).
type Server struct {
	*health.Server
	services     []string      // "" and the named ones
	draining     chan struct{} // closed by Shutdown
	shutdownOnce sync.Once
}

// New returns a health server for the whole server ("") and the named
// services, all NOT_SERVING until SetReady says otherwise.
func New(services ...string) *Server {
	hs := &Server{Server: health.NewServer(), services: append([]string{""}, services...),
		draining: make(chan struct{})}
	hs.SetReady(false)
	return hs
}

// SetReady reports the server and its services SERVING or NOT_SERVING.
// After Shutdown it does nothing.
func (hs *Server) SetReady(ready bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, name := range hs.services {
		hs.SetServingStatus(name, st)
	}
}

// Shutdown reports every service NOT_SERVING for good and ends the Watch
// streams once they have sent it.
func (hs *Server) Shutdown() {
	hs.shutdownOnce.Do(func() { close(hs.draining) })
	hs.Server.Shutdown()
}

// Watch implements grpc.health.v1.Health's Watch. After Shutdown the
// stream ends with UNAVAILABLE once its client was told the service is not
// serving.
func (hs *Server) Watch(req *healthpb.HealthCheckRequest,
	stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	w := &drainingWatch{Health_WatchServer: stream, ctx: ctx, cancel: cancel, draining: hs.draining}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-hs.draining:
			w.endIfDraining()
		case <-ctx.Done():
		}
	}()
	err := hs.Server.Watch(req, w)
	cancel()
	<-watched
	if w.ended.Load() {
		return status.Error(codes.Unavailable, "server shutting down")
	}
	return err
}

// drainingWatch is a Watch stream whose context ends when the server
// drains and the last status sent was not SERVING. Send records the status
// before it checks for draining, and the draining goroutine checks the
// status after draining began, so one of the two sees the other.
type drainingWatch struct {
	healthpb.Health_WatchServer
	ctx      context.Context
	cancel   context.CancelFunc
	draining <-chan struct{}
	serving  atomic.Bool // the last status sent was SERVING
	ended    atomic.Bool // the stream was ended for draining
}

func (w *drainingWatch) Context() context.Context { return w.ctx }

func (w *drainingWatch) Send(resp *healthpb.HealthCheckResponse) error {
	err := w.Health_WatchServer.Send(resp)
	w.serving.Store(resp.GetStatus() == healthpb.HealthCheckResponse_SERVING)
	w.endIfDraining()
	return err
}

func (w *drainingWatch) endIfDraining() {
	select {
	case <-w.draining:
		if !w.serving.Load() {
			w.ended.Store(true)
			w.cancel()
		}
	default:
	}
}
