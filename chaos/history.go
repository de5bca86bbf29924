package chaos

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/nodeproc"
)

// Op is one operation in the history. Times are nanoseconds since the run
// started, on this process's monotonic clock (the only clock that matters:
// the checker needs real-time order as one observer saw it).
type Op struct {
	// Process numbers the logical client. A client whose operation ended
	// indeterminate continues as a new process, since the old one may still
	// be "in" that operation (Jepsen's convention; porcupine does not need
	// it but the visualization reads better).
	Process  int     `json:"process"`
	Node     string  `json:"node"`
	F        string  `json:"f"` // read, write, cas, add
	Key      string  `json:"key"`
	Value    string  `json:"value,omitempty"`
	Expect   uint64  `json:"expect,omitempty"` // cas: the If-Match revision
	Invoke   int64   `json:"invoke_ns"`
	Complete int64   `json:"complete_ns"`
	Outcome  Outcome `json:"outcome"`
	Status   int     `json:"status,omitempty"`
	Found    bool    `json:"found,omitempty"`  // read: key exists
	Result   string  `json:"result,omitempty"` // read: the value
	Rev      uint64  `json:"rev,omitempty"`    // read: revision; write/cas: new revision
	Err      string  `json:"error,omitempty"`
}

// Event is a nemesis action, placed on the same clock as the operations.
type Event struct {
	At      int64  `json:"at_ns"`
	Nemesis string `json:"nemesis"`
	Action  string `json:"action"` // start, stop, skip, error
	Detail  string `json:"detail"`
}

// History collects operations and nemesis events from many goroutines.
type History struct {
	start time.Time
	// mu guards ops and events.
	mu     sync.Mutex
	ops    []Op
	events []Event
}

// NewHistory starts the clock.
func NewHistory() *History { return &History{start: time.Now()} }

// Now returns the time on the history's clock.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Add records a completed operation.
func (h *History) Add(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Event records a nemesis action now.
func (h *History) Event(nemesis, action, detail string) Event {
	e := Event{At: h.Now(), Nemesis: nemesis, Action: action, Detail: detail}
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
	return e
}

// Ops returns a copy of the operations.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Events returns a copy of the nemesis events.
func (h *History) Events() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event(nil), h.events...)
}

// WriteJSON writes {"ops":[...],"events":[...]} to path.
func (h *History) WriteJSON(path string) error {
	b, err := json.Marshal(struct {
		Ops    []Op    `json:"ops"`
		Events []Event `json:"events"`
	}{h.Ops(), h.Events()})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// client is one workload goroutine: it sends its requests to one node and
// moves to the next when that node does not answer.
type client struct {
	id      int // worker index
	process int
	procs   int // number of workers: process ids advance by this
	c       *Cluster
	node    int
	rng     *rand.Rand
	h       *History
}

func (cl *client) addr() *nodeproc.Node { return cl.c.Nodes[cl.node%len(cl.c.Nodes)] }

// do runs the key operation op describes (op.F on op.Key, writing
// op.Value; a cas expects revision op.Expect) and records it.
func (cl *client) do(ctx context.Context, op Op) Op {
	p := cl.addr()
	op.Process, op.Node = cl.process, p.ID
	op.Invoke = cl.h.Now()
	var value []byte
	if op.F != "read" {
		value = []byte(op.Value)
	}
	r := kvRequest(ctx, p.HTTPAddr, op.F, op.Key, value, op.Expect)
	op.Complete = cl.h.Now()
	op.Outcome, op.Status, op.Err = r.Outcome, r.Status, r.Err
	op.Found, op.Result, op.Rev = r.Found, r.Value, r.Rev
	if ctx.Err() != nil && r.Outcome != OK {
		// The run ended under this request: say so rather than blame the
		// server; a write stays indeterminate.
		op.Err = "run ended: " + op.Err
	}
	cl.h.Add(op)
	if r.Outcome == Info {
		cl.process += cl.procs
	}
	if r.Outcome != OK && (r.Status == 0 || r.Status == http.StatusServiceUnavailable) {
		cl.node++ // try another node next time
	}
	return op
}
