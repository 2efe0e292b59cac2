// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"log/slog"

	"github.com/storkeep/storkeep/netmon"
	"github.com/storkeep/storkeep/service"
)

// netPaths gives the service the network paths netmon follows, in the
// service's own terms, so that the service stays free of netlink.
type netPaths struct {
	*netmon.Monitor
}

func newNetPaths(log *slog.Logger, r *netmon.Resolver) netPaths {
	return netPaths{&netmon.Monitor{
		Log:     log,
		Resolve: r.Refresh,
		OnEvent: func(ev netmon.Event) {
			if ev.Kind == "link" {
				log.Debug("link event", "link", ev.Link, "up", ev.Up)
			}
		},
	}}
}

// Run reports paths as service.Path values.
func (n netPaths) Run(ctx context.Context, report func(string, service.Path)) {
	n.Monitor.Run(ctx, func(host string, p netmon.Path) { report(host, servicePath(p)) })
}

func servicePath(p netmon.Path) service.Path {
	sp := service.Path{Usable: p.Usable, Link: p.Link}
	switch p.Why {
	case netmon.NoRoute:
		sp.Why, sp.Detail = service.ErrNameNoRoute, p.String()
	case netmon.LinkDown, netmon.NoCarrier:
		sp.Why, sp.Detail = service.ErrNameLinkDown, p.String()
	}
	return sp
}
