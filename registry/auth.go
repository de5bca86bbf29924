package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/raftkv/raftkv/internal/wire"
)

// ErrNotFound is Result.Err for deleting a role or token that does not exist.
var ErrNotFound = errors.New("registry: no such role or token")

// Access is what a permission allows on the keys under its prefix.
type Access string

// Access levels.
const (
	AccessRead      Access = "read"
	AccessReadWrite Access = "readwrite"
)

// Permission grants access to every key that starts with Prefix ("" is
// every key).
type Permission struct {
	Prefix string `json:"prefix"`
	Access Access `json:"access"`
}

// Role is a named set of permissions. Admin adds the cluster operations
// (membership, checkpoints, backups, tokens and roles) and every key.
type Role struct {
	Name        string       `json:"name"`
	Admin       bool         `json:"admin,omitempty"`
	Permissions []Permission `json:"permissions"`
}

// AdminRole is built in: it can do everything and cannot be changed.
const AdminRole = "admin"

// Token is a bearer credential. Only a hash of its secret is kept.
type Token struct {
	ID          string   `json:"id"`
	Hash        string   `json:"-"`
	Roles       []string `json:"roles"`
	Description string   `json:"description,omitempty"`
	// ExpiresAt is a unix time in nanoseconds stamped by the meta leader
	// that created the token (0: never). It is compared with the clock of
	// the node checking a request, so clock skew shifts expiry by as much.
	ExpiresAt int64 `json:"expires_at,omitempty"`
}

// Limits of the auth state, so a command cannot grow it without bound.
const (
	MaxRoles          = 1024
	MaxTokens         = 16384
	MaxPermissions    = 256
	MaxRolesPerToken  = 16
	maxPrefixBytes    = 4096
	maxDescription    = 256
	tokenHashHexBytes = 64 // hex SHA-256
)

var authNamePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidateRole checks a role as PutRole would.
func ValidateRole(r Role) error {
	if !authNamePattern.MatchString(r.Name) {
		return fmt.Errorf("%w: role name %q: use 1-64 letters, digits, '.', '_' or '-'", ErrInvalid, r.Name)
	}
	if r.Name == AdminRole {
		return fmt.Errorf("%w: the %q role is built in and cannot be changed", ErrInvalid, AdminRole)
	}
	if len(r.Permissions) > MaxPermissions {
		return fmt.Errorf("%w: %d permissions, the limit is %d", ErrInvalid, len(r.Permissions), MaxPermissions)
	}
	for _, p := range r.Permissions {
		if p.Access != AccessRead && p.Access != AccessReadWrite {
			return fmt.Errorf("%w: access %q: use %q or %q", ErrInvalid, p.Access, AccessRead, AccessReadWrite)
		}
		if len(p.Prefix) > maxPrefixBytes {
			return fmt.Errorf("%w: prefix of %d bytes, the limit is %d", ErrInvalid, len(p.Prefix), maxPrefixBytes)
		}
	}
	return nil
}

// ValidateToken checks a token as PutToken would (roles need not exist yet:
// a token naming a missing role simply gets nothing from it).
func ValidateToken(t Token) error {
	switch {
	case !authNamePattern.MatchString(t.ID):
		return fmt.Errorf("%w: token id %q", ErrInvalid, t.ID)
	case len(t.Hash) != tokenHashHexBytes:
		return fmt.Errorf("%w: token hash must be %d hex digits", ErrInvalid, tokenHashHexBytes)
	case len(t.Roles) == 0 || len(t.Roles) > MaxRolesPerToken:
		return fmt.Errorf("%w: a token needs 1..%d roles, has %d", ErrInvalid, MaxRolesPerToken, len(t.Roles))
	case len(t.Description) > maxDescription:
		return fmt.Errorf("%w: description of %d bytes, the limit is %d", ErrInvalid, len(t.Description), maxDescription)
	case t.ExpiresAt < 0:
		return fmt.Errorf("%w: negative expiry", ErrInvalid)
	}
	for _, c := range t.Hash {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return fmt.Errorf("%w: token hash must be lower-case hex", ErrInvalid)
		}
	}
	for _, r := range t.Roles {
		if !authNamePattern.MatchString(r) {
			return fmt.Errorf("%w: role name %q", ErrInvalid, r)
		}
	}
	return nil
}

