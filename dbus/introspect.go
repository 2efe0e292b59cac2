// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"strings"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

// The introspection data of API v1. busctl introspect and gdbus introspect
// show exactly this.
const (
	introspectHeader = `<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
`
	standardXML = `  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId"><arg type="s" name="machine_uuid" direction="out"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect"><arg type="s" name="xml_data" direction="out"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Properties">
    <method name="Get">
      <arg type="s" name="interface_name" direction="in"/>
      <arg type="s" name="property_name" direction="in"/>
      <arg type="v" name="value" direction="out"/>
    </method>
    <method name="GetAll">
      <arg type="s" name="interface_name" direction="in"/>
      <arg type="a{sv}" name="props" direction="out"/>
    </method>
    <method name="Set">
      <arg type="s" name="interface_name" direction="in"/>
      <arg type="s" name="property_name" direction="in"/>
      <arg type="v" name="value" direction="in"/>
    </method>
    <signal name="PropertiesChanged">
      <arg type="s" name="interface_name"/>
      <arg type="a{sv}" name="changed_properties"/>
      <arg type="as" name="invalidated_properties"/>
    </signal>
  </interface>
`
	objectManagerXML = `  <interface name="org.freedesktop.DBus.ObjectManager">
    <method name="GetManagedObjects">
      <arg type="a{oa{sa{sv}}}" name="object_paths_interfaces_and_properties" direction="out"/>
    </method>
    <signal name="InterfacesAdded">
      <arg type="o" name="object_path"/>
      <arg type="a{sa{sv}}" name="interfaces_and_properties"/>
    </signal>
    <signal name="InterfacesRemoved">
      <arg type="o" name="object_path"/>
      <arg type="as" name="interfaces"/>
    </signal>
  </interface>
`
	managerIfaceXML = `  <interface name="org.storkeep.StorKeep1.Manager">
    <method name="Manage">
      <arg type="s" name="uri" direction="in"/>
      <arg type="s" name="cid" direction="in"/>
      <arg type="a{sv}" name="options" direction="in"/>
      <arg type="o" name="connection" direction="out"/>
    </method>
    <method name="Unmanage">
      <arg type="s" name="cid" direction="in"/>
      <arg type="a{sv}" name="options" direction="in"/>
    </method>
    <method name="UnmanagePrefix">
      <arg type="s" name="prefix" direction="in"/>
      <arg type="a{sv}" name="options" direction="in"/>
      <arg type="as" name="cids" direction="out"/>
    </method>
    <method name="List">
      <arg type="a{sv}" name="options" direction="in"/>
      <arg type="a{sa{sv}}" name="connections" direction="out"/>
    </method>
    <method name="GetConnection">
      <arg type="s" name="cid" direction="in"/>
      <arg type="o" name="connection" direction="out"/>
    </method>
    <signal name="PathChanged">
      <arg type="s" name="host"/>
      <arg type="b" name="usable"/>
      <arg type="s" name="link"/>
      <arg type="s" name="reason"/>
      <arg type="as" name="cids"/>
    </signal>
    <property name="Version" type="s" access="read">
      <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/>
    </property>
  </interface>
`
	connectionXML = `  <interface name="org.storkeep.StorKeep1.Connection">
    <method name="Wait">
      <arg type="t" name="timeout_usec" direction="in"/>
      <arg type="a{sv}" name="options" direction="in"/>
    </method>
    <method name="Reconnect">
      <arg type="a{sv}" name="options" direction="in"/>
    </method>
    <property name="CID" type="s" access="read">
      <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/>
    </property>
    <property name="URI" type="s" access="read">
      <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/>
    </property>
    <property name="Kind" type="s" access="read">
      <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/>
    </property>
    <property name="Target" type="s" access="read">
      <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/>
    </property>
    <property name="Managed" type="b" access="read"/>
    <property name="Connected" type="b" access="read"/>
    <property name="State" type="s" access="read"/>
    <property name="Preexisting" type="b" access="read"/>
    <property name="LastError" type="s" access="read"/>
    <property name="LastErrorMessage" type="s" access="read"/>
    <property name="LastErrorTime" type="t" access="read"/>
    <property name="ConnectedSince" type="t" access="read"/>
    <property name="Attempts" type="u" access="read"/>
    <property name="NextAttempt" type="t" access="read"/>
    <property name="ConnectionInfo" type="a{sv}" access="read"/>
    <property name="ReadDelay" type="u" access="read">
      <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="false"/>
    </property>
    <property name="LastProbe" type="t" access="read">
      <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="false"/>
    </property>
  </interface>
`
	nfsXML = `  <interface name="org.storkeep.StorKeep1.Connection.NFS">
    <property name="MountPoint" type="s" access="read"/>
    <property name="MountUnit" type="s" access="read"/>
  </interface>
`
	iscsiXML = `  <interface name="org.storkeep.StorKeep1.Connection.ISCSI">
    <property name="SessionID" type="u" access="read"/>
    <property name="Devices" type="a{ss}" access="read"/>
  </interface>
`
)

// introspectable implements org.freedesktop.DBus.Introspectable for the
// root and everything below it.
type introspectable struct{ s *Server }

func (i introspectable) Introspect(msg godbus.Message) (string, *godbus.Error) {
	path, _ := msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)
	var b strings.Builder
	b.WriteString(introspectHeader)
	switch {
	case path == RootPath:
		b.WriteString(standardXML)
		b.WriteString(objectManagerXML)
		b.WriteString(managerIfaceXML)
		b.WriteString("  <node name=\"connection\"/>\n")
	case path == RootPath+"/connection":
		b.WriteString(standardXML)
		for _, c := range i.s.svc.CIDs() {
			b.WriteString("  <node name=\"")
			b.WriteString(EscapePathElement(string(c)))
			b.WriteString("\"/>\n")
		}
	default:
		if c, ok := CIDFromPath(path); ok {
			if st, ok := i.s.svc.Status(service.CID(c)); ok {
				b.WriteString(standardXML)
				b.WriteString(connectionXML)
				switch st.Kind {
				case service.KindNFS:
					b.WriteString(nfsXML)
				case service.KindISCSI:
					b.WriteString(iscsiXML)
				}
			}
		}
	}
	b.WriteString("</node>\n")
	return b.String(), nil
}
