// SPDX-License-Identifier: Apache-2.0

// Command floodclient is a hostile, unprivileged client for storkeepd's
// component tests (TestTenThousandUnprivilegedCalls): it sends many
// changing calls with hostile arguments over one connection, a few at a
// time, and checks that every one is refused with a named error. It prints
// the count of each error name and exits 1 if any call succeeded or failed
// without a D-Bus error.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

func main() {
	addr := flag.String("address", "", "bus address")
	n := flag.Int("n", 10000, "calls to send")
	inflight := flag.Int("inflight", 16, "calls in flight at once")
	victim := flag.String("victim", "", "a CID root manages, to try to unmanage and reconnect")
	flag.Parse()
	conn, err := godbus.Connect(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floodclient:", err)
		os.Exit(1)
	}
	defer conn.Close()

	var (
		mu     sync.Mutex
		counts = map[string]int{}
		bad    []string
		wg     sync.WaitGroup
		slots  = make(chan struct{}, *inflight)
	)
	start := time.Now()
	for i := range *n {
		slots <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-slots; wg.Done() }()
			desc, call := hostileCall(conn, i, *victim)
			err := call.Err
			mu.Lock()
			defer mu.Unlock()
			var e godbus.Error
			switch {
			case err == nil:
				bad = append(bad, desc+": succeeded")
			case asDBusError(err, &e) && e.Name != "":
				counts[e.Name]++
			default:
				bad = append(bad, fmt.Sprintf("%s: %v", desc, err))
			}
		}(i)
	}
	wg.Wait()
	out, _ := json.Marshal(map[string]any{"counts": counts, "bad": bad, "seconds": time.Since(start).Seconds()})
	fmt.Println(string(out))
	if len(bad) > 0 {
		os.Exit(1)
	}
}

func asDBusError(err error, e *godbus.Error) bool {
	switch v := err.(type) {
	case godbus.Error:
		*e = v
		return true
	case *godbus.Error:
		*e = *v
		return true
	}
	return false
}

// hostileCall makes call i: wrong types, huge and tricky strings, option
// values that try to inject mount options or iscsiadm arguments, and plain
// changes the caller is not allowed to make.
func hostileCall(conn *godbus.Conn, i int, victim string) (string, *godbus.Call) {
	root := conn.Object(skdbus.BusName, skdbus.RootPath)
	none := map[string]godbus.Variant{}
	mgr := skdbus.ManagerInterface
	cid := fmt.Sprintf("flood-%d", i)
	switch i % 12 {
	case 0:
		return "Manage", root.Call(mgr+".Manage", 0, "nfs://127.0.0.1/srv/flood", cid, none)
	case 1:
		return "Unmanage victim", root.Call(mgr+".Unmanage", 0, victim, none)
	case 2:
		return "UnmanagePrefix", root.Call(mgr+".UnmanagePrefix", 0, victim[:1], none)
	case 3:
		return "Reconnect victim", conn.Object(skdbus.BusName, skdbus.ConnectionPath(victim)).Call(skdbus.ConnInterface+".Reconnect", 0, none)
	case 4:
		return "Manage wrong types", root.Call(mgr+".Manage", 0, uint32(i), cid, none)
	case 5:
		return "Manage mount option injection", root.Call(mgr+".Manage", 0, "nfs://127.0.0.1/srv/flood?vers=3,bind&suid", cid, none)
	case 6:
		return "Manage iscsiadm injection", root.Call(mgr+".Manage", 0, "iscsi://127.0.0.1/iqn.2026-01.org.storkeep:flood/1", cid,
			map[string]godbus.Variant{skdbus.OptCHAPUsername: godbus.MakeVariant("u\n--op=delete"), skdbus.OptCHAPPassword: godbus.MakeVariant("p")})
	case 7:
		return "Manage path tricks", root.Call(mgr+".Manage", 0, "nfs://127.0.0.1/srv/flood/../../etc%00", "../../"+cid+"\n", none)
	case 8:
		if i%1000 == 8 {
			return "Manage 1 MB URI", root.Call(mgr+".Manage", 0, "nfs://127.0.0.1/flood/"+strings.Repeat("a", 1<<20), cid, none)
		}
		return "Manage long CID", root.Call(mgr+".Manage", 0, "nfs://127.0.0.1/srv/flood", strings.Repeat("f", 5000), none)
	case 9:
		return "Manage unknown options", root.Call(mgr+".Manage", 0, "nfs://127.0.0.1/srv/flood", cid,
			map[string]godbus.Variant{"mount-options": godbus.MakeVariant("rw,suid"), "x": godbus.MakeVariant(uint64(1))})
	case 10:
		return "Manage control characters", root.Call(mgr+".Manage", 0, "nfs://127.0.0.1/srv/fl\x1bood\r\n", cid+"%00\x7f", none)
	default:
		return "Set property", conn.Object(skdbus.BusName, skdbus.ConnectionPath(victim)).Call(skdbus.PropertiesIface+".Set", 0,
			skdbus.ConnInterface, "URI", godbus.MakeVariant("nfs://127.0.0.1/srv/flood"))
	}
}
