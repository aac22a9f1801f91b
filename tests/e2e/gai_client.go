// One lookup as a Go program makes it: net.LookupHost(NAME), which asks for A
// and AAAA through the search list and ndots of /etc/resolv.conf. Built with
// CGO_ENABLED=0 by search_path_e2e.sh and run with GODEBUG=netdns=go+1, so it
// is Go's own resolver (which says so on stderr), never glibc's.
//
//	gai_client NAME
//
// Prints one line, "ms=M addrs=A,B,..." (the distinct addresses, sorted) or
// "ms=M error=TEXT"; exit status 0 when the name resolved, 1 otherwise.
package main

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gai_client NAME")
		os.Exit(2)
	}
	t0 := time.Now()
	addrs, err := net.LookupHost(os.Args[1])
	ms := float64(time.Since(t0).Microseconds()) / 1000
	if err != nil {
		fmt.Printf("ms=%.1f error=%s\n", ms, strings.ReplaceAll(err.Error(), " ", "_"))
		os.Exit(1)
	}
	seen := map[string]bool{}
	var distinct []string
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && !seen[ip.String()] {
			seen[ip.String()] = true
			distinct = append(distinct, ip.String())
		}
	}
	sort.Strings(distinct)
	fmt.Printf("ms=%.1f addrs=%s\n", ms, strings.Join(distinct, ","))
	if len(distinct) == 0 {
		os.Exit(1)
	}
}
