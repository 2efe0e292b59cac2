module github.com/storkeep/storkeep

go 1.25.0

require (
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/godbus/dbus/v5 v5.2.4
	github.com/pelletier/go-toml/v2 v2.4.3
)

require golang.org/x/sys v0.27.0 // indirect