// authState is the replicated part of authentication: roles and tokens.
type authState struct {
	roles  map[string]Role
	tokens map[string]Token  // by id
	byHash map[string]string // token hash -> id
}

func newAuthState() authState {
	return authState{roles: map[string]Role{}, tokens: map[string]Token{}, byHash: map[string]string{}}
}

func (a *authState) putRole(r Role) *Result {
	if err := ValidateRole(r); err != nil {
		return &Result{Err: err}
	}
	if _, ok := a.roles[r.Name]; !ok && len(a.roles) >= MaxRoles {
		return &Result{Err: fmt.Errorf("%w: %d roles already, the limit", ErrInvalid, MaxRoles)}
	}
	a.roles[r.Name] = cloneRole(r)
	return &Result{Changed: true}
}

func (a *authState) deleteRole(name string) *Result {
	if _, ok := a.roles[name]; !ok {
		return &Result{Err: fmt.Errorf("%w: role %q", ErrNotFound, name)}
	}
	delete(a.roles, name)
	return &Result{Changed: true}
}

func (a *authState) putToken(t Token) *Result {
	if err := ValidateToken(t); err != nil {
		return &Result{Err: err}
	}
	if id, ok := a.byHash[t.Hash]; ok && id != t.ID {
		return &Result{Err: fmt.Errorf("%w: that secret already belongs to token %q", ErrInvalid, id)}
	}
	old, exists := a.tokens[t.ID]
	if !exists && len(a.tokens) >= MaxTokens {
		return &Result{Err: fmt.Errorf("%w: %d tokens already, the limit", ErrInvalid, MaxTokens)}
	}
	if exists {
		delete(a.byHash, old.Hash)
	}
	t.Roles = slices.Clone(t.Roles)
	a.tokens[t.ID] = t
	a.byHash[t.Hash] = t.ID
	return &Result{Changed: true}
}

func (a *authState) deleteToken(id string) *Result {
	t, ok := a.tokens[id]
	if !ok {
		return &Result{Err: fmt.Errorf("%w: token %q", ErrNotFound, id)}
	}
	delete(a.tokens, id)
	delete(a.byHash, t.Hash)
	return &Result{Changed: true}
}

func cloneRole(r Role) Role {
	r.Permissions = slices.Clone(r.Permissions)
	return r
}

// TokenByHash returns the token whose secret hashes to hash.
func (f *FSM) TokenByHash(hash string) (Token, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	id, ok := f.st.auth.byHash[hash]
	if !ok {
		return Token{}, false
	}
	t := f.st.auth.tokens[id]
	t.Roles = slices.Clone(t.Roles)
	return t, true
}

// TokenByID returns a token by its public id.
func (f *FSM) TokenByID(id string) (Token, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.st.auth.tokens[id]
	t.Roles = slices.Clone(t.Roles)
	return t, ok
}

// Tokens returns every token, sorted by id.
func (f *FSM) Tokens() []Token {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.auth.sortedTokens()
}

