package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/raftkv/raftkv/client"
)

// authCommands are the subcommands of "raftkv auth".
var authCommands = subcommands{
	group: "auth",
	help: cmdHelpText{
		summary: "manage tokens and roles of a cluster that runs with --auth",
		description: `Tokens are bearer credentials; each names roles. A role grants read or
readwrite on key prefixes; the built-in role "admin" grants everything,
cluster operations included. Every subcommand needs an admin token
(--token or RAFTKV_TOKEN).`,
	},
	list: []commandEntry{
		{"create-token", &authCreateTokenHelp, cmdAuthCreateToken},
		{"list-tokens", &authListTokensHelp, cmdAuthListTokens},
		{"revoke-token", &authRevokeTokenHelp, cmdAuthRevokeToken},
		{"put-role", &authPutRoleHelp, cmdAuthPutRole},
		{"get-role", &authGetRoleHelp, cmdAuthGetRole},
		{"list-roles", &authListRolesHelp, cmdAuthListRoles},
		{"delete-role", &authDeleteRoleHelp, cmdAuthDeleteRole},
	},
}

func cmdAuth(args []string, stdout, stderr io.Writer) int {
	return authCommands.run(args, stdout, stderr)
}

var authCreateTokenHelp = cmdHelpText{
	usage:   "raftkv auth create-token --role ROLE[,ROLE...] [--ttl DURATION] [--description TEXT] [flags]",
	summary: "create a token and print its secret (shown this once)",
	description: `Creates a token with the given roles. The secret is printed once and stored
nowhere in the cluster (only its hash is); keep it. --ttl makes the token
expire (the meta leader stamps the expiry with its clock).`,
	examples: []string{
		"raftkv auth create-token --role app --ttl 720h --description 'billing service'",
	},
}

func cmdAuthCreateToken(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("auth create-token", authCreateTokenHelp, stdout, stderr)
	roles := inv.fs.String("role", "", "comma-separated `ROLES` the token gets")
	ttl := inv.fs.Duration("ttl", 0, "lifetime of the token (0: until revoked)")
	desc := inv.fs.String("description", "", "what the token is for")
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return inv.usageError("create-token takes no arguments")
	}
	list := splitList(*roles)
	if len(list) == 0 {
		return inv.usageError("give the token's roles with --role")
	}
	t, err := inv.client().CreateToken(inv.context(), list, *ttl, *desc)
	if err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, t)
		return 0
	}
	fmt.Fprintf(stdout, "token id: %s\nroles:    %s\n", t.ID, strings.Join(t.Roles, ","))
	if t.ExpiresAt != 0 {
		fmt.Fprintf(stdout, "expires:  %s\n", time.Unix(0, t.ExpiresAt).UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "secret:   %s\n(shown once: the cluster keeps only its hash)\n", t.Secret)
	return 0
}

var authListTokensHelp = cmdHelpText{
	usage:    "raftkv auth list-tokens [flags]",
	summary:  "list tokens (ids, roles, expiry; never secrets)",
	examples: []string{"raftkv auth list-tokens -o json"},
}

func cmdAuthListTokens(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("auth list-tokens", authListTokensHelp, stdout, stderr)
	if _, code, ok := inv.parse(args); !ok {
		return code
	}
	tokens, err := inv.client().Tokens(inv.context())
	if err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, tokens)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLES\tEXPIRES\tDESCRIPTION")
	for _, t := range tokens {
		expires := "never"
		if t.ExpiresAt != 0 {
			expires = time.Unix(0, t.ExpiresAt).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, strings.Join(t.Roles, ","), expires, t.Description)
	}
	_ = tw.Flush()
	return 0
}

var authRevokeTokenHelp = cmdHelpText{
	usage:    "raftkv auth revoke-token ID [flags]",
	summary:  "revoke a token: requests made with it fail from then on",
	examples: []string{"raftkv auth revoke-token 3f2a9c01d4e5b6a7"},
}

