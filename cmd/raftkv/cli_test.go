package main

import (
	"github.com/raftkv/raftkv/client"

	"bytes"
	"encoding/json"
	"net"
	"strings"
	"testing"
)

// runCLI runs the CLI in-process with args and returns exit code, stdout
// and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestTopLevelUsage(t *testing.T) {
	if code, _, errOut := runCLI(t); code != 2 || !strings.Contains(errOut, "Usage:") {
		t.Fatalf("no args: code %d, stderr %q", code, errOut)
	}
	if code, out, _ := runCLI(t, "--help"); code != 0 || !strings.Contains(out, "Commands:") {
		t.Fatalf("--help: code %d, stdout %q", code, out)
	}
	code, _, errOut := runCLI(t, "frobnicate")
	if code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: code %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "--endpoints", "x", "get", "k"); code != 2 || !strings.Contains(errOut, "flags go after") {
		t.Fatalf("flag before command: code %d, stderr %q", code, errOut)
	}
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.HasPrefix(out, "raftkv ") {
		t.Fatalf("version: code %d, stdout %q", code, out)
	}
	if code, out, _ := runCLI(t, "help", "put"); code != 0 || !strings.Contains(out, "raftkv put KEY") {
		t.Fatalf("help put: code %d, stdout %q", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"put"},
		{"put", "a", "b", "c"},
		{"put", "k", "v", "--bogus"},
		{"put", "k", "v", "--if-match", "abc"},
		{"put", "k", "v", "--if-match", "3", "--if-absent"},
		{"get"},
		{"get", "k", "-o", "yaml"},
		{"get", "k", "--timeout", "soon"},
		{"del", "a", "b"},
		{"list", "a", "b"},
		{"list", "--limit", "-1"},
		{"cluster"},
		{"cluster", "explode"},
		{"cluster", "join", "--id", "n4"},
		{"cluster", "leave"},
		{"cluster", "transfer-leadership"},
		{"version", "extra"},
		{"snapshot"},
		{"snapshot", "save"},
		{"snapshot", "inspect"},
		{"snapshot", "restore", "b.tar"},
		{"chaos"},
		{"chaos", "explode"},
		{"chaos", "run", "extra"},
		{"txn", "extra"},
		{"bench", "--op", "scan"},
		{"serve", "--http-addr", "0.0.0.0:8080"},
	} {
		code, out, errOut := runCLI(t, args...)
		if code != 2 || !strings.Contains(errOut, "Error:") || out != "" {
			t.Errorf("%v: code %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

func TestPutGetDel(t *testing.T) {
	_, srv := newFakeNode(t, "node1")
	ep := "--endpoints=" + srv.URL

	code, out, errOut := runCLI(t, "put", "greeting", "hello", ep)
	if code != 0 || out != "OK revision=1 version=1 shard=shard-1\n" {
		t.Fatalf("put: %d %q %q", code, out, errOut)
	}
	// Flags may come before the arguments, and -- protects a dash value.
	if code, _, errOut := runCLI(t, "put", ep, "--", "neg", "-5"); code != 0 {
		t.Fatalf("put -5: %d %q", code, errOut)
	}
	if code, out, _ := runCLI(t, "get", "greeting", ep); code != 0 || out != "hello" {
		t.Fatalf("get: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "get", ep, "neg"); code != 0 || out != "-5" {
		t.Fatalf("get neg: %d %q", code, out)
	}
	code, out, _ = runCLI(t, "get", "greeting", "-o", "json", ep)
	var got map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got["value"] != "hello" || got["revision"] != 1.0 {
		t.Fatalf("get -o json: %d %q", code, out)
	}

	code, _, errOut = runCLI(t, "put", "greeting", "again", "--if-absent", ep)
	if code != 1 || !strings.HasPrefix(errOut, "Error: precondition_failed: ") {
		t.Fatalf("put --if-absent on existing key: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "put", "greeting", "x", "--if-match", "9", ep); code != 1 || !strings.Contains(errOut, "precondition_failed") {
		t.Fatalf("put --if-match 9: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "put", "greeting", "x", `--if-match="1"`, ep); code != 0 {
		t.Fatalf("put --if-match \"1\": %d %q", code, errOut)
	}

	if code, out, _ := runCLI(t, "del", "greeting", ep); code != 0 || out != "deleted\n" {
		t.Fatalf("del: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "del", "greeting", ep); code != 0 || !strings.Contains(out, "not found") {
		t.Fatalf("del again: %d %q", code, out)
	}
	code, out, errOut = runCLI(t, "get", "greeting", ep)
	if code != 1 || out != "" || errOut != "Error: not found: key \"greeting\" does not exist\n" {
		t.Fatalf("get missing: %d %q %q", code, out, errOut)
	}
}

func TestPutFromStdinAndEnvEndpoints(t *testing.T) {
	_, srv := newFakeNode(t, "node1")
	// The first endpoint is dead: the client moves on to the live one.
	t.Setenv(envEndpoints, deadAddr(t)+","+strings.TrimPrefix(srv.URL, "http://"))
	old := stdin
	stdin = strings.NewReader("line1\nline2\n")
	t.Cleanup(func() { stdin = old })

	if code, _, errOut := runCLI(t, "put", "doc"); code != 0 {
		t.Fatalf("put from stdin: %d %q", code, errOut)
	}
	if code, out, _ := runCLI(t, "get", "doc"); code != 0 || out != "line1\nline2\n" {
		t.Fatalf("get: %d %q", code, out)
	}
}

func TestUnreachable(t *testing.T) {
	code, _, errOut := runCLI(t, "get", "k", "--endpoints", deadAddr(t))
	if code != 1 || !strings.Contains(errOut, "no endpoint reachable") {
		t.Fatalf("%d %q", code, errOut)
	}
}

func TestList(t *testing.T) {
	f, srv := newFakeNode(t, "node1")
	f.data = map[string][]byte{"u/a": []byte("1"), "u/b": {0xff, 0x01}, "u/c": []byte("two\nlines"), "v/x": []byte("no")}
	f.revs = map[string]uint64{"u/a": 1, "u/b": 2, "u/c": 3, "v/x": 4}
	ep := "--endpoints=" + srv.URL

	code, out, errOut := runCLI(t, "list", "u/", "--limit", "2", ep)
	if code != 0 || out != "u/a\t1\nu/b\t\"\\xff\\x01\"\n" || !strings.Contains(errOut, `--after "u/b"`) {
		t.Fatalf("list page: %d %q %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "list", "u/", "--limit", "1", "--all", ep)
	if code != 0 || out != "u/a\t1\nu/b\t\"\\xff\\x01\"\nu/c\t\"two\\nlines\"\n" || errOut != "" {
		t.Fatalf("list --all: %d %q %q", code, out, errOut)
	}
	code, out, _ = runCLI(t, "list", "--all", "--limit=1", "-o", "json", ep)
	var res struct {
		Items []map[string]any `json:"items"`
		More  bool             `json:"more"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Items) != 4 || res.More {
		t.Fatalf("list json: %d %q", code, out)
	}
	if res.Items[1]["value_base64"] != "/wE=" || res.Items[0]["value"] != "1" {
		t.Fatalf("list json items: %v", res.Items)
	}
	if code, out, _ := runCLI(t, "list", "u/", "--after", "u/b", ep); code != 0 || !strings.HasPrefix(out, "u/c\t") {
		t.Fatalf("list --after: %d %q", code, out)
	}
}

func TestCLISaysAServerErrorOnce(t *testing.T) {
	for _, tc := range []struct{ code, msg, want string }{
		{"not_found", `not found: key "k"`, `not found: key "k"`},
		{"precondition_failed", "precondition failed: current revision is 7", "precondition failed: current revision is 7"},
		{"not_found", "no node ghost", "not_found: no node ghost"},
		{"", "boom", "boom"},
	} {
		if got := apiErrorText(&client.APIError{Code: tc.code, Message: tc.msg}); got != tc.want {
			t.Errorf("code %q, message %q: says %q, want %q", tc.code, tc.msg, got, tc.want)
		}
	}
}
