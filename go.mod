module github.com/storkeep/storkeep

go 1.25.0

require (
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/godbus/dbus/v5 v5.2.4
	github.com/pelletier/go-toml/v2 v2.4.3
	github.com/vishvananda/netlink v1.3.1
	golang.org/x/sys v0.27.0
)

require github.com/vishvananda/netns v0.0.5 // indirect
