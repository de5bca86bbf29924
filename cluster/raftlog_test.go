package cluster

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestRoutineRaftWarningsAreLoggedAtDebug(t *testing.T) {
	var out bytes.Buffer
	base := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info})
	l := raftLogger{base}.With("group", "shard-1").Named("raft")
	l.Warn("heartbeat timeout reached, starting election", "last-leader-id", "")
	l.Warn("failed to get previous log", "previous-index", 7)
	if out.Len() != 0 {
		t.Fatalf("routine raft warnings reached an INFO log:\n%s", &out)
	}
	l.Warn("failed to contact quorum of nodes, stepping down")
	if !strings.Contains(out.String(), "[WARN]  raft: failed to contact quorum") {
		t.Fatalf("a real warning was not logged at WARN:\n%s", &out)
	}
	if electionLogLevel(CauseFirstElection) != hclog.Info || electionLogLevel(CauseTransfer) != hclog.Info ||
		electionLogLevel(CauseHeartbeatTimeout) != hclog.Warn || electionLogLevel(CauseLostQuorum) != hclog.Warn {
		t.Error("election events: a new cluster's first election and a handover are INFO, a quiet leader or a lost quorum WARN")
	}
}
