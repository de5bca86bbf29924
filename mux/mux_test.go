package mux

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

const testWait = 5 * time.Second

// syncBuffer collects log output from the mux's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTestMux(t *testing.T, headerTimeout time.Duration, out io.Writer) *Mux {
	t.Helper()
	if out == nil {
		out = io.Discard
	}
	logger := hclog.New(&hclog.LoggerOptions{Output: out, Level: hclog.Debug})
	m, err := ListenConfig(Config{Bind: "127.0.0.1:0", Logger: logger, HeaderTimeout: headerTimeout})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func newTestLayer(t *testing.T, m *Mux, group string) *Layer {
	t.Helper()
	l, err := m.Layer(group, "")
	if err != nil {
		t.Fatalf("Layer(%q): %v", group, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// acceptAsync runs Accept in a goroutine. The goroutine ends when a
// connection arrives or the layer closes, which every test's cleanup does.
func acceptAsync(l *Layer) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

func waitConn(t *testing.T, ch <-chan net.Conn, what string) net.Conn {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatalf("%s: Accept failed", what)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	case <-time.After(testWait):
		t.Fatalf("%s: no connection within %v", what, testWait)
		return nil
	}
}

func dial(t *testing.T, l *Layer, addr net.Addr) net.Conn {
	t.Helper()
	c, err := l.Dial(raft.ServerAddress(addr.String()), time.Second)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func rawDial(t *testing.T, m *Mux) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", m.Addr().String(), time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func writeLine(t *testing.T, c net.Conn, s string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(testWait))
	if _, err := io.WriteString(c, s+"\n"); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

func readLine(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(testWait))
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			t.Fatalf("read after %q: %v", b, err)
		}
		if one[0] == '\n' {
			return string(b)
		}
		b = append(b, one[0])
	}
}

// expectClosedByServer fails unless the server ends the connection (EOF or
// reset) well before testWait. A read timeout means the server kept it open.
func expectClosedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(testWait))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("server did not close the connection within %v", testWait)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGroupsShareOnePortBothWays(t *testing.T) {
	groups := []string{"meta", "shard-1", "shard-2"}
	a := newTestMux(t, defaultHeaderTimeout, nil)
	b := newTestMux(t, defaultHeaderTimeout, nil)
	la, lb := map[string]*Layer{}, map[string]*Layer{}
	for _, g := range groups {
		la[g], lb[g] = newTestLayer(t, a, g), newTestLayer(t, b, g)
	}

	for _, g := range groups {
		for _, dir := range []struct {
			name     string
			from, to *Layer
			toMux    *Mux
		}{{"a->b", la[g], lb[g], b}, {"b->a", lb[g], la[g], a}} {
			accepted := acceptAsync(dir.to)
			client := dial(t, dir.from, dir.toMux.Addr())
			server := waitConn(t, accepted, g+" "+dir.name)

			writeLine(t, client, "hello "+g)
			if got := readLine(t, server); got != "hello "+g {
				t.Fatalf("%s %s: server got %q", g, dir.name, got)
			}
			writeLine(t, server, "reply "+g)
			if got := readLine(t, client); got != "reply "+g {
				t.Fatalf("%s %s: client got %q", g, dir.name, got)
			}
		}
	}
	if a.Addr().String() == b.Addr().String() {
		t.Fatalf("muxes share an address: %s", a.Addr())
	}
}

// Connections dialled concurrently for different groups must each land on
// their own group's layer and never on another's.
func TestConcurrentDialsRouteByGroup(t *testing.T) {
	groups := []string{"meta", "shard-1", "shard-2", "shard-3"}
	server := newTestMux(t, defaultHeaderTimeout, nil)
	client := newTestMux(t, defaultHeaderTimeout, nil)
	accepted := map[string]<-chan net.Conn{}
	for _, g := range groups {
		accepted[g] = acceptAsync(newTestLayer(t, server, g))
	}
	for _, g := range groups {
		c := dial(t, newTestLayer(t, client, g), server.Addr())
		writeLine(t, c, g)
	}
	for _, g := range groups {
		c := waitConn(t, accepted[g], g)
		if got := readLine(t, c); got != g {
			t.Fatalf("layer %q accepted a connection for %q", g, got)
		}
	}
}

