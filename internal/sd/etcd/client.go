// Package etcd registers an instance in etcd and follows the instances
// registered there: go-kit's sd/etcdv3 roles (client, instancer,
// registrar), rebuilt for the gaps that package leaves (see Instancer and
// Registrar). Instances are the values under /services/<name>/. It knows
// go-kit's sd package and nothing of the service.
package etcd

import (
	"time"

	"github.com/go-kit/log"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// callTimeout bounds one call to etcd: a read, a grant, a put, a revoke.
const callTimeout = 2 * time.Second

// NewClient returns a client of the etcd cluster at endpoints. It does
// not wait for a connection: calls do, each under its own deadline.
func NewClient(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          callTimeout,
		DialKeepAliveTime:    10 * time.Second, // etcd refuses pings more often than every 5s
		DialKeepAliveTimeout: 3 * time.Second,
		// gRPC's reconnect backoff grows to 2 minutes by default, so after
		// a long outage an instance would wait that long to register
		// again once etcd is back.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second,
			},
			MinConnectTimeout: 5 * time.Second,
		})},
		Logger: zap.NewNop(), // its JSON lines would break our logfmt; errors reach us as errors
	})
}

// Close closes client; a failure is only worth a log line, as the client
// is not used again.
func Close(client *clientv3.Client, logger log.Logger) {
	if err := client.Close(); err != nil {
		logger.Log("msg", "close etcd client", "err", err)
	}
}

// ServicePrefix is the key prefix of a service's instances. Each instance is
// one key, /services/<name>/<advertise>, whose value is the advertised
// address.
func ServicePrefix(name string) string { return "/services/" + name + "/" }
