package main

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// workersPerGRPCClient is how many bench workers share one etcd client,
// that is one HTTP/2 connection to each endpoint: gRPC multiplexes calls
// on a connection, and etcd's own benchmark tool likewise runs many
// clients over a few connections. Sixteen keeps a 256-worker run at 16
// connections per member, where etcd's throughput had stopped rising.
const workersPerGRPCClient = 16

// etcdGRPCConn drives etcd through its native gRPC API with etcd's own Go
// client, the way Go programs use etcd. It is the reference the JSON
// gateway's figures are read against: the gateway adds a JSON hop in the
// etcd server.
type etcdGRPCConn struct {
	kv           clientv3.KV
	serializable bool
}

// newEtcdGRPCConns returns one connection per worker over
// ceil(workers/workersPerGRPCClient) etcd clients, each balancing its calls
// over all endpoints, and a function that closes the clients.
func newEtcdGRPCConns(endpoints []string, workers int, stale bool, timeout time.Duration) ([]benchConn, func(), error) {
	var clients []*clientv3.Client
	closeAll := func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}
	conns := make([]benchConn, workers)
	for w := range conns {
		if w%workersPerGRPCClient == 0 {
			c, err := clientv3.New(clientv3.Config{
				Endpoints:   endpoints,
				DialTimeout: timeout,
				Logger:      zap.NewNop(),
			})
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("connecting to etcd: %w", err)
			}
			clients = append(clients, c)
		}
		conns[w] = etcdGRPCConn{kv: clients[len(clients)-1], serializable: stale}
	}
	return conns, closeAll, nil
}

func (e etcdGRPCConn) put(ctx context.Context, key string, value []byte) error {
	_, err := e.kv.Put(ctx, key, string(value))
	return err
}

func (e etcdGRPCConn) get(ctx context.Context, key string) error {
	var opts []clientv3.OpOption
	if e.serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := e.kv.Get(ctx, key, opts...)
	if err == nil && resp.Count == 0 {
		err = fmt.Errorf("etcd range: key %q not found", key)
	}
	return err
}

func (e etcdGRPCConn) deletePrefix(ctx context.Context, prefix string) (int64, error) {
	resp, err := e.kv.Delete(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	return resp.Deleted, nil
}

// txn is etcdConn.txn over gRPC: if a's version > 0, put both.
func (e etcdGRPCConn) txn(ctx context.Context, a, b string, value []byte) error {
	v := string(value)
	resp, err := e.kv.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(a), ">", 0)).
		Then(clientv3.OpPut(a, v), clientv3.OpPut(b, v)).
		Commit()
	if err == nil && !resp.Succeeded {
		err = fmt.Errorf("etcd txn: the compare on %q failed: the key is missing", a)
	}
	return err
}
