// Command delayrelay is a TCP relay for the balancing benchmarks
// (scripts/bench-lb.sh): it forwards connections on 127.0.0.1 to a real
// backend and holds each chunk of the backend's answers back, always by
// -delay and, for a -tail-ratio share of them, by -tail-delay: a slow
// instance, or an instance with a latency tail. With -fail it forwards
// nothing and answers every HTTP request 500 itself, for the retry-budget
// measurement. It runs until it is killed.
//
//	delayrelay -listen 127.0.0.1:18281 -target 127.0.0.1:18181 -delay 20ms
//	delayrelay -listen 127.0.0.1:18281 -target 127.0.0.1:18181 -tail-ratio 0.02 -tail-delay 100ms
//	delayrelay -listen 127.0.0.1:18281 -fail
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	err := run(os.Args[1:]) // it returns only on an error
	fmt.Fprintln(os.Stderr, "delayrelay:", err)
	os.Exit(2)
}

type relay struct {
	target           string
	delay, tailDelay time.Duration
	tailRatio        float64
	fail             bool
}

func run(args []string) error {
	fs := flag.NewFlagSet("delayrelay", flag.ContinueOnError)
	listen := fs.String("listen", "", "127.0.0.1:port to listen on")
	var r relay
	fs.StringVar(&r.target, "target", "", "host:port of the backend")
	fs.DurationVar(&r.delay, "delay", 0, "added to every answer")
	fs.Float64Var(&r.tailRatio, "tail-ratio", 0, "share of answers delayed by -tail-delay as well")
	fs.DurationVar(&r.tailDelay, "tail-delay", 0, "extra delay of the tail's answers")
	fs.BoolVar(&r.fail, "fail", false, "answer every request 500 instead of forwarding")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	switch {
	case err != nil || host != "127.0.0.1":
		return errors.New("-listen: want 127.0.0.1:port")
	case !r.fail && r.target == "":
		return errors.New("-target is required without -fail")
	case r.tailRatio < 0 || r.tailRatio > 1:
		return errors.New("-tail-ratio: want 0..1")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go r.serve(c)
	}
}

func (r relay) serve(c net.Conn) {
	defer c.Close()
	if r.fail {
		failAll(c)
		return
	}
	b, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	defer b.Close()
	go func() {
		io.Copy(b, c) // requests go through as they are
		b.(*net.TCPConn).CloseWrite()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := b.Read(buf)
		if n > 0 {
			// One read is one answer: the proxy sends one request at a
			// time on a connection and the backend answers it in one write.
			d := r.delay
			if r.tailRatio > 0 && rand.Float64() < r.tailRatio {
				d += r.tailDelay
			}
			if d > 0 {
				time.Sleep(d)
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// failAll answers each request on c with a 500, reading its body by its
// Content-Length.
func failAll(c net.Conn) {
	br := bufio.NewReader(c)
	const body = `{"err":"internal error"}`
	answer := fmt.Sprintf("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\n\r\n%s", len(body), body)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		if _, err := io.WriteString(c, answer); err != nil {
			return
		}
	}
}
