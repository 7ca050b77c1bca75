//go:build !linux

package h1

import "net"

// idleProbe, outside Linux, trusts an idle connection: a server's bytes,
// close or reset that arrive while it idles are only seen by the next
// request, as its answer or its error. This is conservative only because
// the check that applies everywhere still does: a connection goes back
// to the pool only with nothing buffered after its answer
// (answerReader.read), which catches a second answer sent with the first.
type idleProbe struct{}

func (*idleProbe) init(net.Conn) {}

// quiet reports true: nothing is checked.
func (*idleProbe) quiet() bool { return true }
