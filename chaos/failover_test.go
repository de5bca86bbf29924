package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/nodeproc"
)

// TestFailoverRoundsSeeTheElectionInTheEventStream runs two kill rounds
// of the failover measurement (scripts/failover.sh): each round's new
// leader is the one a surviving node announced in its event stream, after
// the fault, and the round carries the stream's account of the election.
func TestFailoverRoundsSeeTheElectionInTheEventStream(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	bin, err := nodeproc.BuildBinary(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := Failover(ctx, FailoverConfig{Nodes: 3, Shards: 2, Bin: bin, Fault: "kill", Rounds: 2,
		Down: 2 * time.Second, Settle: time.Second, Think: 20 * time.Millisecond, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rounds) != 2 {
		t.Fatalf("%d rounds, want 2", len(res.Rounds))
	}
	for _, r := range res.Rounds {
		if r.Error != "" {
			t.Fatalf("round %d: %s", r.N, r.Error)
		}
		if r.DetectMs <= 0 {
			t.Errorf("round %d: new leader %.0f ms after the fault, want > 0", r.N, r.DetectMs)
		}
		var won bool
		for _, e := range r.Events {
			if e.AtMs < 0 || e.AtMs > r.DetectMs {
				t.Errorf("round %d: event %s outside [fault, new leader at %.0f ms]", r.N, e, r.DetectMs)
			}
			if e.Node == r.Victim {
				t.Errorf("round %d: event %s from the killed node", r.N, e)
			}
			if e.Type == "leader" && e.Leader == e.Node && e.Leader != r.Victim {
				won = true
			}
		}
		if !won {
			t.Errorf("round %d: the events %v do not show the new leader of %s", r.N, r.Events, r.Shard)
		}
	}
}
