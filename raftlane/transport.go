package raftlane

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// Transport is a group's raft transport: its own (inner) for everything
// but appends with entries, which take the node's lane when one is up to
// the target.
type Transport struct {
	lane  *Lane
	group string
	inner raft.Transport

	consumer  chan raft.RPC
	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// Wrap returns group's transport: inner, with appends on the lane. The
// group's raft must read from the returned transport's Consumer.
func (l *Lane) Wrap(group string, inner raft.Transport) (*Transport, error) {
	t := &Transport{lane: l, group: group, inner: inner, consumer: make(chan raft.RPC), stop: make(chan struct{})}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return nil, raft.ErrTransportShutdown
	case l.groups[group] != nil:
		return nil, fmt.Errorf("raftlane: group %q is already registered", group)
	}
	l.groups[group] = t
	t.wg.Add(1)
	go t.forward()
	return t, nil
}

// forward passes the inner transport's RPCs on to raft.
func (t *Transport) forward() {
	defer t.wg.Done()
	in := t.inner.Consumer()
	for {
		select {
		case rpc := <-in:
			select {
			case t.consumer <- rpc:
			case <-t.stop:
				rpc.Respond(nil, raft.ErrTransportShutdown)
				return
			}
		case <-t.stop:
			return
		}
	}
}

// deliver hands a request read from c to raft and queues raft's answer.
func (t *Transport) deliver(c *conn, id uint64, req *raft.AppendEntriesRequest) {
	answer := make(chan raft.RPCResponse, 1)
	select {
	case t.consumer <- raft.RPC{Command: req, RespChan: answer}:
	case <-t.stop:
		c.send(encodeErrorReply(id, raft.ErrTransportShutdown.Error()))
		return
	case <-c.done:
		return
	}
	var r raft.RPCResponse
	select {
	case r = <-answer:
	case <-t.stop:
		c.send(encodeErrorReply(id, raft.ErrTransportShutdown.Error()))
		return
	case <-c.done:
		return
	}
	resp, ok := r.Response.(*raft.AppendEntriesResponse)
	switch {
	case r.Error != nil:
		c.send(encodeErrorReply(id, r.Error.Error()))
	case !ok:
		c.send(encodeErrorReply(id, fmt.Sprintf("raft answered an append with %T", r.Response)))
	default:
		c.send(encodeReply(id, resp))
	}
}

// Consumer implements raft.Transport.
func (t *Transport) Consumer() <-chan raft.RPC { return t.consumer }

// LocalAddr implements raft.Transport.
func (t *Transport) LocalAddr() raft.ServerAddress { return t.inner.LocalAddr() }

// AppendEntriesPipeline implements raft.Transport (the inner transport's).
func (t *Transport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	return t.inner.AppendEntriesPipeline(id, target)
}

// AppendEntries implements raft.Transport: appends with entries take the
// lane when it is up; heartbeats and probes stay on the inner transport,
// whose heartbeat fast path answers them without the raft loop.
func (t *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if len(args.Entries) > 0 {
		if requestSize(args) <= t.lane.cfg.MaxBatchBytes {
			if handled, err := t.lane.appendEntries(t.group, target, args, resp); handled {
				return err
			}
		}
		t.lane.falls.Add(1)
	}
	return t.inner.AppendEntries(id, target, args, resp)
}

// RequestVote implements raft.Transport.
func (t *Transport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return t.inner.RequestVote(id, target, args, resp)
}

// RequestPreVote implements raft.WithPreVote when the inner transport does.
func (t *Transport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	pv, ok := t.inner.(raft.WithPreVote)
	if !ok {
		return errors.New("raftlane: the group's transport has no pre-vote")
	}
	return pv.RequestPreVote(id, target, args, resp)
}

// InstallSnapshot implements raft.Transport.
func (t *Transport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	return t.inner.InstallSnapshot(id, target, args, resp, data)
}

// EncodePeer implements raft.Transport.
func (t *Transport) EncodePeer(id raft.ServerID, addr raft.ServerAddress) []byte {
	return t.inner.EncodePeer(id, addr)
}

// DecodePeer implements raft.Transport.
func (t *Transport) DecodePeer(b []byte) raft.ServerAddress { return t.inner.DecodePeer(b) }

// SetHeartbeatHandler implements raft.Transport: heartbeats arrive on the
// inner transport.
func (t *Transport) SetHeartbeatHandler(cb func(rpc raft.RPC)) { t.inner.SetHeartbeatHandler(cb) }

// TimeoutNow implements raft.Transport.
func (t *Transport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return t.inner.TimeoutNow(id, target, args, resp)
}

// CloseStreams closes the inner transport's pooled connections, when it
// has them (raft's NetworkTransport).
func (t *Transport) CloseStreams() {
	if cs, ok := t.inner.(interface{ CloseStreams() }); ok {
		cs.CloseStreams()
	}
}

// Close implements raft.WithClose: the group leaves the lane (its requests
// still arriving are refused) and the inner transport closes.
func (t *Transport) Close() error {
	var err error
	t.closeOnce.Do(func() {
		t.lane.mu.Lock()
		if t.lane.groups[t.group] == t {
			delete(t.lane.groups, t.group)
		}
		t.lane.mu.Unlock()
		close(t.stop)
		t.wg.Wait()
		if c, ok := t.inner.(raft.WithClose); ok {
			err = c.Close()
		}
	})
	return err
}

var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
)
