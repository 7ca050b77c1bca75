// Command openloop sends requests at a fixed rate, whatever the server's
// speed (an open loop), and reports latency measured from each request's
// scheduled send time, so a stall shows up in the percentiles instead of
// silently slowing the sender (coordinated omission). hey -q sends in
// bursts and time.Sleep has about 1 ms granularity here (the runtime's
// timers wake through epoll with millisecond timeouts), hence this tool: the
// sender waits with nanosleep(2), which blocks only its own thread and wakes
// within microseconds, while the workers and the network poller keep a P of
// their own (GOMAXPROCS is at least 2, even when pinned to one CPU).
//
//	openloop -url http://127.0.0.1:8080/uppercase -rate 2000 -duration 10s
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "openloop:", err)
		os.Exit(2)
	}
}

type result struct {
	latency time.Duration
	ok      bool
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("openloop", flag.ContinueOnError)
	var (
		url      = fs.String("url", "", "URL to POST to")
		body     = fs.String("body", `{"s":"hello"}`, "request body")
		rate     = fs.Int("rate", 2000, "requests per second")
		duration = fs.Duration("duration", 10*time.Second, "how long to send (at most 5m)")
		workers  = fs.Int("workers", 64, "concurrent connections")
		label    = fs.String("label", "", "name printed with the result")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *url == "":
		return errors.New("-url is required")
	case *rate < 1 || *rate > 100000:
		return errors.New("-rate: want 1..100000")
	case *duration <= 0 || *duration > 5*time.Minute:
		return errors.New("-duration: want (0, 5m]")
	case *workers < 1 || *workers > 1024:
		return errors.New("-workers: want 1..1024")
	}

	runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0)))
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: *workers, DisableCompression: true},
		Timeout:   5 * time.Second,
	}
	total := int(duration.Seconds() * float64(*rate))
	interval := time.Second / time.Duration(*rate)
	sends := make(chan time.Time, total)
	results := make(chan result, total)
	var wg sync.WaitGroup
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for scheduled := range sends {
				results <- send(client, *url, *body, scheduled)
			}
		}()
	}

	start := time.Now().Add(10 * time.Millisecond)
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		waitUntil(at)
		sends <- at
	}
	close(sends)
	wg.Wait()
	close(results)

	latencies := make([]time.Duration, 0, total)
	failed := 0
	for r := range results {
		if !r.ok {
			failed++
			continue
		}
		latencies = append(latencies, r.latency)
	}
	slices.Sort(latencies)
	fmt.Fprintf(stdout, "OPENLOOP label=%s rate=%d sent=%d failed=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
		*label, *rate, total, failed,
		pct(latencies, 50), pct(latencies, 90), pct(latencies, 99), pct(latencies, 99.9), pct(latencies, 100))
	return nil
}

func send(client *http.Client, url, body string, scheduled time.Time) result {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return result{}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return result{}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	ok := err == nil && resp.StatusCode == http.StatusOK && !bytes.Contains(b, []byte(`"err"`))
	return result{latency: time.Since(scheduled), ok: ok}
}

func pct(sorted []time.Duration, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i].Microseconds()
}
