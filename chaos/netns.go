package chaos

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/raftkv/raftkv/internal/nodeproc"
)

// netLab is a small private network: one bridge in the caller's namespace
// and, per node, a network namespace joined to the bridge by a veth pair.
// Every node gets its own address on a private /24, the chaos process
// reaches all of them through the bridge, and a partition is a pair of
// blackhole routes inside the two namespaces, so the cut is real for raft
// and forwarding traffic while clients can still reach every node.
type netLab struct {
	bridge string
	ns     []string
	ips    []string

	// mu guards cuts.
	mu   sync.Mutex
	cuts map[[2]int]bool // node index pairs with a blackhole each way
}

// NetnsSupported reports whether this process can build a netLab, and if
// not, why.
func NetnsSupported() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root (run as root to enable the partition nemesis)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("the ip command (iproute2) is not installed")
	}
	return nil
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetLab creates n namespaces on a fresh bridge. Names carry this
// process's PID so parallel runs do not collide.
func newNetLab(n int) (*netLab, error) {
	if err := NetnsSupported(); err != nil {
		return nil, err
	}
	pid := os.Getpid() % 1000000
	subnet, err := pickSubnet(pid)
	if err != nil {
		return nil, err
	}
	lab := &netLab{bridge: fmt.Sprintf("rkb%d", pid), cuts: map[[2]int]bool{}}
	fail := func(err error) (*netLab, error) {
		lab.close()
		return nil, fmt.Errorf("network namespaces: %w", err)
	}
	if err := ipCmd("link", "add", lab.bridge, "type", "bridge"); err != nil {
		return fail(err)
	}
	if err := ipCmd("addr", "add", subnet+".1/24", "dev", lab.bridge); err != nil {
		return fail(err)
	}
	if err := ipCmd("link", "set", lab.bridge, "up"); err != nil {
		return fail(err)
	}
	for i := range n {
		ns := fmt.Sprintf("rkv%d-n%d", pid, i+1)
		host, peer := fmt.Sprintf("rkv%dh%d", pid, i+1), fmt.Sprintf("rkv%dp%d", pid, i+1)
		ip := fmt.Sprintf("%s.%d", subnet, 11+i)
		if err := ipCmd("netns", "add", ns); err != nil {
			return fail(err)
		}
		lab.ns = append(lab.ns, ns)
		lab.ips = append(lab.ips, ip)
		steps := [][]string{
			{"link", "add", host, "type", "veth", "peer", "name", peer},
			{"link", "set", peer, "netns", ns},
			{"link", "set", host, "master", lab.bridge},
			{"link", "set", host, "up"},
			{"-n", ns, "addr", "add", ip + "/24", "dev", peer},
			{"-n", ns, "link", "set", peer, "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		}
		for _, s := range steps {
			if err := ipCmd(s...); err != nil {
				return fail(err)
			}
		}
	}
	return lab, nil
}

// pickSubnet returns a 10.213.x prefix that no interface here uses yet.
func pickSubnet(pid int) (string, error) {
	out, err := exec.Command("ip", "-4", "addr").Output()
	if err != nil {
		return "", fmt.Errorf("ip -4 addr: %w", err)
	}
	for i := range 200 {
		s := fmt.Sprintf("10.213.%d", 1+(pid+i)%250)
		if !strings.Contains(string(out), s+".") {
			return s, nil
		}
	}
	return "", errors.New("no free 10.213.x.0/24 subnet")
}

// place puts node i in its namespace (nodeproc.Options.Place): its own
// address, the default ports, started through `ip netns exec`, which execs
// in place so the PID stays the server's.
func (l *netLab) place(i int, n *nodeproc.Node) {
	n.HTTPAddr = net.JoinHostPort(l.ips[i], "8080")
	n.RaftAddr = net.JoinHostPort(l.ips[i], "7000")
	n.Wrap = []string{"ip", "netns", "exec", l.ns[i]}
}

// cut blackholes traffic between nodes a and b (indexes), both ways.
func (l *netLab) cut(a, b int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := [2]int{min(a, b), max(a, b)}
	if l.cuts[k] {
		return nil
	}
	if err := ipCmd("-n", l.ns[a], "route", "add", "blackhole", l.ips[b]+"/32"); err != nil {
		return err
	}
	if err := ipCmd("-n", l.ns[b], "route", "add", "blackhole", l.ips[a]+"/32"); err != nil {
		_ = ipCmd("-n", l.ns[a], "route", "del", "blackhole", l.ips[b]+"/32")
		return err
	}
	l.cuts[k] = true
	return nil
}

// healAll removes every cut.
func (l *netLab) healAll() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for k := range l.cuts {
		a, b := k[0], k[1]
		errs = append(errs,
			ipCmd("-n", l.ns[a], "route", "del", "blackhole", l.ips[b]+"/32"),
			ipCmd("-n", l.ns[b], "route", "del", "blackhole", l.ips[a]+"/32"))
		delete(l.cuts, k)
	}
	return errors.Join(errs...)
}

// close deletes the namespaces (their veth ends go with them) and the
// bridge. Errors are ignored: it also cleans up after a half-built lab.
func (l *netLab) close() {
	for _, ns := range l.ns {
		_ = ipCmd("netns", "del", ns)
	}
	if l.bridge != "" {
		_ = ipCmd("link", "del", l.bridge)
	}
}

// Partition cuts every link between the nodes in side and the others. It
// needs a cluster started with Netns.
func (c *Cluster) Partition(side []*nodeproc.Node) error {
	if c.net == nil {
		return errors.New("partition needs a cluster in network namespaces")
	}
	in := map[int]bool{}
	for _, p := range side {
		in[c.index(p)] = true
	}
	for i := range c.Nodes {
		for j := range c.Nodes {
			if i < j && in[i] != in[j] {
				if err := c.net.cut(i, j); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Heal removes every partition.
func (c *Cluster) Heal() error {
	if c.net == nil {
		return nil
	}
	return c.net.healAll()
}

func (c *Cluster) index(p *nodeproc.Node) int {
	for i, q := range c.Nodes {
		if q == p {
			return i
		}
	}
	return -1
}
