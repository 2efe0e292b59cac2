// SPDX-License-Identifier: Apache-2.0

// Command waitclient holds Connection.Wait calls open for storkeepd's
// component tests (waits_test.go), as an unprivileged user would: it opens
// -conns bus connections, sends -per Waits of -timeout on each without
// waiting for their replies, makes sure the daemon has read them (a Ping
// on each connection comes back after them), prints "sent N" and then
// obeys stdin, a line at a time:
//
//	extra   one more Wait, 2 s, from a new connection; prints its error name
//	exit    exits, closing every connection (as does EOF or SIGKILL)
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

func main() {
	addr := flag.String("address", "", "bus address")
	cid := flag.String("cid", "", "the CID to wait for")
	conns := flag.Int("conns", 1, "bus connections")
	per := flag.Int("per", 1, "Waits per connection")
	timeout := flag.Uint64("timeout", 3_600_000_000, "each Wait's timeout, µs")
	flag.Parse()
	none := map[string]godbus.Variant{}
	path := skdbus.ConnectionPath(*cid)
	var open []*godbus.Conn
	replies := make(chan *godbus.Call, *conns**per+1)
	for range *conns {
		c, err := godbus.Connect(*addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "waitclient:", err)
			os.Exit(1)
		}
		open = append(open, c)
		for range *per {
			c.Object(skdbus.BusName, path).Go(skdbus.ConnInterface+".Wait", 0, replies, *timeout, none)
		}
	}
	for _, c := range open {
		if err := c.Object(skdbus.BusName, skdbus.RootPath).Call(skdbus.PeerIface+".Ping", 0).Err; err != nil {
			fmt.Fprintln(os.Stderr, "waitclient: ping:", err)
			os.Exit(1)
		}
	}
	fmt.Printf("sent %d\n", *conns**per)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "extra":
			c, err := godbus.Connect(*addr)
			if err != nil {
				fmt.Fprintln(os.Stderr, "waitclient:", err)
				os.Exit(1)
			}
			err = c.Object(skdbus.BusName, path).Call(skdbus.ConnInterface+".Wait", 0, uint64(2_000_000), none).Err
			c.Close()
			fmt.Println(errName(err))
		case "exit":
			return
		}
	}
}

func errName(err error) string {
	switch e := err.(type) {
	case nil:
		return "ok"
	case godbus.Error:
		return e.Name
	case *godbus.Error:
		return e.Name
	}
	return "not a D-Bus error: " + err.Error()
}