func cmdAuthRevokeToken(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("auth revoke-token", authRevokeTokenHelp, stdout, stderr)
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError("give exactly one token id")
	}
	if err := inv.client().RevokeToken(inv.context(), pos[0]); err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, map[string]any{"revoked": pos[0]})
		return 0
	}
	fmt.Fprintf(stdout, "token %s revoked\n", pos[0])
	return 0
}

var authPutRoleHelp = cmdHelpText{
	usage:   "raftkv auth put-role NAME [--read PREFIX,...] [--readwrite PREFIX,...] [--admin] [flags]",
	summary: "create or replace a role",
	description: `A role grants read, or read and write, on every key under each prefix ("" is
every key); --admin adds cluster operations. Putting a role again replaces
it; tokens that name it get the new permissions at once.`,
	examples: []string{
		"raftkv auth put-role app --readwrite app/ --read config/",
		"raftkv auth put-role operator --admin",
	},
}

func cmdAuthPutRole(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("auth put-role", authPutRoleHelp, stdout, stderr)
	read := inv.fs.String("read", "", "comma-separated key `PREFIXES` the role may read")
	readwrite := inv.fs.String("readwrite", "", "comma-separated key `PREFIXES` the role may read and write")
	admin := inv.fs.Bool("admin", false, "also allow cluster operations and every key")
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError("give exactly one role name")
	}
	role := client.Role{Name: pos[0], Admin: *admin, Permissions: []client.Permission{}}
	for _, p := range splitList(*read) {
		role.Permissions = append(role.Permissions, client.Permission{Prefix: p, Access: "read"})
	}
	for _, p := range splitList(*readwrite) {
		role.Permissions = append(role.Permissions, client.Permission{Prefix: p, Access: "readwrite"})
	}
	if err := inv.client().PutRole(inv.context(), role); err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, role)
		return 0
	}
	fmt.Fprintf(stdout, "role %s saved\n", role.Name)
	return 0
}

var authGetRoleHelp = cmdHelpText{
	usage:    "raftkv auth get-role NAME [flags]",
	summary:  "show a role's permissions",
	examples: []string{"raftkv auth get-role app"},
}

func cmdAuthGetRole(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("auth get-role", authGetRoleHelp, stdout, stderr)
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError("give exactly one role name")
	}
	r, err := inv.client().GetRole(inv.context(), pos[0])
	if err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, r)
		return 0
	}
	printRoles(stdout, []client.Role{r})
	return 0
}

var authListRolesHelp = cmdHelpText{
	usage:    "raftkv auth list-roles [flags]",
	summary:  "list every role",
	examples: []string{"raftkv auth list-roles"},
}

func cmdAuthListRoles(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("auth list-roles", authListRolesHelp, stdout, stderr)
	if _, code, ok := inv.parse(args); !ok {
		return code
	}
	roles, err := inv.client().Roles(inv.context())
	if err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, roles)
		return 0
	}
	printRoles(stdout, roles)
	return 0
}

var authDeleteRoleHelp = cmdHelpText{
	usage:    "raftkv auth delete-role NAME [flags]",
	summary:  "delete a role; tokens naming it lose what it granted",
	examples: []string{"raftkv auth delete-role app"},
}

func cmdAuthDeleteRole(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("auth delete-role", authDeleteRoleHelp, stdout, stderr)
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError("give exactly one role name")
	}
	if err := inv.client().DeleteRole(inv.context(), pos[0]); err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, map[string]any{"deleted": pos[0]})
		return 0
	}
	fmt.Fprintf(stdout, "role %s deleted\n", pos[0])
	return 0
}

func printRoles(w io.Writer, roles []client.Role) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tADMIN\tREAD\tREADWRITE")
	for _, r := range roles {
		var read, rw []string
		for _, p := range r.Permissions {
			prefix := p.Prefix
			if prefix == "" {
				prefix = `""`
			}
			if p.Access == "read" {
				read = append(read, prefix)
			} else {
				rw = append(rw, prefix)
			}
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\n", r.Name, r.Admin, strings.Join(read, ","), strings.Join(rw, ","))
	}
	_ = tw.Flush()
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
