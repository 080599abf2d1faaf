// Command petrel is the Petrel MQTT broker and its tools.
//
//	petrel serve [--config petrel.yaml]      run the broker
//	petrel check --config petrel.yaml        validate a configuration
//	petrel pub -t TOPIC -m MESSAGE           publish (mosquitto_pub style)
//	petrel sub -t FILTER                     subscribe and print (mosquitto_sub style)
//	petrel bench SCENARIO [flags]            load generator (fanin, fanout, ...)
//	petrel token --tenant T --scope R --key F  print a signed JWT
//	petrel passwd [--scram]                  hash a password for the users file
//	petrel store inspect [--data DIR]        show a data directory's sessions and queues
//	petrel ctl COMMAND                       the admin API of a running broker
//	petrel cluster status                    a running cluster's nodes, leaders and lag
//	petrel version                           print the version
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `Petrel, an MQTT broker.

Usage:
  petrel serve [flags]    run the broker (petrel serve -h for flags)
  petrel check --config F validate a configuration file and exit
  petrel pub [flags]      publish messages (petrel pub --help for flags)
  petrel sub [flags]      subscribe and print messages (petrel sub --help for flags)
  petrel bench SCENARIO   load a broker and report msg/s, loss, latency (petrel bench -h)
  petrel token [flags]    print a signed JWT (petrel token -h for flags)
  petrel passwd [--scram] hash a password from stdin for the users file
  petrel store inspect    show the sessions, queues and retained count of a data directory
  petrel ctl COMMAND      a running broker's clients, sessions, retained messages, stats (petrel ctl -h)
  petrel cluster status   a running cluster's nodes, leaders, replication lag, connections
  petrel version          print the version

With no flags, petrel serve listens on 127.0.0.1:1883 and allows anonymous
clients (loopback only). See docs/configuration.md for the YAML file.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serveMain(args[1:], os.Environ(), stderr)
	case "check":
		return checkMain(args[1:], os.Environ(), stdout, stderr)
	case "pub":
		return pubMain(args[1:], stdout, stderr)
	case "sub":
		return subMain(args[1:], stdout, stderr)
	case "bench":
		return benchMain(args[1:], stdout, stderr)
	case "token":
		return tokenMain(args[1:], stdout, stderr)
	case "passwd":
		return passwdMain(args[1:], os.Stdin, stdout, stderr)
	case "store":
		return storeMain(args[1:], stdout, stderr)
	case "ctl":
		return ctlMain(args[1:], os.Environ(), stdout, stderr)
	case "cluster":
		return clusterMain(args[1:], os.Environ(), stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, buildVersion())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "petrel: unknown command %q\n\n%s", args[0], usage)
	return 2
}
