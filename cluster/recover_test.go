package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/registry"
)

func TestRecoverRefusesBadSurvivorListsAndChangesNothing(t *testing.T) {
	members := []registry.Node{
		{ID: "node1", RaftAddr: "127.0.0.1:7000", HTTPAddr: "127.0.0.1:8080"},
		{ID: "node2", RaftAddr: "127.0.0.1:7001", HTTPAddr: "127.0.0.1:8081"},
		{ID: "node3", RaftAddr: "127.0.0.1:7002", HTTPAddr: "127.0.0.1:8082"},
	}
	for name, tc := range map[string]struct {
		survivors []Survivor
		want      string
	}{
		"none":              {nil, "no survivors"},
		"without this node": {[]Survivor{{ID: "node2"}}, "do not include"},
		"twice":             {[]Survivor{{ID: "node1"}, {ID: "node1"}}, "listed twice"},
		"without an id":     {[]Survivor{{ID: "node1"}, {}}, "no id"},
	} {
		if err := checkSurvivors(tc.survivors, "node1"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.want)
		}
	}
	if _, _, _, err := survivingMembers(members, []Survivor{{ID: "node1"}, {ID: "node9"}}); err == nil || !strings.Contains(err.Error(), "node9 is not a member") {
		t.Errorf("an unknown survivor: %v", err)
	}
	if _, _, _, err := survivingMembers(members, []Survivor{{ID: "node1", RaftAddr: "no port"}}); err == nil {
		t.Error("a survivor with a bad raft address was accepted")
	}

	voters, changes, removed, err := survivingMembers(members, []Survivor{{ID: "node1"}, {ID: "node3", RaftAddr: "127.0.0.1:7102"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(voters) != 2 || voters[1].RaftAddr != "127.0.0.1:7102" || voters[1].HTTPAddr != "127.0.0.1:8082" {
		t.Errorf("voters %+v, want node1 and node3 at its new raft address", voters)
	}
	if len(removed) != 1 || removed[0] != "node2" || len(changes) != 2 {
		t.Errorf("removed %v with %d registry commands, want node2 removed and node3 moved", removed, len(changes))
	}
}

func TestRecoverRefusesADirThatIsNotANodes(t *testing.T) {
	dir := t.TempDir()
	rc := RecoverConfig{DataDir: dir, Survivors: []Survivor{{ID: "node1"}}}
	if _, err := RecoverDataDir(rc); err == nil || !strings.Contains(err.Error(), "no node.json") {
		t.Errorf("empty dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node.json"), []byte(`{"node_id":"node1","shards":2,"log_format":2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := RecoverDataDir(rc); err == nil || !strings.Contains(err.Error(), "start the node once") {
		t.Errorf("an old log format: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the refused recoveries left %d entries in the dir, want only node.json", len(entries))
	}
}

func TestReadSurvivorsWantsAnArrayOfMembers(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`[{"id":"node1"},{"id":"node3","raft_addr":"10.0.0.3:7000"}]`), 0o644)
	got, err := ReadSurvivors(good)
	if err != nil || len(got) != 2 || got[1].RaftAddr != "10.0.0.3:7000" {
		t.Fatalf("good peers.json: %+v, %v", got, err)
	}
	for name, body := range map[string]string{"object": `{"id":"node1"}`, "unknown field": `[{"id":"node1","adress":"x"}]`, "not JSON": `node1`} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".json")
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := ReadSurvivors(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
