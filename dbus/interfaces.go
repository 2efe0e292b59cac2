// SPDX-License-Identifier: Apache-2.0

package dbus

// InterfaceXML returns, for each interface that API v1 defines, a
// standalone introspection document with that interface alone, keyed by
// the interface's name: the files of /usr/share/dbus-1/interfaces/
// ("<name>.xml"), from which clients generate bindings. They are cut from
// the very strings Introspect serves, so the two cannot drift apart.
func InterfaceXML() map[string]string {
	doc := func(iface string) string { return introspectHeader + iface + "</node>\n" }
	return map[string]string{
		ManagerInterface: doc(managerIfaceXML),
		ConnInterface:    doc(connectionXML),
		NFSInterface:     doc(nfsXML),
		ISCSIInterface:   doc(iscsiXML),
	}
}
