// SPDX-License-Identifier: Apache-2.0

package dbus

// Manager.List: which entries (prefix, host, pages of limit after a key)
// and which keys of each, encoded a chunk at a time into one reply that
// must fit in one D-Bus message (listbody.go).

import (
	"context"
	"fmt"
	"slices"
	"strings"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

var listOptions = map[string]string{OptPrefix: "s", OptHost: "b", OptLimit: "u", OptAfter: "s", OptKeys: "as"}

// listBriefKeys are the keys of each entry of a paged List (one that
// gives limit or after) that does not name its keys: what tells a client
// each connection's state and why it is down, in about 300 bytes. The
// rest (uri, lastErrorMessage, connectionInfo) a client asks for with
// keys; the Connection object has it all. readDelay and lastProbe say
// whether, and how fast, the last read through it worked.
var listBriefKeys = []string{ListManaged, ListConnected, ListState, ListKind, ListTarget, ListLastError,
	ListReadDelay, ListLastProbe}

// listChunk is how many entries List takes from the service at a time:
// the statuses of one chunk are garbage before the next is built. With
// ConnectionInfo, 2,048 statuses took 1-2 MB more of a List's peak
// resident size than 512, for no less CPU.
const listChunk = 512

// listQuery is what one List call asks for.
type listQuery struct {
	prefix, after string
	limit         int             // 0: no limit
	host          bool            // also the connections on the host
	keys          map[string]bool // nil: every key
}

// parseListOptions reads List's options, already checked for their types.
func parseListOptions(opts map[string]godbus.Variant) (listQuery, *godbus.Error) {
	q := listQuery{host: true}
	if v, ok := opts[OptPrefix]; ok {
		q.prefix = v.Value().(string)
	}
	if v, ok := opts[OptHost]; ok {
		q.host = v.Value().(bool)
	}
	if v, ok := opts[OptAfter]; ok {
		q.after = v.Value().(string)
	}
	_, paged := opts[OptAfter]
	if v, ok := opts[OptLimit]; ok {
		q.limit = int(v.Value().(uint32))
		paged = true
	}
	v, ok := opts[OptKeys]
	switch {
	case ok:
		keys, err := listKeys(v.Value().([]string))
		if err != nil {
			return q, err
		}
		q.keys = keys
	case paged:
		q.keys = make(map[string]bool, len(listBriefKeys))
		for _, k := range listBriefKeys {
			q.keys[k] = true
		}
	}
	return q, nil
}

// listKeys checks the keys a List call names: each one listValues has,
// or "*" for all of them (nil).
func listKeys(names []string) (map[string]bool, *godbus.Error) {
	known := make(map[string]bool)
	for _, p := range listValues(service.Status{}) {
		known[p.k] = true
	}
	keys := make(map[string]bool, len(names))
	for _, k := range names {
		if k == ListAllKeys {
			return nil, nil
		}
		if !known[k] {
			all := make([]string, 0, len(known))
			for n := range known {
				all = append(all, n)
			}
			slices.Sort(all)
			return nil, invalidArg("List: option keys: unknown key %.64q (known: %s, or %q for all)",
				k, strings.Join(all, ", "), ListAllKeys)
		}
		keys[k] = true
	}
	return keys, nil
}

// wantsInfo tells whether the entries need ConnectionInfo.
func (q listQuery) wantsInfo() bool { return q.keys == nil || q.keys[ListConnectionInfo] }

// list replies to List, or says why it cannot.
func (s *Server) list(msg godbus.Message, q listQuery) (map[string]map[string]godbus.Variant, *godbus.Error) {
	var host []service.HostConnection
	if q.host {
		host = s.svc.HostConnections(context.Background())
	}
	body, err := s.encodeList(q, host)
	if err != nil {
		return nil, err
	}
	if body != nil && s.swapBody(msg, "a{sa{sv}}", body.blocks, body.size, body.release) {
		return map[string]map[string]godbus.Variant{}, nil
	}
	if body != nil {
		body.release()
	}
	return s.listByGodbus(q, host), nil
}

// encodeList encodes the body of List's reply, an entry at a time, into
// blocks; nil if storkeep's encoder cannot (godbus must), an error if the
// reply would not fit in one message.
func (s *Server) encodeList(q listQuery, host []service.HostConnection) (*blockBody, *godbus.Error) {
	query := service.ListQuery{Prefix: q.prefix, After: q.after, Limit: q.limit, Host: host, NoInfo: !q.wantsInfo()}
	keep := listFieldMask(q.keys)
	body, n, err := s.encodeEntries(query, func(e *wireEncoder, st *service.Status) (bool, error) {
		return true, encodeListEntry(e, st, keep)
	})
	switch {
	case err != nil:
		if s.log != nil {
			s.log.Debug("List reply encoded by godbus", "reason", err)
		}
		return nil, nil
	case body.size > s.limits().MaxMessageSize-replyHeaderRoom:
		size := body.size
		body.release()
		return nil, listTooLarge(q, n, size, s.limits().MaxMessageSize)
	}
	return body, nil
}

// listByGodbus is the reply as godbus encodes it, for the rare reply
// storkeep's encoder refuses (a string that is not UTF-8).
func (s *Server) listByGodbus(q listQuery, host []service.HostConnection) map[string]map[string]godbus.Variant {
	page := s.svc.ListPage(service.ListQuery{Prefix: q.prefix, After: q.after, Limit: q.limit, Host: host})
	out := make(map[string]map[string]godbus.Variant, len(page))
	for _, st := range page {
		out[st.ID] = variants(selectKeys(listValues(st), q.keys))
	}
	return out
}

// listTooLarge is the error for a reply that would not fit in one
// message: the bus would drop the daemon's connection for it.
func listTooLarge(q listQuery, entries, size, max int) *godbus.Error {
	var msg string
	if q.limit > 0 {
		msg = fmt.Sprintf("List: a page of %d entries would be %d bytes or more, and one D-Bus message holds at most %d "+
			"(limits.max_message_size); ask for fewer with a smaller limit", q.limit, size, max)
	} else {
		msg = fmt.Sprintf("List: the reply would be more than %d bytes (%d entries and more), and one D-Bus message "+
			"holds at most %d (limits.max_message_size); page it: call List with the option limit (u, such as 1000), "+
			"then again with after (s) set to the last ID of the previous reply (entries come in ID order), "+
			"until a reply has fewer entries than limit (storkeepctl list does)", size, entries, max)
	}
	return godbus.NewError(ErrorReplyTooLarge, []any{msg})
}

// encodeListEntries appends the entries of page to an a{sa{sv}} that the
// caller began, each with the keys asked for (nil: every key).
func encodeListEntries(e *wireEncoder, page []service.Status, keys map[string]bool) error {
	keep := listFieldMask(keys)
	var entry wireEncoder
	for i := range page {
		if err := encodeListEntry(&entry, &page[i], keep); err != nil {
			return err
		}
		e.align(8)
		e.b = append(e.b, entry.b...)
	}
	return nil
}

// selectKeys keeps the values whose keys are asked for (nil: all).
func selectKeys(vals []kv, keys map[string]bool) []kv {
	if keys == nil {
		return vals
	}
	return slices.DeleteFunc(vals, func(p kv) bool { return !keys[p.k] })
}
