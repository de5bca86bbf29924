package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/raftkv/raftkv/internal/certs"
)

// certsCommands are the subcommands of "raftkv certs".
var certsCommands = subcommands{
	group: "certs",
	help: cmdHelpText{
		summary: "make the cluster CA and node certificates",
		description: `Makes the files that transport security needs (docs/security.md): a cluster CA,
then one certificate per node signed by it. Every node gets ca.pem and its
own NAME.pem and NAME-key.pem; ca-key.pem stays on the machine that issues
certificates.`,
		examples: []string{
			"raftkv certs init --dir ./certs",
			"raftkv certs node --dir ./certs --name node1 --hosts 10.0.0.1,node1.example",
		},
	},
	list: []commandEntry{
		{"init", &certsInitHelp, cmdCertsInit},
		{"node", &certsNodeHelp, cmdCertsNode},
	},
}

func cmdCerts(args []string, stdout, stderr io.Writer) int {
	return certsCommands.run(args, stdout, stderr)
}

var certsInitHelp = cmdHelpText{
	usage:   "raftkv certs init --dir DIR [--force]",
	summary: "make a new cluster CA",
	description: `Makes a new cluster CA in DIR (created if missing): ca.pem, the certificate
every node and client trusts, and ca-key.pem, its private key (mode 0600),
needed only to issue node certificates. An existing CA is kept unless
--force is given; a new CA invalidates every certificate the old one issued.`,
	examples: []string{
		"raftkv certs init --dir ./certs",
		"raftkv certs init --dir ./certs --force",
	},
}

func cmdCertsInit(args []string, stdout, stderr io.Writer) int {
	c := newCommand("certs init", certsInitHelp, stdout, stderr)
	dir := c.fs.String("dir", "", "certificate `DIR` (required)")
	force := c.fs.Bool("force", false, "replace an existing CA")
	c.check(func() error {
		if *dir == "" {
			return fmt.Errorf("--dir is required")
		}
		return nil
	})
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.usageError("unexpected argument %q", pos[0])
	}
	if err := certs.InitCA(*dir, *force); err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(stdout, "Made a cluster CA in %s (%s, %s). Next, for each node:\n  raftkv certs node --dir %s --name NAME --hosts ADDRS\n",
		*dir, certs.CAFile, certs.CAKeyFile, *dir)
	return 0
}

var certsNodeHelp = cmdHelpText{
	usage:   "raftkv certs node --dir DIR --name NAME [--hosts HOSTS] [--force]",
	summary: "issue a node certificate signed by the cluster CA",
	description: `Issues a certificate for node NAME signed by the CA in DIR and writes it as
NAME.pem and NAME-key.pem next to the CA. It serves both ends of a
connection, so one pair can be the node's --peer-tls-cert/--peer-tls-key,
its --tls-cert/--tls-key and its client certificate when it joins. --hosts
are the names and addresses clients type to reach the node's HTTP API (each
IP address becomes an IP SAN, anything else a DNS name); peers on the raft
port check only the CA, not the names. Existing files are kept unless
--force is given.`,
	examples: []string{
		"raftkv certs node --dir ./certs --name node1",
		"raftkv certs node --dir ./certs --name node2 --hosts 10.0.0.2,node2.example,localhost",
	},
}

func cmdCertsNode(args []string, stdout, stderr io.Writer) int {
	c := newCommand("certs node", certsNodeHelp, stdout, stderr)
	dir := c.fs.String("dir", "", "certificate `DIR` holding the CA (required)")
	name := c.fs.String("name", "", "node `NAME`, also the file name (required)")
	hosts := c.fs.String("hosts", strings.Join(certs.DefaultHosts, ","), "comma-separated host names and IP addresses the certificate is valid for")
	force := c.fs.Bool("force", false, "replace an existing certificate of NAME")
	c.check(func() error {
		if *dir == "" || *name == "" {
			return fmt.Errorf("--dir and --name are required")
		}
		return nil
	})
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.usageError("unexpected argument %q", pos[0])
	}
	list := splitList(*hosts)
	if err := certs.IssueNode(*dir, *name, list, *force); err != nil {
		return c.fail(err)
	}
	certFile, keyFile := certs.NodeFiles(*dir, *name)
	fmt.Fprintf(stdout, "Issued %s and %s for %s (hosts %s).\n", certFile, keyFile, *name, strings.Join(list, ","))
	return 0
}
