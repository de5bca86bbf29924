package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/registry"
)

// handleStatus answers locally, without a quorum. ?probe=true also checks
// from this node which nodes answer /livez.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if query(r).Get("probe") == "true" {
		writeJSON(w, http.StatusOK, s.svc.ProbedStatus(r.Context()))
		return
	}
	writeJSON(w, http.StatusOK, s.svc.Status())
}

// handleOverview gathers every node's status through this one, for the
// dashboard (/ui) and for scripts that want the whole picture in one call.
func (s *Server) handleOverview(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.svc.Overview(r.Context()))
}

type joinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	// Incarnation names the joining node's data; a node sends its own.
	Incarnation string `json:"incarnation,omitempty"`
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req joinRequest
	ctx, cancel, err := s.decodeWithDeadline(w, r, &req, MembershipTimeout)
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	if err := s.svc.Join(ctx, registry.Node{ID: req.ID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr, Incarnation: req.Incarnation}); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"joined": true, "id": req.ID})
}

type leaveRequest struct {
	ID string `json:"id"`
}

func (s *Server) handleLeave(w http.ResponseWriter, r *http.Request) {
	var req leaveRequest
	ctx, cancel, err := s.decodeWithDeadline(w, r, &req, MembershipTimeout)
	if err == nil && req.ID == "" {
		cancel()
		err = fmt.Errorf("%w: id is required", cluster.ErrBadRequest)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	if err := s.svc.Leave(ctx, req.ID); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"left": true, "id": req.ID})
}

type transferRequest struct {
	Group string `json:"group"`
	To    string `json:"to"`
}

func (s *Server) handleTransfer(w http.ResponseWriter, r *http.Request) {
	var req transferRequest
	ctx, cancel, err := s.decodeWithDeadline(w, r, &req, 2*DefaultTimeout)
	if err == nil && req.Group == "" {
		cancel()
		err = fmt.Errorf("%w: group is required, e.g. \"shard-1\" or \"meta\"", cluster.ErrBadRequest)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	res, err := s.svc.TransferLeadership(ctx, req.Group, req.To)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) handleLivez(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if err := s.checkMember(); err != nil {
		// 410 removed rather than 503: waiting will not make it ready.
		writeError(w, fmt.Errorf("not ready: %w", err))
		return
	}
	if ok, why := s.svc.Ready(); !ok {
		writeError(w, fmt.Errorf("%w: not ready: %s", cluster.ErrUnavailable, why))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	groups, err := s.svc.Checkpoint()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"groups": groups})
}

// BackupTimeout is the default deadline for taking a backup's checkpoints.
const BackupTimeout = 2 * time.Minute

// handleBackup stages a consistent checkpoint of every group, then streams
// the archive. Errors before streaming get the usual error body; once the
// archive is flowing, a failure cuts the stream short, and the archive's
// missing trailer and checksums make that visible to whoever reads it.
func (s *Server) handleBackup(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, err := withDeadline(r, BackupTimeout)
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	bw, err := s.svc.PrepareBackup(ctx)
	if errors.Is(err, cluster.ErrOverloaded) {
		s.metrics.rejected.WithLabelValues(rejectBackups).Inc()
	}
	if err != nil {
		writeError(w, err)
		return
	}
	defer bw.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", `attachment; filename="raftkv-backup.tar"`)
	w.WriteHeader(http.StatusOK)
	// An archive may take longer to download than WriteTimeout allows any
	// request: it is cut only when the client stops reading.
	_ = bw.Finish(&stallWriter{w: w, rc: http.NewResponseController(w), stall: backupStallTimeout})
}
