package chaos

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/nodeproc"
)

// TestChaos is the bounded run CI does on every change: every workload
// against real processes, under every nemesis that can run here (partition
// needs root; without it the run says so and skips that nemesis). The bank
// workload (cross-shard transfers) runs under kill and pause. About two and
// a half minutes; skipped with -short. Clients pause between operations
// so the test process (built with -race in CI) stays light on CPU.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run skipped with -short")
	}
	bin, err := nodeproc.BuildBinary(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runs := []Config{
		{Workload: "register", Nemeses: NemesisNames, Duration: 65 * time.Second, Clients: 4, Keys: 4},
		{Workload: "set", Nemeses: []string{"kill", "partition", "pause", "leave-join"}, Duration: 40 * time.Second, Clients: 4},
		{Workload: "bank", Nemeses: []string{"kill", "pause"}, Duration: 25 * time.Second, Clients: 4},
	}
	for _, cfg := range runs {
		t.Run(cfg.Workload, func(t *testing.T) {
			cfg.Bin, cfg.Shards = bin, 2
			cfg.Think = 10 * time.Millisecond
			cfg.Interval, cfg.FaultFor = 3*time.Second, 2*time.Second
			cfg.OutDir = t.TempDir()
			cfg.CheckTimeout = 90 * time.Second
			cfg.Logf = t.Logf
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			res, err := Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			res.WriteSummary(&b)
			t.Logf("\n%s", b.String())
			if !res.Valid {
				t.Fatalf("chaos run found a problem (seed %d); see the summary above", res.Seed)
			}
			starts := 0
			for _, e := range res.Faults {
				if e.Action == "start" {
					starts++
				}
			}
			if starts < 4 {
				t.Errorf("only %d faults were injected", starts)
			}
		})
	}
}
