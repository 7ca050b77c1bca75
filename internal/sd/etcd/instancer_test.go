package etcd

import (
	"context"
	"fmt"
	"slices"
	"stringsvc/internal/testenv"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestEtcdInstancerConvergesWhileKeysChange starts instancers while keys
// are put and deleted as fast as etcd takes them, so that changes land
// between an instancer's first read and the start of its watch. Every one
// must end with the true set, without help from a resync.
func TestEtcdInstancerConvergesWhileKeysChange(t *testing.T) {
	server := testenv.StartEtcd(t)
	cli, err := NewClient([]string{server.Endpoint})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { Close(cli, log.NewNopLogger()) })
	const prefix = "/services/converge/"
	var (
		subscribers []*testenv.Recorder
		want        []string
	)
	for i := range 60 {
		instance := fmt.Sprintf("10.0.0.1:%d", 1000+i)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cli.Put(ctx, prefix+instance, instance)
		if err == nil && i%10 == 9 {
			_, err = cli.Delete(ctx, prefix+fmt.Sprintf("10.0.0.1:%d", 1000+i-5))
		}
		cancel()
		if err != nil {
			t.Fatalf("change keys: %v", err)
		}
		if i%4 == 0 {
			errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "errors"})
			in := NewInstancer(cli, prefix, time.Hour, errs, log.NewNopLogger())
			t.Cleanup(in.Stop)
			subscribers = append(subscribers, testenv.Record(t, in))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		t.Fatalf("get %s: %v", prefix, err)
	}
	for _, kv := range resp.Kvs {
		want = append(want, string(kv.Value))
	}
	slices.Sort(want)
	if len(want) != 54 {
		t.Fatalf("%d keys in etcd; want 54", len(want))
	}
	for i, s := range subscribers {
		what := fmt.Sprintf("instancer %d has the %d instances", i+1, len(want))
		testenv.PollUntil(t, 5*time.Second, what, func() bool {
			events := s.Since(0)
			if len(events) == 0 {
				return false
			}
			ev := events[len(events)-1]
			return ev.Err == nil && slices.Equal(ev.Instances, want)
		})
	}
}
