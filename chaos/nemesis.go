package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/raftkv/raftkv/internal/nodeproc"
)

// Nemesis injects one kind of fault. Start breaks something and says what;
// Stop repairs exactly that. The runner never has two faults at once, and
// waits for the cluster to converge after each Stop.
type Nemesis interface {
	Name() string
	Start(ctx context.Context, rng *rand.Rand) (string, error)
	Stop(ctx context.Context) (string, error)
}

// NemesisNames lists every nemesis in the order "all" runs them.
var NemesisNames = []string{"kill", "pause", "leader-transfer", "leave-join", "partition"}

// errSkip marks a nemesis that cannot run here (not an error of the run).
var errSkip = errors.New("skipped")

func newNemesis(name string, c *Cluster) (Nemesis, error) {
	needProcs := func() error {
		if c.Attached() {
			return fmt.Errorf("%w: nemesis %s needs processes this run started (not an attached cluster)", errSkip, name)
		}
		return nil
	}
	switch name {
	case "kill":
		return &procNemesis{c: c, name: name}, needProcs()
	case "pause":
		return &procNemesis{c: c, name: name, pause: true}, needProcs()
	case "leader-transfer":
		return &transferNemesis{c: c}, nil
	case "leave-join":
		return &leaveJoinNemesis{c: c}, needProcs()
	case "partition":
		if !c.Netns() {
			why := "the cluster does not run in network namespaces"
			if err := NetnsSupported(); err != nil {
				why = err.Error()
			}
			return nil, fmt.Errorf("%w: nemesis partition: %s", errSkip, why)
		}
		return &partitionNemesis{c: c}, nil
	}
	return nil, fmt.Errorf("unknown nemesis %q (have %v)", name, NemesisNames)
}

// pickTarget returns a random up node or, half the time, the leader of a
// random shard (or meta), with a word saying which.
func pickTarget(ctx context.Context, c *Cluster, rng *rand.Rand) (*nodeproc.Node, string) {
	up := c.Up()
	if len(up) == 0 {
		return nil, ""
	}
	if rng.IntN(2) == 0 {
		groups := c.Groups()
		g := groups[rng.IntN(len(groups))]
		if l, err := c.LeaderOf(ctx, g); err == nil {
			return l, "leader of " + g
		}
	}
	return up[rng.IntN(len(up))], "random node"
}

// procNemesis SIGKILLs (and later restarts) or SIGSTOPs (and later
// SIGCONTs) one node.
type procNemesis struct {
	c      *Cluster
	name   string
	pause  bool
	target *nodeproc.Node
}

func (n *procNemesis) Name() string { return n.name }

func (n *procNemesis) Start(ctx context.Context, rng *rand.Rand) (string, error) {
	p, why := pickTarget(ctx, n.c, rng)
	if p == nil {
		return "", errors.New("no node up")
	}
	n.target = p
	if n.pause {
		return fmt.Sprintf("SIGSTOP %s (%s, pid %d)", p.ID, why, p.PID()), p.Pause()
	}
	pid := p.PID()
	return fmt.Sprintf("SIGKILL %s (%s, pid %d)", p.ID, why, pid), p.Kill()
}

func (n *procNemesis) Stop(context.Context) (string, error) {
	p := n.target
	if p == nil {
		return "", nil
	}
	n.target = nil
	if n.pause {
		return "SIGCONT " + p.ID, p.Resume()
	}
	err := p.Restart()
	return fmt.Sprintf("restarted %s (pid %d)", p.ID, p.PID()), err
}

// transferNemesis moves the leadership of a random group to a random other
// voter. It has nothing to repair.
type transferNemesis struct{ c *Cluster }

func (n *transferNemesis) Name() string { return "leader-transfer" }

func (n *transferNemesis) Start(ctx context.Context, rng *rand.Rand) (string, error) {
	groups := n.c.Groups()
	g := groups[rng.IntN(len(groups))]
	l, err := n.c.LeaderOf(ctx, g)
	if err != nil {
		return "", err
	}
	var others []*nodeproc.Node
	for _, p := range n.c.Up() {
		if p != l {
			others = append(others, p)
		}
	}
	to := "" // any other voter
	if len(others) > 0 {
		to = others[rng.IntN(len(others))].ID
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = adminClient(l.HTTPAddr).TransferLeadership(tctx, g, to)
	if to == "" {
		to = "any"
	}
	return fmt.Sprintf("transfer %s from %s to %s", g, l.ID, to), err
}

func (n *transferNemesis) Stop(context.Context) (string, error) { return "", nil }

// leaveJoinNemesis removes a node through the API, stops it, wipes its data
// dir and, on Stop, starts it fresh with --join.
type leaveJoinNemesis struct {
	c      *Cluster
	target *nodeproc.Node
}

func (n *leaveJoinNemesis) Name() string { return "leave-join" }

func (n *leaveJoinNemesis) Start(ctx context.Context, rng *rand.Rand) (string, error) {
	up := n.c.Up()
	if len(up) < 2 {
		return "", errors.New("fewer than two nodes up")
	}
	p := up[rng.IntN(len(up))]
	var via *nodeproc.Node
	for _, q := range up {
		if q != p {
			via = q
			break
		}
	}
	desc := fmt.Sprintf("leave %s (asked %s), stop it, wipe its data dir", p.ID, via.ID)
	// A membership change is an operator's action: it runs to the end even
	// when the workload stops meanwhile (a leave cut off halfway would leave
	// the node out of some groups and in others). Leave is idempotent, so a
	// failed attempt is simply repeated.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		lctx, cancel := context.WithTimeout(context.Background(), 65*time.Second)
		err = adminClient(via.HTTPAddr).Leave(lctx, p.ID)
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		return desc, fmt.Errorf("leave: %w", err)
	}
	n.target = p
	return desc, p.Stop()
}

func (n *leaveJoinNemesis) Stop(context.Context) (string, error) {
	p := n.target
	if p == nil {
		return "", nil
	}
	n.target = nil
	var join []string
	for _, q := range n.c.Up() {
		if q != p {
			join = append(join, q.HTTPAddr)
		}
	}
	p.Join = join
	err := p.StartFresh()
	return fmt.Sprintf("started %s fresh with --join (pid %d)", p.ID, p.PID()), err
}

// partitionNemesis cuts the network: it isolates a random node or the
// leader of a random group, or (five nodes or more) splits the cluster into
// a random minority and majority.
type partitionNemesis struct{ c *Cluster }

func (n *partitionNemesis) Name() string { return "partition" }

func (n *partitionNemesis) Start(ctx context.Context, rng *rand.Rand) (string, error) {
	nodes := n.c.Nodes
	var side []*nodeproc.Node
	var why string
	switch k := rng.IntN(3); {
	case k == 2 && len(nodes) >= 5:
		perm := rng.Perm(len(nodes))
		for _, i := range perm[:(len(nodes)-1)/2] {
			side = append(side, nodes[i])
		}
		why = "minority"
	default:
		p, w := pickTarget(ctx, n.c, rng)
		if p == nil {
			return "", errors.New("no node up")
		}
		side, why = []*nodeproc.Node{p}, "isolate "+w
	}
	ids := make([]string, len(side))
	for i, p := range side {
		ids[i] = p.ID
	}
	return fmt.Sprintf("partition %v from the rest (%s)", ids, why), n.c.Partition(side)
}

func (n *partitionNemesis) Stop(context.Context) (string, error) {
	return "heal all partitions", n.c.Heal()
}