func TestBadHeadersAreClosedAndLogged(t *testing.T) {
	var logs syncBuffer
	m := newTestMux(t, 300*time.Millisecond, &logs)
	good := newTestLayer(t, m, "meta")

	oversize := append([]byte(headerMagic), headerVersion, MaxGroupLen+1)
	oversize = append(oversize, strings.Repeat("x", MaxGroupLen+1)...)
	cases := []struct {
		name string
		data []byte
		log  string
	}{
		{"wrong magic", append([]byte("XKVM"), encodeHeader("meta")[4:]...), "bad magic"},
		{"unknown version", append([]byte(headerMagic), 2, 4, 'm', 'e', 't', 'a'), "unsupported version"},
		{"zero length", append([]byte(headerMagic), headerVersion, 0), "bad group length"},
		{"oversize length", oversize, "bad group length"},
		{"non-ascii name", append([]byte(headerMagic), headerVersion, 2, 0xff, ' '), "invalid group name"},
		{"unknown group", encodeHeader("shard-9"), "unknown group"},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "bad magic"},
		{"truncated", []byte("RKV"), "reading header"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, m)
			if _, err := c.Write(tc.data); err != nil {
				t.Fatalf("write: %v", err)
			}
			expectClosedByServer(t, c)
			waitFor(t, testWait, "log line "+tc.log, func() bool {
				return strings.Contains(logs.String(), tc.log)
			})

			// The mux still serves a well-formed connection afterwards.
			accepted := acceptAsync(good)
			gc := dial(t, good, m.Addr())
			sc := waitConn(t, accepted, "good connection")
			writeLine(t, gc, "still alive")
			if got := readLine(t, sc); got != "still alive" {
				t.Fatalf("got %q", got)
			}
		})
	}
	if !strings.Contains(logs.String(), "remote=127.0.0.1:") {
		t.Errorf("rejections should be logged with the remote address; logs:\n%s", logs.String())
	}
}

func TestSilentClientDoesNotBlockOthers(t *testing.T) {
	m := newTestMux(t, defaultHeaderTimeout, nil) // the real 5 s timeout
	l := newTestLayer(t, m, "meta")
	for i := 0; i < 3; i++ {
		rawDial(t, m) // connects, never writes
	}
	start := time.Now()
	accepted := acceptAsync(l)
	c := dial(t, l, m.Addr())
	s := waitConn(t, accepted, "connection behind silent clients")
	writeLine(t, c, "ok")
	if got := readLine(t, s); got != "ok" {
		t.Fatalf("got %q", got)
	}
	if d := time.Since(start); d >= defaultHeaderTimeout {
		t.Fatalf("good connection waited %v, as long as the header timeout", d)
	}
}

func TestSilentClientIsDroppedAfterHeaderTimeout(t *testing.T) {
	m := newTestMux(t, 200*time.Millisecond, nil)
	c := rawDial(t, m)
	expectClosedByServer(t, c)
}

func TestLayerLifecycle(t *testing.T) {
	m := newTestMux(t, defaultHeaderTimeout, nil)
	l := newTestLayer(t, m, "shard-1")
	if got, want := l.Addr().String(), m.Addr().String(); got != want {
		t.Fatalf("Addr() = %s, want %s", got, want)
	}
	if _, err := m.Layer("shard-1", ""); !errors.Is(err, ErrGroupRegistered) {
		t.Fatalf("second Layer: err = %v, want ErrGroupRegistered", err)
	}

	// An Accept blocked at Close time returns, and so does every later one.
	blocked := make(chan error, 1)
	go func() { _, err := l.Accept(); blocked <- err }()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case err := <-blocked:
		if !errors.Is(err, ErrLayerClosed) {
			t.Fatalf("blocked Accept: err = %v", err)
		}
	case <-time.After(testWait):
		t.Fatal("blocked Accept did not return after Close")
	}
	if _, err := l.Accept(); !errors.Is(err, ErrLayerClosed) {
		t.Fatalf("Accept after Close: err = %v", err)
	}
	if _, err := l.Dial(raft.ServerAddress(m.Addr().String()), time.Second); !errors.Is(err, ErrLayerClosed) {
		t.Fatalf("Dial after Close: err = %v", err)
	}

	// The group is free again; closing the old layer must not evict the new.
	l2 := newTestLayer(t, m, "shard-1")
	_ = l.Close()
	accepted := acceptAsync(l2)
	dial(t, l2, m.Addr())
	waitConn(t, accepted, "re-registered group")
}

