// Package chaos runs workloads against a cluster of real `raftkv serve`
// processes while a nemesis injects faults (SIGKILL, SIGSTOP, leadership
// transfers, leave and re-join with a wiped data dir, network partitions),
// records every operation with its invoke and complete times and outcome,
// and checks the history afterwards:
//
//   - register: reads, writes and compare-and-swap on a few keys, checked for
//     linearizability with porcupine;
//   - set: unique adds, checked for lost acknowledged writes and for writes
//     that reported a definite failure but happened anyway.
//
// It also measures failover the way operators count it (Failover): time to
// a new leader, the write-unavailability window of the shard whose leader
// died, and the catch-up time of the restarted node.
//
// The `raftkv chaos` command is a thin front end to Run, Failover and Steady;
// chaos_test.go is the bounded run CI does on every change. DESIGN.md
// explains the outcome rules and the checker models.
package chaos
