package chaos

import (
	"context"
	"fmt"

	"github.com/raftkv/raftkv/internal/nodeproc"
)

// Cluster is the nodes a run works on: a nodeproc cluster, started by this
// package or attached to (then the nemeses that need a process refuse to
// run), and, when the nodes run in network namespaces, the network that
// the partition nemesis cuts.
type Cluster struct {
	*nodeproc.Cluster
	net  *netLab // nil unless the nodes run in network namespaces
	logf func(format string, args ...any)
}

// ClusterOptions describe a cluster to start.
type ClusterOptions struct {
	Nodes  int
	Shards int
	// Bin is the raftkv executable.
	Bin string
	// Dir holds data dirs and logs; a temp dir (removed by Close) when empty.
	Dir string
	// Netns runs every node in its own network namespace (root only), so
	// the partition nemesis can cut links.
	Netns bool
	// ExtraArgs are added to every node's command line.
	ExtraArgs []string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// StartCluster starts opts.Nodes fresh nodes (node1 bootstraps, the others
// join it) and waits until every node is ready and a voter of every group.
// On error everything already started is gone again; the error ends with
// the tail of every node log.
func StartCluster(ctx context.Context, opts ClusterOptions) (*Cluster, error) {
	c := &Cluster{logf: opts.Logf}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	nopts := nodeproc.Options{Nodes: opts.Nodes, Shards: opts.Shards, Bin: opts.Bin, Dir: opts.Dir,
		ExtraArgs: opts.ExtraArgs, Logf: c.logf}
	if opts.Netns {
		lab, err := newNetLab(opts.Nodes)
		if err != nil {
			return nil, err
		}
		c.net = lab
		nopts.Place = lab.place
	}
	nc, err := nodeproc.New(nopts)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.Cluster = nc
	if err := nc.Start(ctx); err != nil {
		err = fmt.Errorf("%w\n%s", err, nc.LogTails(20))
		c.Close()
		return nil, err
	}
	return c, nil
}

// Attach returns a Cluster for nodes that something else runs: the members
// come from the registry of the first address that answers.
func Attach(ctx context.Context, httpAddrs []string) (*Cluster, error) {
	nc, err := nodeproc.Attach(ctx, httpAddrs)
	if err != nil {
		return nil, err
	}
	return &Cluster{Cluster: nc, logf: func(string, ...any) {}}, nil
}

// Netns reports whether the nodes run in their own network namespaces.
func (c *Cluster) Netns() bool { return c.net != nil }

// Close kills every process this cluster started (by PID), removes the
// network namespaces it created and, if it made it, its directory.
func (c *Cluster) Close() {
	if c.Cluster != nil {
		if err := c.Cluster.Close(); err != nil {
			c.logf("closing the cluster: %v", err)
		}
	}
	if c.net != nil {
		c.net.close()
		c.net = nil
	}
}
