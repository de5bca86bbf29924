package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/registry"
)

// AuthService is the part of the node that checks callers and keeps tokens
// and roles (cluster/auth.go).
type AuthService interface {
	AuthEnabled() bool
	Authenticate(secret string) (tokenID string, err error)
	RequireAdmin(ctx context.Context) error
	CreateToken(ctx context.Context, req cluster.TokenRequest) (cluster.NewToken, error)
	RevokeToken(ctx context.Context, id string) error
	Tokens(ctx context.Context) ([]registry.Token, error)
	PutRole(ctx context.Context, r registry.Role) error
	DeleteRole(ctx context.Context, name string) error
	Role(ctx context.Context, name string) (registry.Role, error)
	Roles(ctx context.Context) ([]registry.Role, error)
}

// openPaths answer without a token: operators and orchestrators probe them
// during an outage, and they reveal nothing about the data. So do the
// dashboard's files under /ui/: the page asks for a token itself before it
// reads anything.
var openPaths = map[string]bool{"/livez": true, "/readyz": true, "/metrics": true}

func isOpenPath(path string) bool {
	return openPaths[path] || path == "/ui" || strings.HasPrefix(path, "/ui/")
}

// authenticate resolves the request's bearer token when auth is on and
// returns the request carrying the caller, or writes 401 and returns nil.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *http.Request {
	if !s.svc.AuthEnabled() || isOpenPath(r.URL.Path) {
		return r
	}
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		secret = ""
	}
	id, err := s.svc.Authenticate(strings.TrimSpace(secret))
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="raftkv"`)
		writeError(w, err)
		return nil
	}
	return r.WithContext(cluster.WithCaller(r.Context(), id))
}

// admin wraps a cluster operation that needs the admin role.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.svc.RequireAdmin(r.Context()); err != nil {
			writeError(w, err)
			return
		}
		h(w, r)
	}
}

func (s *Server) routeAuth() {
	s.mux.HandleFunc("POST /v1/auth/tokens", s.handleCreateToken)
	s.mux.HandleFunc("GET /v1/auth/tokens", s.handleListTokens)
	s.mux.HandleFunc("DELETE /v1/auth/tokens/{id}", s.handleRevokeToken)
	s.mux.HandleFunc("GET /v1/auth/roles", s.handleListRoles)
	s.mux.HandleFunc("GET /v1/auth/roles/{name}", s.handleGetRole)
	s.mux.HandleFunc("PUT /v1/auth/roles/{name}", s.handlePutRole)
	s.mux.HandleFunc("DELETE /v1/auth/roles/{name}", s.handleDeleteRole)
}

type createTokenRequest struct {
	Roles       []string `json:"roles"`
	TTL         string   `json:"ttl"`
	Description string   `json:"description"`
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var req createTokenRequest
	ctx, cancel, err := s.decodeWithDeadline(w, r, &req, DefaultTimeout)
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	tr := cluster.TokenRequest{Roles: req.Roles, Description: req.Description}
	if req.TTL != "" {
		if tr.TTL, err = time.ParseDuration(req.TTL); err != nil || tr.TTL <= 0 {
			writeError(w, fmt.Errorf("%w: ttl %q: want a positive Go duration such as 24h", cluster.ErrBadRequest, req.TTL))
			return
		}
	}
	t, err := s.svc.CreateToken(ctx, tr)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) {
	tokens, err := s.svc.Tokens(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": tokens})
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, err := withDeadline(r, DefaultTimeout)
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	id := r.PathValue("id")
	if err := s.svc.RevokeToken(ctx, id); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"revoked": id})
}

func (s *Server) handleListRoles(w http.ResponseWriter, r *http.Request) {
	roles, err := s.svc.Roles(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"roles": roles})
}

func (s *Server) handleGetRole(w http.ResponseWriter, r *http.Request) {
	role, err := s.svc.Role(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, role)
}

type putRoleRequest struct {
	Admin       bool                  `json:"admin"`
	Permissions []registry.Permission `json:"permissions"`
}

func (s *Server) handlePutRole(w http.ResponseWriter, r *http.Request) {
	var req putRoleRequest
	ctx, cancel, err := s.decodeWithDeadline(w, r, &req, DefaultTimeout)
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	role := registry.Role{Name: r.PathValue("name"), Admin: req.Admin, Permissions: req.Permissions}
	if role.Permissions == nil {
		role.Permissions = []registry.Permission{}
	}
	if err := s.svc.PutRole(ctx, role); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, role)
}

func (s *Server) handleDeleteRole(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, err := withDeadline(r, DefaultTimeout)
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	name := r.PathValue("name")
	if err := s.svc.DeleteRole(ctx, name); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": name})
}
