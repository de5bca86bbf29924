package httpapi

import (
	"strings"
	"testing"
)

func TestRaftsHotTimingsAreLeftOutAndTheRestKept(t *testing.T) {
	for key, hot := range map[string]bool{
		"raft.rpc.appendEntries.storeLogs":   true,
		"raft.rpc.processHeartbeat":          true,
		"raft.rpc.installSnapshot":           false,
		"raft.rpc.installSnapshot.received":  false,
		"raft.fsm.apply":                     true,
		"raft.net.getRPCType":                true,
		"raft.commitTime":                    false,
		"raft.apply":                         false,
		"raft.leader.lastContact":            false,
		"raft.replication.appendEntries.rpc": false,
		"raft":                               false,
		"raftkv.rpc.x":                       false,
	} {
		if got := isHotRaftMetric(strings.Split(key, ".")); got != hot {
			t.Errorf("%s: left out %v, want %v", key, got, hot)
		}
	}
}