// Role returns a role by name; the built-in admin role is always there.
func (f *FSM) Role(name string) (Role, bool) {
	if name == AdminRole {
		return Role{Name: AdminRole, Admin: true, Permissions: []Permission{{Prefix: "", Access: AccessReadWrite}}}, true
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	r, ok := f.st.auth.roles[name]
	return cloneRole(r), ok
}

// Roles returns every role, the built-in admin role first, then by name.
func (f *FSM) Roles() []Role {
	admin, _ := f.Role(AdminRole)
	f.mu.RLock()
	defer f.mu.RUnlock()
	return append([]Role{admin}, f.st.auth.sortedRoles()...)
}

func (a *authState) sortedRoles() []Role {
	out := make([]Role, 0, len(a.roles))
	for _, r := range a.roles {
		out = append(out, cloneRole(r))
	}
	slices.SortFunc(out, func(x, y Role) int { return strings.Compare(x.Name, y.Name) })
	return out
}

func (a *authState) sortedTokens() []Token {
	out := make([]Token, 0, len(a.tokens))
	for _, t := range a.tokens {
		t.Roles = slices.Clone(t.Roles)
		out = append(out, t)
	}
	slices.SortFunc(out, func(x, y Token) int { return strings.Compare(x.ID, y.ID) })
	return out
}

// Encodings, shared by log entries and checkpoint records.
//
//	Role:  name, admin (byte 0/1), count, then per permission: prefix, access
//	Token: id, hash, count, roles..., description, expires (varint)

func appendRole(b []byte, r Role) []byte {
	b = appendString(b, r.Name)
	admin := byte(0)
	if r.Admin {
		admin = 1
	}
	b = append(b, admin)
	b = binary.AppendUvarint(b, uint64(len(r.Permissions)))
	for _, p := range r.Permissions {
		b = appendString(b, p.Prefix)
		b = appendString(b, string(p.Access))
	}
	return b
}

func decodeRole(d *wire.Decoder) Role {
	r := Role{Name: d.Text()}
	switch d.Byte() {
	case 0:
	case 1:
		r.Admin = true
	default:
		d.Fail("bad admin flag")
	}
	n := d.Count(2)
	for i := 0; i < n; i++ {
		r.Permissions = append(r.Permissions, Permission{Prefix: d.Text(), Access: Access(d.Text())})
	}
	return r
}

func appendToken(b []byte, t Token) []byte {
	b = appendString(b, t.ID)
	b = appendString(b, t.Hash)
	b = binary.AppendUvarint(b, uint64(len(t.Roles)))
	for _, r := range t.Roles {
		b = appendString(b, r)
	}
	b = appendString(b, t.Description)
	return binary.AppendVarint(b, t.ExpiresAt)
}

func decodeToken(d *wire.Decoder) Token {
	t := Token{ID: d.Text(), Hash: d.Text()}
	n := d.Count(1)
	for i := 0; i < n; i++ {
		t.Roles = append(t.Roles, d.Text())
	}
	t.Description = d.Text()
	t.ExpiresAt = d.Varint()
	return t
}

// EncodePutRole returns the entry that creates or replaces a role.
func EncodePutRole(r Role) []byte {
	return appendRole([]byte{CommandVersion, byte(CommandPutRole)}, r)
}

// EncodeDeleteRole returns the entry that removes a role.
func EncodeDeleteRole(name string) []byte {
	return appendString([]byte{CommandVersion, byte(CommandDeleteRole)}, name)
}

// EncodePutToken returns the entry that creates or replaces a token.
func EncodePutToken(t Token) []byte {
	return appendToken([]byte{CommandVersion, byte(CommandPutToken)}, t)
}

// EncodeDeleteToken returns the entry that revokes a token.
func EncodeDeleteToken(id string) []byte {
	return appendString([]byte{CommandVersion, byte(CommandDeleteToken)}, id)
}

// load adds one role or token record of a checkpoint, checked as a command
// would be, so a checkpoint can never hold what Apply refuses.
func (a *authState) load(p []byte) error {
	d := wire.NewDecoder(p[1:])
	var res *Result
	if p[0] == recRole {
		r := decodeRole(d)
		if err := d.Finish(); err != nil {
			return fmt.Errorf("%w: role: %v", ErrMalformed, err)
		}
		if _, dup := a.roles[r.Name]; dup {
			return fmt.Errorf("%w: role %q twice", ErrBadSnapshot, r.Name)
		}
		res = a.putRole(r)
	} else {
		t := decodeToken(d)
		if err := d.Finish(); err != nil {
			return fmt.Errorf("%w: token: %v", ErrMalformed, err)
		}
		if _, dup := a.tokens[t.ID]; dup {
			return fmt.Errorf("%w: token %q twice", ErrBadSnapshot, t.ID)
		}
		res = a.putToken(t)
	}
	if res.Err != nil {
		return fmt.Errorf("%w: %v", ErrBadSnapshot, res.Err)
	}
	return nil
}
