package registry

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func applyEntry(f *FSM, index uint64, data []byte) *Result {
	return f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}).(*Result)
}

var testHash = strings.Repeat("0f", 32)

func TestRolesAndTokensSurviveACheckpoint(t *testing.T) {
	f := New("meta")
	app := Role{Name: "app", Permissions: []Permission{{Prefix: "app/", Access: AccessReadWrite}, {Prefix: "", Access: AccessRead}}}
	tok := Token{ID: "t1", Hash: testHash, Roles: []string{"app"}, Description: "ci", ExpiresAt: 42}
	for i, cmd := range [][]byte{EncodeInit("c", 1), EncodePutRole(app), EncodePutToken(tok)} {
		if r := applyEntry(f, uint64(i+1), cmd); r.Err != nil {
			t.Fatalf("entry %d: %v", i+1, r.Err)
		}
	}
	g := New("meta")
	if err := restore(g, persist(t, f)); err != nil {
		t.Fatal(err)
	}
	if got, ok := g.TokenByHash(testHash); !ok || !reflect.DeepEqual(got, tok) {
		t.Fatalf("token after restore: %+v %v", got, ok)
	}
	if got, ok := g.Role("app"); !ok || !reflect.DeepEqual(got, app) {
		t.Fatalf("role after restore: %+v %v", got, ok)
	}
	if r := applyEntry(g, 4, EncodeDeleteToken("t1")); r.Err != nil || !r.Changed {
		t.Fatalf("revoke: %+v", r)
	}
	if _, ok := g.TokenByHash(testHash); ok {
		t.Fatal("a revoked token still authenticates")
	}
}

func TestInvalidAuthCommandsChangeNothing(t *testing.T) {
	f := New("meta")
	bad := map[string][]byte{
		"admin role":        EncodePutRole(Role{Name: AdminRole}),
		"bad role name":     EncodePutRole(Role{Name: "a b"}),
		"bad access":        EncodePutRole(Role{Name: "r", Permissions: []Permission{{Prefix: "x", Access: "write"}}}),
		"short hash":        EncodePutToken(Token{ID: "t", Hash: "abc", Roles: []string{"r"}}),
		"no roles":          EncodePutToken(Token{ID: "t", Hash: testHash}),
		"missing token":     EncodeDeleteToken("nope"),
		"missing role":      EncodeDeleteRole("nope"),
		"upper-case hash":   EncodePutToken(Token{ID: "t", Hash: strings.ToUpper(testHash), Roles: []string{"r"}}),
		"negative expiry":   EncodePutToken(Token{ID: "t", Hash: testHash, Roles: []string{"r"}, ExpiresAt: -1}),
		"empty token id":    EncodePutToken(Token{Hash: testHash, Roles: []string{"r"}}),
		"empty role name":   EncodePutRole(Role{}),
		"too many prefixes": EncodePutRole(Role{Name: "r", Permissions: make([]Permission, MaxPermissions+1)}),
	}
	i := uint64(0)
	for name, cmd := range bad {
		i++
		if r := applyEntry(f, i, cmd); r.Err == nil || r.Changed {
			t.Errorf("%s: %+v, want an error and no change", name, r)
		} else if !errors.Is(r.Err, ErrInvalid) && !errors.Is(r.Err, ErrNotFound) {
			t.Errorf("%s: %v", name, r.Err)
		}
	}
	if len(f.Tokens()) != 0 || len(f.Roles()) != 1 {
		t.Fatalf("state changed: %v %v", f.Tokens(), f.Roles())
	}
}

func TestOneSecretBelongsToOneToken(t *testing.T) {
	f := New("meta")
	applyEntry(f, 1, EncodePutToken(Token{ID: "t1", Hash: testHash, Roles: []string{"r"}}))
	if r := applyEntry(f, 2, EncodePutToken(Token{ID: "t2", Hash: testHash, Roles: []string{"r"}})); r.Err == nil {
		t.Fatal("a second token with the same secret was accepted")
	}
}
