package cluster

import "github.com/hashicorp/go-hclog"

// routineRaftWarnings are messages hashicorp/raft logs at WARN for events
// that are normal here: a new node's groups have no configuration while it
// waits to bootstrap or join, every group of a new node elects itself after
// a heartbeat timeout, and a joining follower is told about entries it
// does not have yet while it catches up (and its leader, that the follower
// refused them, so it sends older ones). raftkv says what matters about these
// itself (the "election event" line, at WARN when its cause is a fault),
// so raft's line goes to DEBUG: WARN and ERROR are for an operator to look.
var routineRaftWarnings = map[string]bool{
	"heartbeat timeout reached, starting election": true,
	"failed to get previous log":                   true,
	"no known peers, aborting election":            true,
	"appendEntries rejected, sending older logs":   true,
}

// raftLogger is a group's logger as raft gets it.
type raftLogger struct{ hclog.Logger }

func (l raftLogger) Warn(msg string, args ...any) {
	l.Log(hclog.Warn, msg, args...)
}

func (l raftLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Warn && routineRaftWarnings[msg] {
		level = hclog.Debug
	}
	l.Logger.Log(level, msg, args...)
}

func (l raftLogger) With(args ...any) hclog.Logger    { return raftLogger{l.Logger.With(args...)} }
func (l raftLogger) Named(name string) hclog.Logger   { return raftLogger{l.Logger.Named(name)} }
func (l raftLogger) ResetNamed(n string) hclog.Logger { return raftLogger{l.Logger.ResetNamed(n)} }

// electionLogLevel is the level of an election event: INFO for what a
// healthy cluster does (starting, handing over, leaving), WARN for what an
// operator should look at (a leader that went quiet or lost its quorum).
func electionLogLevel(cause string) hclog.Level {
	switch cause {
	case CauseHeartbeatTimeout, CauseLostQuorum, CauseLeaderGone:
		return hclog.Warn
	}
	return hclog.Info
}
