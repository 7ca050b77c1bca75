// Command grpcload calls stringsvc.v1.StringService/Uppercase in a closed
// loop, -concurrency calls at a time over -conns connections, for
// -duration, and prints one line in the format of scripts/bench.lua's, for
// scripts/bench.sh: good answers, bad ones, the time taken and latency
// percentiles.
//
//	grpcload -addr 127.0.0.1:19181 -duration 6s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"stringsvc/pb"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "grpcload:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("grpcload", flag.ContinueOnError)
	var (
		addr        = fs.String("addr", "", "host:port of the gRPC server")
		duration    = fs.Duration("duration", 6*time.Second, "how long to call (at most 5m)")
		conns       = fs.Int("conns", 4, "connections")
		concurrency = fs.Int("concurrency", 50, "calls in flight at once")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *addr == "":
		return errors.New("-addr is required")
	case *duration <= 0 || *duration > 5*time.Minute:
		return errors.New("-duration: want up to 5m")
	case *conns < 1 || *concurrency < *conns:
		return errors.New("-conns: want at least 1, and -concurrency at least -conns")
	}
	clients := make([]pb.StringServiceClient, *conns)
	for i := range clients {
		cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		clients[i] = pb.NewStringServiceClient(cc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	type tally struct {
		good, bad int
		firstErr  error
		latencies []time.Duration
	}
	tallies := make([]tally, *concurrency)
	begin := time.Now()
	var wg sync.WaitGroup
	for w := range *concurrency {
		wg.Go(func() {
			client, t := clients[w%len(clients)], &tallies[w]
			for ctx.Err() == nil {
				start := time.Now()
				resp, err := client.Uppercase(ctx, &pb.UppercaseRequest{S: "hello"})
				switch {
				case ctx.Err() != nil:
					return // cut short by the end of the run: not counted
				case err == nil && resp.GetV() == "HELLO":
					t.good++
				default:
					t.bad++
					if t.firstErr == nil {
						t.firstErr = fmt.Errorf("answer %q, %w", resp.GetV(), err)
					}
				}
				t.latencies = append(t.latencies, time.Since(start))
			}
		})
	}
	wg.Wait()
	took := time.Since(begin)
	var good, bad int
	var all []time.Duration
	var firstErr error
	for _, t := range tallies {
		good, bad = good+t.good, bad+t.bad
		all = append(all, t.latencies...)
		if firstErr == nil {
			firstErr = t.firstErr
		}
	}
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "grpcload: first failure:", firstErr)
	}
	slices.Sort(all)
	pct := func(p float64) int64 {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p/100*float64(len(all))))].Microseconds()
	}
	fmt.Fprintf(stdout, "RESULT good=%d bad=%d duration_us=%d p50_us=%d p99_us=%d\n",
		good, bad, took.Microseconds(), pct(50), pct(99))
	return nil
}
