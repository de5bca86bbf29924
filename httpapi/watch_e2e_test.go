package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/raftkvtest"
)

type sseEvent struct {
	id, typ string
	data    map[string]any
}

// sseStream reads a watch stream's events as they come.
type sseStream struct {
	t      *testing.T
	cancel context.CancelFunc
	events chan sseEvent
}

func openWatch(t *testing.T, url, lastID string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	s := &sseStream{t: t, cancel: cancel, events: make(chan sseEvent, 1024)}
	go func() {
		defer resp.Body.Close()
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var e sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if e.typ != "" {
					s.events <- e
				}
				e = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				e.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				e.typ = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &e.data)
			}
		}
	}()
	t.Cleanup(cancel)
	return s
}

// next returns the next put or delete event (progress events skipped).
func (s *sseStream) next() sseEvent {
	s.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case e, ok := <-s.events:
			if !ok {
				s.t.Fatal("the stream ended")
			}
			if e.typ != "progress" {
				return e
			}
		case <-timeout:
			s.t.Fatal("no event within 20s")
		}
	}
}

func (s *sseStream) close() { s.cancel() }

func index(a answer) uint64 {
	n, _ := strconv.ParseUint(a.header.Get("X-Raftkv-Index"), 10, 64)
	return n
}

func eventLine(e sseEvent) string {
	return fmt.Sprintf("%s %s", e.typ, e.data["key"])
}

// TestWatchResumesOnAnotherNodeWithoutLossOrDuplicates: a stream read in
// part on one node and resumed from its last id on another delivers
// every change (puts, deletes, a transaction's writes, a prefix delete)
// exactly once, each shard's in revision order.
func TestWatchResumesOnAnotherNodeWithoutLossOrDuplicates(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	url := func(i int, path string) string { return "http://" + c.Nodes[i].HTTPAddr + path }
	first := openWatch(t, url(0, "/v1/watch?prefix=w/"), "")
	var want []string
	put := func(i int, key, value string) {
		if a := send(t, "PUT", url(i, "/v1/kv/"+key), value); a.status != 200 {
			t.Fatalf("put %s: %d %s", key, a.status, a.body)
		}
		want = append(want, "put "+key)
	}
	for i := range 6 {
		put(i%3, fmt.Sprintf("w/%d", i), "v")
	}
	send(t, "PUT", url(1, "/v1/kv/other"), "not watched")
	if a := send(t, "DELETE", url(2, "/v1/kv/w/0"), ""); a.status != 200 {
		t.Fatalf("delete: %d %s", a.status, a.body)
	}
	want = append(want, "delete w/0")
	txn := `{"success":[{"op":"put","key":"w/t1","value":"a"},{"op":"put","key":"w/t2","value":"b"},{"op":"put","key":"w/t3","value":"c"}]}`
	if a := send(t, "POST", url(1, "/v1/txn"), txn); a.status != 200 {
		t.Fatalf("txn: %d %s", a.status, a.body)
	}
	want = append(want, "put w/t1", "put w/t2", "put w/t3")

	var got []sseEvent
	for range 5 {
		got = append(got, first.next())
	}
	first.close()
	// More changes while nobody watches.
	if a := send(t, "DELETE", url(0, "/v1/kv?prefix=w/t"), ""); a.status != 200 {
		t.Fatalf("delete prefix: %d %s", a.status, a.body)
	}
	want = append(want, "delete w/t1", "delete w/t2", "delete w/t3")
	put(2, "w/9", "last")

	second := openWatch(t, url(1, "/v1/watch?prefix=w/"), got[len(got)-1].id)
	for len(got) < len(want) {
		got = append(got, second.next())
	}
	lines := make([]string, len(got))
	last := map[string]float64{}
	for i, e := range got {
		lines[i] = eventLine(e)
		shard, rev := e.data["shard"].(string), e.data["revision"].(float64)
		if rev < last[shard] {
			t.Errorf("%s: revision %v after %v", shard, rev, last[shard])
		}
		last[shard] = rev
	}
	sort.Strings(lines)
	sort.Strings(want)
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	// Nothing more: a further event would be a duplicate.
	select {
	case e := <-second.events:
		if e.typ != "progress" {
			t.Fatalf("extra event %+v", e)
		}
	case <-time.After(500 * time.Millisecond):
	}
}

