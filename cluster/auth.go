package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/registry"
)

// Authentication and permissions (Config.Auth). Tokens and roles live in
// the meta group's registry, so every node checks a request against its own
// replica without asking anyone; a revocation reaches a node as soon as it
// applies that entry.
//
// A request's caller is the id of its token, carried in the context: the
// HTTP layer sets it (WithCaller) after Authenticate, and a forwarded
// request carries it to the leader (rpc.Request.Caller), which checks the
// same permissions again. Work a node does on its own (registration,
// transaction recovery, balancing) has no caller; such calls reach another
// node only over the raft port, which peer TLS restricts to nodes.

type callerKey struct{}

// WithCaller returns ctx carrying the id of the token a request was made
// with.
func WithCaller(ctx context.Context, tokenID string) context.Context {
	return context.WithValue(ctx, callerKey{}, tokenID)
}

func callerOf(ctx context.Context) string {
	id, _ := ctx.Value(callerKey{}).(string)
	return id
}

// AuthEnabled reports whether requests must carry a token.
func (n *Node) AuthEnabled() bool { return n.cfg.Auth }

// HashSecret returns the stored form of a token secret. Secrets are random
// and long, so a plain SHA-256 is enough: there is nothing to brute-force.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Authenticate resolves a bearer secret to its token's id.
func (n *Node) Authenticate(secret string) (string, error) {
	if secret == "" {
		return "", fmt.Errorf("%w: send Authorization: Bearer <token>", ErrUnauthenticated)
	}
	t, ok := n.meta.reg.TokenByHash(HashSecret(secret))
	if !ok {
		return "", fmt.Errorf("%w: unknown or revoked token", ErrUnauthenticated)
	}
	if expired(t) {
		return "", fmt.Errorf("%w: token %s expired", ErrUnauthenticated, t.ID)
	}
	return t.ID, nil
}

func expired(t registry.Token) bool {
	return t.ExpiresAt != 0 && time.Now().UnixNano() >= t.ExpiresAt
}

// grants is what a caller may do.
type grants struct {
	all   bool // auth off, or a node's own work
	admin bool
	perms []registry.Permission
	who   string
}

func (n *Node) grantsOf(ctx context.Context) (grants, error) {
	if !n.cfg.Auth {
		return grants{all: true}, nil
	}
	id := callerOf(ctx)
	if id == "" {
		return grants{all: true}, nil
	}
	t, ok := n.meta.reg.TokenByID(id)
	if !ok {
		return grants{}, fmt.Errorf("%w: token %s was revoked", ErrUnauthenticated, id)
	}
	if expired(t) {
		return grants{}, fmt.Errorf("%w: token %s expired", ErrUnauthenticated, id)
	}
	g := grants{who: id}
	for _, name := range t.Roles {
		r, ok := n.meta.reg.Role(name)
		if !ok {
			continue
		}
		g.admin = g.admin || r.Admin
		g.perms = append(g.perms, r.Permissions...)
	}
	return g, nil
}

// allows reports whether the grants cover key with access.
func (g grants) allows(key string, access registry.Access) bool {
	if g.all || g.admin {
		return true
	}
	for _, p := range g.perms {
		if strings.HasPrefix(key, p.Prefix) && (access == registry.AccessRead || p.Access == registry.AccessReadWrite) {
			return true
		}
	}
	return false
}

// RequireAdmin fails unless the caller may run cluster operations.
func (n *Node) RequireAdmin(ctx context.Context) error {
	g, err := n.grantsOf(ctx)
	if err != nil {
		return err
	}
	if !g.all && !g.admin {
		return fmt.Errorf("%w: token %s has no admin role", ErrPermissionDenied, g.who)
	}
	return nil
}

// authorizeKeys fails unless the caller has access to every key.
func (n *Node) authorizeKeys(ctx context.Context, access registry.Access, keys ...string) error {
	g, err := n.grantsOf(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if !g.allows(k, access) {
			return fmt.Errorf("%w: token %s may not %s key %q", ErrPermissionDenied, g.who, verb(access), k)
		}
	}
	return nil
}

func verb(a registry.Access) string {
	if a == registry.AccessRead {
		return "read"
	}
	return "write"
}

