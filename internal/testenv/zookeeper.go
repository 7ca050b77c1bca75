package testenv

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ZooKeeper is a standalone ZooKeeper server on 127.0.0.1 with its data in
// a temporary directory. It can be stopped and started again on the same
// port and data.
type ZooKeeper struct {
	Addr string   // 127.0.0.1:port, the client port
	Proc *Process // the server running now: tests may SIGSTOP and SIGCONT it
	java string
	args []string
}

// zooKeeperJar is where Debian's zookeeper package (libzookeeper-java)
// puts the server; its manifest lists the jars it needs.
const zooKeeperJar = "/usr/share/java/zookeeper.jar"

// ZooKeeperTick is the server's tick. Sessions may last from 2 to 20 ticks,
// so a short tick allows the short session timeouts tests need.
const ZooKeeperTick = 200 * time.Millisecond

// StartZooKeeper starts ZooKeeper and waits until it serves requests.
func StartZooKeeper(tb testing.TB) *ZooKeeper {
	tb.Helper()
	const hint = "install it with: apt-get install -y zookeeper"
	java := RequireTool(tb, "java", hint)
	if _, err := os.Stat(zooKeeperJar); err != nil {
		Missing(tb, fmt.Sprintf("ZooKeeper not found (%v); %s", err, hint))
	}
	dir := tb.TempDir()
	z := &ZooKeeper{Addr: FreeAddr(tb), java: java}
	_, port, err := net.SplitHostPort(z.Addr)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := filepath.Join(dir, "zoo.cfg")
	conf := fmt.Sprintf(`tickTime=%d
dataDir=%s
clientPortAddress=127.0.0.1
clientPort=%s
admin.enableServer=false
4lw.commands.whitelist=*
`, ZooKeeperTick.Milliseconds(), filepath.Join(dir, "data"), port)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	classpath := zooKeeperJar
	if _, err := os.Stat("/usr/share/java/slf4j-simple.jar"); err == nil {
		classpath += ":/usr/share/java/slf4j-simple.jar" // warnings to stderr, not to nowhere
	}
	z.args = []string{
		"-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", // small and quick to start
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"-cp", classpath, "org.apache.zookeeper.server.ZooKeeperServerMain", cfg,
	}
	z.Start(tb)
	return z
}

// Start starts ZooKeeper (again) and waits until it serves requests.
func (z *ZooKeeper) Start(tb testing.TB) {
	tb.Helper()
	z.Proc = StartProcess(tb, "zookeeper", z.java, nil, z.args...)
	PollUntil(tb, 30*time.Second, "zookeeper answers srvr as a standalone server", func() bool {
		z.Proc.FailIfExited(tb)
		out, err := z.command("srvr")
		return err == nil && strings.Contains(out, "Mode: standalone")
	})
}

// Stop stops ZooKeeper with SIGTERM and waits for it to exit.
func (z *ZooKeeper) Stop(tb testing.TB) {
	tb.Helper()
	z.Proc.Stop(tb)
}

// Command sends a four-letter word (srvr, cons, dump, …) and returns the
// answer.
func (z *ZooKeeper) Command(tb testing.TB, word string) string {
	tb.Helper()
	out, err := z.command(word)
	if err != nil {
		tb.Fatalf("zookeeper %s: %v", word, err)
	}
	return out
}

func (z *ZooKeeper) command(word string) (string, error) {
	conn, err := net.DialTimeout("tcp", z.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(conn, word); err != nil {
		return "", err
	}
	out, err := io.ReadAll(conn)
	return string(out), err
}

// Out is what ZooKeeper printed.
func (z *ZooKeeper) Out() fmt.Stringer { return z.Proc.Out }