// TestWatchFromACompactedCursorSaysSo: a cursor the history no longer
// reaches ends the stream with a "compacted" event that names the oldest
// revision kept, and the EventSource reconnection after it is refused.
func TestWatchFromACompactedCursorSaysSo(t *testing.T) {
	c := raftkvtest.NewClusterWith(t, 1, 1, func(cfg *cluster.Config) { cfg.WatchHistory = fsm.HistoryLimits{Changes: 3} })
	base := "http://" + c.Nodes[0].HTTPAddr
	start := send(t, "GET", base+"/v1/kv?prefix=c/", "").header.Get("X-Raftkv-Cursor")
	if start == "" {
		t.Fatal("a listing carries no X-Raftkv-Cursor")
	}
	for i := range 10 {
		send(t, "PUT", fmt.Sprintf("%s/v1/kv/c/%d", base, i), "v")
	}
	s := openWatch(t, base+"/v1/watch?prefix=c/&from="+start, "")
	e := s.next()
	if e.typ != "compacted" || e.data["oldest_revision"].(float64) <= 1 {
		t.Fatalf("got %+v, want compacted", e)
	}
	if _, ok := <-s.events; ok {
		t.Fatal("the stream goes on after compacted")
	}
	// A browser's EventSource reconnects with the last id it got: 204
	// makes it stop instead of reconnecting forever.
	if e.id != "end" {
		t.Fatalf("compacted event id %q, want end", e.id)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/watch?prefix=c/&from="+start, nil)
	req.Header.Set("Last-Event-ID", e.id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("reconnect after the end: %d, want 204", resp.StatusCode)
	}
	// A cursor the history still holds streams the rest.
	s = openWatch(t, fmt.Sprintf("%s/v1/watch?prefix=c/&from=%d", base, int(e.data["oldest_revision"].(float64))-1), "")
	if e := s.next(); e.typ != "put" {
		t.Fatalf("from the oldest revision kept: %+v", e)
	}
}

// TestBlockingQueries: a blocking read of a key or a prefix answers once
// it changes past the index it was given, with the new state and index,
// and at the wait's end with the state unchanged; bad options are refused
// before any wait.
func TestBlockingQueries(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	url := func(i int, path string) string { return "http://" + c.Nodes[i].HTTPAddr + path }
	send(t, "PUT", url(0, "/v1/kv/b/key"), "one")
	idx := send(t, "GET", url(0, "/v1/kv/b/key"), "").header.Get("X-Raftkv-Index")

	done := make(chan answer, 1)
	go func() { done <- send(t, "GET", url(1, "/v1/kv/b/key?wait=30s&index="+idx), "") }()
	select {
	case a := <-done:
		t.Fatalf("answered before any change: %d %s", a.status, a.body)
	case <-time.After(300 * time.Millisecond):
	}
	send(t, "PUT", url(2, "/v1/kv/b/key"), "two")
	a := <-done
	if a.status != 200 || a.body != "two" || index(a) <= index(answer{header: http.Header{"X-Raftkv-Index": {idx}}}) {
		t.Fatalf("blocking get: %d %q index %s (was %s)", a.status, a.body, a.header.Get("X-Raftkv-Index"), idx)
	}
	// The wait's end answers the current state.
	idx = a.header.Get("X-Raftkv-Index")
	if a := send(t, "GET", url(0, "/v1/kv/b/key?wait=200ms&index="+idx), ""); a.status != 200 || a.body != "two" {
		t.Fatalf("at the deadline: %d %s", a.status, a.body)
	}
	// A missing key: 404 with an index, and a wait for its creation.
	miss := send(t, "GET", url(0, "/v1/kv/b/new"), "")
	if miss.status != 404 || miss.header.Get("X-Raftkv-Index") == "" {
		t.Fatalf("missing key: %d %v", miss.status, miss.header)
	}
	go func() {
		done <- send(t, "GET", url(0, "/v1/kv/b/new?wait=30s&index="+miss.header.Get("X-Raftkv-Index")), "")
	}()
	send(t, "PUT", url(1, "/v1/kv/b/new"), "born")
	if a := <-done; a.status != 200 || a.body != "born" {
		t.Fatalf("waiting for creation: %d %s", a.status, a.body)
	}

	// A prefix: the listing's cursor, passed back as index=.
	list := send(t, "GET", url(0, "/v1/kv?prefix=b/"), "")
	cur := list.header.Get("X-Raftkv-Cursor")
	if !strings.Contains(cur, "1:") || !strings.Contains(cur, "2:") {
		t.Fatalf("listing cursor %q", cur)
	}
	go func() { done <- send(t, "GET", url(2, "/v1/kv?prefix=b/&wait=30s&index="+cur), "") }()
	send(t, "DELETE", url(0, "/v1/kv/b/key"), "")
	a = <-done
	if a.status != 200 || strings.Contains(a.body, `"b/key"`) || a.header.Get("X-Raftkv-Cursor") == cur {
		t.Fatalf("blocking list: %d %s cursor %s", a.status, a.body, a.header.Get("X-Raftkv-Cursor"))
	}

	for _, target := range []string{
		"/v1/kv/b/key?wait=11m&index=1",      // longer than MaxWait
		"/v1/kv/b/key?wait=10s",              // no index
		"/v1/kv/b/key?index=x",               // not an index
		"/v1/kv/b/key?index=1&consistency=x", // other options checked first too
		"/v1/kv?prefix=b/&index=1:1",         // not every shard
		"/v1/kv?prefix=b/&index=1:1,2:1&count_only=true",
		"/v1/watch?from=1:1",
		"/v1/watch?from=1:1,2:x",
	} {
		if a := send(t, "GET", url(0, target), ""); a.status != 400 {
			t.Errorf("GET %s: %d %s, want 400", target, a.status, a.body)
		}
	}
}

// TestWatchResumesInsideOneEntry: a prefix delete of more keys than one
// batch holds is one entry; a stream cut in the middle of it resumes from
// the id of its last event (revision.count) with exactly the rest.
func TestWatchResumesInsideOneEntry(t *testing.T) {
	c := raftkvtest.NewCluster(t, 1, 1)
	base := "http://" + c.Nodes[0].HTTPAddr
	const n = 300
	for i := range n {
		if a := send(t, "PUT", fmt.Sprintf("%s/v1/kv/p/%03d", base, i), "v"); a.status != 200 {
			t.Fatalf("put: %d %s", a.status, a.body)
		}
	}
	start := send(t, "GET", base+"/v1/kv?prefix=p/&limit=1", "").header.Get("X-Raftkv-Cursor")
	if a := send(t, "DELETE", base+"/v1/kv?prefix=p/", ""); a.status != 200 || a.body != `{"deleted":300}` {
		t.Fatalf("delete prefix: %d %s", a.status, a.body)
	}
	seen := map[string]int{}
	first := openWatch(t, base+"/v1/watch?prefix=p/&from="+start, "")
	var last sseEvent
	for range 100 {
		last = first.next()
		seen[last.data["key"].(string)]++
	}
	first.close()
	if !strings.Contains(last.id, ".100") {
		t.Fatalf("id %q after 100 changes of one entry: want revision.100", last.id)
	}
	second := openWatch(t, base+"/v1/watch?prefix=p/", last.id)
	for range n - 100 {
		e := second.next()
		if e.typ != "delete" {
			t.Fatalf("event %+v", e)
		}
		seen[e.data["key"].(string)]++
	}
	for i := range n {
		if k := fmt.Sprintf("p/%03d", i); seen[k] != 1 {
			t.Errorf("%s seen %d times", k, seen[k])
		}
	}
}