// TokenRequest asks for a new token.
type TokenRequest struct {
	Roles       []string      `json:"roles"`
	TTL         time.Duration `json:"-"`
	Description string        `json:"description,omitempty"`
}

// NewToken is a created token; Secret is shown this once and stored nowhere.
type NewToken struct {
	registry.Token
	Secret string `json:"token"`
}

// putTokenArgs is what the meta leader needs to store a token: never the
// secret itself.
type putTokenArgs struct {
	ID          string   `json:"id"`
	Hash        string   `json:"hash"`
	Roles       []string `json:"roles"`
	Description string   `json:"description"`
	TTLMillis   int64    `json:"ttl_ms"`
}

// maxTokenTTL keeps an expiry representable and sane.
const maxTokenTTL = 100 * 365 * 24 * time.Hour

// CreateToken makes a token with the given roles.
func (n *Node) CreateToken(ctx context.Context, req TokenRequest) (NewToken, error) {
	if err := n.RequireAdmin(ctx); err != nil {
		return NewToken{}, err
	}
	if req.TTL < 0 || req.TTL > maxTokenTTL {
		return NewToken{}, fmt.Errorf("%w: ttl %v out of range", ErrBadRequest, req.TTL)
	}
	id, secret := randomText(8), "rkv_"+base64.RawURLEncoding.EncodeToString(randomBytes(32))
	a := putTokenArgs{ID: id, Hash: HashSecret(secret), Roles: req.Roles, Description: req.Description, TTLMillis: req.TTL.Milliseconds()}
	if err := registry.ValidateToken(a.token(0)); err != nil {
		return NewToken{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	t, _, err := route(ctx, n, MetaGroup, "put-token", a, n.putTokenLocal, nonIdempotent)
	if err != nil {
		return NewToken{}, err
	}
	return NewToken{Token: t, Secret: secret}, nil
}

func (a putTokenArgs) token(expires int64) registry.Token {
	return registry.Token{ID: a.ID, Hash: a.Hash, Roles: a.Roles, Description: a.Description, ExpiresAt: expires}
}

// putTokenLocal runs on the meta leader, which stamps the expiry with its
// own clock.
func (n *Node) putTokenLocal(ctx context.Context, g *group, a putTokenArgs) (registry.Token, error) {
	var expires int64
	if a.TTLMillis < 0 || time.Duration(a.TTLMillis)*time.Millisecond > maxTokenTTL {
		return registry.Token{}, fmt.Errorf("%w: ttl out of range", ErrBadRequest)
	}
	if a.TTLMillis > 0 {
		expires = time.Now().Add(time.Duration(a.TTLMillis) * time.Millisecond).UnixNano()
	}
	t := a.token(expires)
	if err := registry.ValidateToken(t); err != nil {
		return registry.Token{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if _, err := n.applyRegistry(ctx, g, registry.EncodePutToken(t)); err != nil {
		return registry.Token{}, err
	}
	return t, nil
}

// RevokeToken deletes a token; requests made with it fail from then on.
func (n *Node) RevokeToken(ctx context.Context, id string) error {
	if err := n.RequireAdmin(ctx); err != nil {
		return err
	}
	_, _, err := route(ctx, n, MetaGroup, "delete-token", idArgs{id}, n.deleteTokenLocal, idempotent)
	return err
}

func (n *Node) deleteTokenLocal(ctx context.Context, g *group, a idArgs) (bool, error) {
	return n.applyRegistry(ctx, g, registry.EncodeDeleteToken(a.ID))
}

// Tokens lists the tokens (never their secrets) as this node knows them.
func (n *Node) Tokens(ctx context.Context) ([]registry.Token, error) {
	if err := n.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	return n.meta.reg.Tokens(), nil
}

// PutRole creates or replaces a role.
func (n *Node) PutRole(ctx context.Context, r registry.Role) error {
	if err := n.RequireAdmin(ctx); err != nil {
		return err
	}
	if err := registry.ValidateRole(r); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	_, _, err := route(ctx, n, MetaGroup, "put-role", r, n.putRoleLocal, idempotent)
	return err
}

func (n *Node) putRoleLocal(ctx context.Context, g *group, r registry.Role) (bool, error) {
	if err := registry.ValidateRole(r); err != nil {
		return false, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return n.applyRegistry(ctx, g, registry.EncodePutRole(r))
}

// DeleteRole removes a role; tokens naming it lose what it granted.
func (n *Node) DeleteRole(ctx context.Context, name string) error {
	if err := n.RequireAdmin(ctx); err != nil {
		return err
	}
	_, _, err := route(ctx, n, MetaGroup, "delete-role", idArgs{name}, n.deleteRoleLocal, idempotent)
	return err
}

func (n *Node) deleteRoleLocal(ctx context.Context, g *group, a idArgs) (bool, error) {
	return n.applyRegistry(ctx, g, registry.EncodeDeleteRole(a.ID))
}

// Role returns one role as this node knows it.
func (n *Node) Role(ctx context.Context, name string) (registry.Role, error) {
	if err := n.RequireAdmin(ctx); err != nil {
		return registry.Role{}, err
	}
	r, ok := n.meta.reg.Role(name)
	if !ok {
		return r, fmt.Errorf("%w: no role %q", ErrNotFound, name)
	}
	return r, nil
}

// Roles lists every role, the built-in admin role first.
func (n *Node) Roles(ctx context.Context) ([]registry.Role, error) {
	if err := n.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	return n.meta.reg.Roles(), nil
}

// bootstrapTokenID names the token made from Config.BootstrapToken.
const bootstrapTokenID = "bootstrap"

// minBootstrapSecret is the shortest secret accepted for the bootstrap
// token: it is an admin credential.
const minBootstrapSecret = 16

// ensureBootstrapToken gives a cluster with auth on its first admin token:
// the secret from Config.BootstrapToken when given (on any start, so auth
// can be turned on for an existing cluster), or a new random one when this
// node creates the cluster, handed once to Config.OnBootstrapToken.
func (n *Node) ensureBootstrapToken(ctx context.Context, newCluster bool) error {
	if !n.cfg.Auth {
		return nil
	}
	secret := n.cfg.BootstrapToken
	if secret == "" {
		if !newCluster || len(n.meta.reg.Tokens()) > 0 {
			return nil
		}
		secret = "rkv_" + base64.RawURLEncoding.EncodeToString(randomBytes(32))
	} else if t, ok := n.meta.reg.TokenByID(bootstrapTokenID); ok && t.Hash == HashSecret(secret) {
		return nil
	}
	a := putTokenArgs{ID: bootstrapTokenID, Hash: HashSecret(secret), Roles: []string{registry.AdminRole}, Description: "bootstrap admin token"}
	if _, _, err := route(ctx, n, MetaGroup, "put-token", a, n.putTokenLocal, idempotent); err != nil {
		return err
	}
	if n.cfg.BootstrapToken == "" && n.cfg.OnBootstrapToken != nil {
		n.cfg.OnBootstrapToken(secret)
	}
	n.logger.Info("bootstrap admin token stored", "token_id", bootstrapTokenID)
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randomText(n int) string { return hex.EncodeToString(randomBytes(n)) }

// authorizeTxn fails unless the caller may read every key the transaction
// compares or reads and write every key it writes, in both branches.
func (n *Node) authorizeTxn(ctx context.Context, t fsm.Txn) error {
	g, err := n.grantsOf(ctx)
	if err != nil || g.all || g.admin {
		return err
	}
	check := func(key string, access registry.Access) error {
		if !g.allows(key, access) {
			return fmt.Errorf("%w: token %s may not %s key %q", ErrPermissionDenied, g.who, verb(access), key)
		}
		return nil
	}
	for _, c := range t.Compares {
		if err := check(c.Key, registry.AccessRead); err != nil {
			return err
		}
	}
	for _, branch := range [][]fsm.Op{t.Success, t.Failure} {
		for _, o := range branch {
			access := registry.AccessReadWrite
			if o.Kind == fsm.OpGet {
				access = registry.AccessRead
			}
			if err := check(o.Key, access); err != nil {
				return err
			}
		}
	}
	return nil
}