func TestLayerValidation(t *testing.T) {
	m := newTestMux(t, defaultHeaderTimeout, nil)
	for _, g := range []string{"", strings.Repeat("a", MaxGroupLen+1), "has space", "tab\t", "é"} {
		if _, err := m.Layer(g, ""); !errors.Is(err, ErrBadGroup) {
			t.Errorf("Layer(%q): err = %v, want ErrBadGroup", g, err)
		}
	}
	for _, adv := range []string{"nohostport", "0.0.0.0:7000", "[::]:7000", ":7000"} {
		if _, err := m.Layer("meta", adv); !errors.Is(err, ErrBadAdvertise) {
			t.Errorf("Layer(meta, %q): err = %v, want ErrBadAdvertise", adv, err)
		}
	}
	l, err := m.Layer("meta", "node1.example:7000")
	if err != nil {
		t.Fatalf("Layer with hostname: %v", err)
	}
	defer l.Close()
	if got := l.Addr().String(); got != "node1.example:7000" {
		t.Fatalf("Addr() = %q", got)
	}
}

func TestMuxCloseClosesEverything(t *testing.T) {
	m := newTestMux(t, defaultHeaderTimeout, nil)
	l := newTestLayer(t, m, "meta")
	silent := rawDial(t, m)
	// Make sure the silent connection has reached its header reader.
	waitFor(t, testWait, "pending connection", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.mu.pending) == 1
	})

	start := time.Now()
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d >= defaultHeaderTimeout {
		t.Fatalf("Close waited %v for a silent client", d)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	expectClosedByServer(t, silent)
	if _, err := l.Accept(); !errors.Is(err, ErrLayerClosed) {
		t.Fatalf("Accept after mux Close: err = %v", err)
	}
	if _, err := m.Layer("shard-1", ""); !errors.Is(err, ErrMuxClosed) {
		t.Fatalf("Layer after Close: err = %v", err)
	}
	if _, err := net.DialTimeout("tcp", m.Addr().String(), time.Second); err == nil {
		t.Fatal("listener still accepts after Close")
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		// A sub-test so that every t.Cleanup has run when it returns.
		t.Run("work", func(t *testing.T) {
			a := newTestMux(t, defaultHeaderTimeout, nil)
			b := newTestMux(t, defaultHeaderTimeout, nil)
			for i := 0; i < 3; i++ {
				g := fmt.Sprintf("shard-%d", i)
				la, lb := newTestLayer(t, a, g), newTestLayer(t, b, g)
				accepted := acceptAsync(lb)
				c := dial(t, la, b.Addr())
				s := waitConn(t, accepted, g)
				writeLine(t, c, g)
				readLine(t, s)
				acceptAsync(la) // left blocked in Accept until Close
			}
			rawDial(t, a)                    // silent, pending at Close
			writeLine(t, rawDial(t, b), "x") // rejected
			// A header for a group nobody accepts: parked in the hand-off.
			unaccepted := newTestLayer(t, b, "unaccepted")
			dial(t, unaccepted, b.Addr())
		})
	}()
	waitFor(t, testWait, "goroutines to exit", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, g := range []string{"m", "meta", "shard-12", strings.Repeat("z", MaxGroupLen)} {
		got, err := readHeader(bytes.NewReader(encodeHeader(g)))
		if err != nil || got != g {
			t.Fatalf("readHeader(encodeHeader(%q)) = %q, %v", g, got, err)
		}
	}
}

// FuzzReadHeader feeds arbitrary bytes to the connection-header reader. It
// must not panic, must never read past the longest header whatever the
// bytes (what follows belongs to raft), and a header it accepts names a
// valid group and re-encodes to exactly the bytes consumed.
func FuzzReadHeader(f *testing.F) {
	f.Add(encodeHeader("meta"))
	f.Add(append(encodeHeader("shard-1"), "raft bytes"...))
	f.Add(encodeHeader("shard-1")[:6])
	f.Add([]byte("RKVM\x01\x00"))
	f.Add([]byte("RKVM\x01\xff"))
	f.Add([]byte("RKVM\x02\x04meta"))
	f.Add([]byte("RKVM\x01\x04me a"))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		g, err := readHeader(r)
		consumed := data[:len(data)-r.Len()]
		if len(consumed) > len(headerMagic)+2+MaxGroupLen {
			t.Fatalf("read %d bytes, more than the longest header", len(consumed))
		}
		if err != nil {
			return
		}
		if !bytes.Equal(encodeHeader(g), consumed) {
			t.Fatalf("parsed %q from %q", g, consumed)
		}
		if err := validGroup(g); err != nil {
			t.Fatalf("accepted group %q: %v", g, err)
		}
	})
}
