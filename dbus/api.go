// SPDX-License-Identifier: Apache-2.0

// Package dbus puts the storkeep service on the bus: the manager object, one
// object per connection ID (CID), the ObjectManager, and the error names.
//
// The names in this file are API v1: clients depend on them.
package dbus

// Bus names, object paths and interfaces of API v1.
const (
	BusName    = "org.storkeep.StorKeep1"
	RootPath   = "/org/storkeep/StorKeep1"
	ConnPrefix = RootPath + "/connection/"

	ManagerInterface    = "org.storkeep.StorKeep1.Manager"
	ConnInterface       = "org.storkeep.StorKeep1.Connection"
	NFSInterface        = "org.storkeep.StorKeep1.Connection.NFS"
	ISCSIInterface      = "org.storkeep.StorKeep1.Connection.ISCSI"
	ObjectManagerIface  = "org.freedesktop.DBus.ObjectManager"
	PropertiesIface     = "org.freedesktop.DBus.Properties"
	IntrospectableIface = "org.freedesktop.DBus.Introspectable"
	PeerIface           = "org.freedesktop.DBus.Peer"
)

// Error names of API v1. Each reply carries a message a person can act on.
const (
	ErrorPrefix          = "org.storkeep.StorKeep1.Error."
	ErrorInvalidArgument = ErrorPrefix + "InvalidArgument"
	ErrorInvalidURI      = ErrorPrefix + "InvalidURI"
	ErrorInvalidCID      = ErrorPrefix + "InvalidCID"
	ErrorCIDInUse        = ErrorPrefix + "CIDInUse"
	ErrorUnknownCID      = ErrorPrefix + "UnknownCID"
	ErrorConflict        = ErrorPrefix + "Conflict"
	ErrorNotAuthorized   = ErrorPrefix + "NotAuthorized"
	ErrorTimeout         = ErrorPrefix + "Timeout"
	ErrorFailed          = ErrorPrefix + "Failed"
	// ErrorLimitExceeded: the caller holds as much as one caller may
	// (limits.max_waits_per_caller concurrent Waits); it may retry once
	// some of its calls have ended.
	ErrorLimitExceeded = ErrorPrefix + "LimitExceeded"
	// ErrorReplyTooLarge: the reply would not fit in one D-Bus message
	// (limits.max_message_size); the message says how to page List.
	ErrorReplyTooLarge = ErrorPrefix + "ReplyTooLarge"
)

// Keys of the status dictionaries returned by Manager.List.
const (
	ListManaged          = "managed"
	ListConnected        = "connected"
	ListState            = "state"
	ListKind             = "kind"
	ListURI              = "uri"
	ListTarget           = "target"
	ListLastError        = "lastError"
	ListLastErrorMessage = "lastErrorMessage"
	ListConnectionInfo   = "connectionInfo"
	ListReadDelay        = "readDelay" // u: µs of the last read through it
	ListLastProbe        = "lastProbe" // t: µs since the epoch of that read (0: never)
	// ListAllKeys in List's option keys asks for every key.
	ListAllKeys = "*"
)

// Keys of ConnectionInfo that the kind-specific interfaces show as
// properties: Connection.NFS MountPoint and MountUnit, Connection.ISCSI
// SessionID (uint32) and Devices (by-path link to kernel node).
const (
	InfoMountPoint = "mountPoint"
	InfoMountUnit  = "mountUnit"
	InfoSessionID  = "sessionID"
	InfoDevices    = "devices"
)

// Option keys accepted by Manager.Manage. Credentials travel only here,
// never in the URI.
const (
	OptCHAPUsername   = "chap-username"
	OptCHAPPassword   = "chap-password"
	OptCHAPUsernameIn = "chap-username-in"
	OptCHAPPasswordIn = "chap-password-in"
	// OptPrefix filters Manager.List to CIDs that start with it.
	OptPrefix = "prefix"
	// OptHost (b, default true): List also lists the connections on the
	// host that no CID manages.
	OptHost = "host"
	// OptLimit (u) and OptAfter (s) page List: at most limit entries,
	// those whose IDs come after after. OptKeys (as) names the keys of
	// each entry.
	OptLimit = "limit"
	OptAfter = "after"
	OptKeys  = "keys"
)
