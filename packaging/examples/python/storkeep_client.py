#!/usr/bin/python3
"""How a virtualization engine uses storkeep, over its D-Bus API alone.

Before a VM starts, the engine asks storkeep to manage each disk's storage
under a connection ID (CID) and waits until it is connected; while the VM
runs, it follows the connection's PropertiesChanged signal, to pause the VM
when its storage is lost; when the VM is gone, it unmanages the CID. Every
error storkeepd replies with is raised as an exception named after it.

Needs python3-gi (Gio) and nothing from storkeep but the bus:

  storkeep_client.py [--bus ADDRESS] attach [--timeout SECONDS] [--follow] URI CID
  storkeep_client.py [--bus ADDRESS] detach CID

attach manages URI as CID, waits up to --timeout (default 30) seconds for
it, printing each change of the connection; with --follow it then keeps
following until the connection is lost. Exit status: 0, or 1 with
"error: NAME: message" for an error of storkeepd's (2 for usage); after a
Timeout the CID stays managed and storkeep keeps trying.
"""

import argparse
import sys

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

BUS_NAME = "org.storkeep.StorKeep1"
ROOT_PATH = "/org/storkeep/StorKeep1"
MANAGER = "org.storkeep.StorKeep1.Manager"
CONNECTION = "org.storkeep.StorKeep1.Connection"
PROPERTIES = "org.freedesktop.DBus.Properties"
ERROR_PREFIX = "org.storkeep.StorKeep1.Error."

# A method call's own timeout on the bus, beyond what it waits for.
CALL_TIMEOUT_MS = 25_000


class StorKeepError(Exception):
    """An error reply from storkeepd, or from the bus on its behalf."""

    def __init__(self, name, message):
        super().__init__(message)
        self.name = name
        self.message = message


class InvalidArgument(StorKeepError):
    """A malformed option, or a limit passed."""


class InvalidURI(StorKeepError):
    """The URI does not parse, or asks for something refused."""


class InvalidCID(StorKeepError):
    """The CID is empty, too long, or has '/' or NUL in it."""


class CIDInUse(StorKeepError):
    """The CID manages another target already."""


class UnknownCID(StorKeepError):
    """The CID is not managed (or was unmanaged while waiting)."""


class Conflict(StorKeepError):
    """The target is managed under other CIDs with settings that differ."""


class NotAuthorized(StorKeepError):
    """polkit (or the root-only rule) said no."""


class Timeout(StorKeepError):
    """Wait ended before the connection was up; carries the last error."""


class LimitExceeded(StorKeepError):
    """This user holds as many Waits as one may."""


class Failed(StorKeepError):
    """Anything else storkeepd could not do."""


ERRORS = {cls.__name__: cls for cls in (
    InvalidArgument, InvalidURI, InvalidCID, CIDInUse, UnknownCID, Conflict,
    NotAuthorized, Timeout, LimitExceeded, Failed)}


def storkeep_error(err):
    """Maps the GLib.Error of a failed call to its StorKeepError."""
    name = Gio.DBusError.get_remote_error(err) or ""
    message = err.message
    prefix = "GDBus.Error:" + name + ": "
    if name and message.startswith(prefix):
        message = message[len(prefix):]
    if name.startswith(ERROR_PREFIX):
        short = name[len(ERROR_PREFIX):]
        return ERRORS.get(short, StorKeepError)(short, message)
    return StorKeepError(name or "Error", message)


class StorKeep:
    """A client of storkeepd on one bus connection."""

    def __init__(self, address=None):
        if address:
            flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
                     Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
            self.bus = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
        else:
            self.bus = Gio.bus_get_sync(Gio.BusType.SYSTEM, None)

    def _call(self, path, interface, method, args, reply, timeout_ms=CALL_TIMEOUT_MS):
        try:
            return self.bus.call_sync(BUS_NAME, path, interface, method, args,
                                      GLib.VariantType(reply) if reply else None,
                                      Gio.DBusCallFlags.NONE, timeout_ms, None)
        except GLib.Error as err:
            raise storkeep_error(err) from None

    def manage(self, uri, cid, options=None):
        """Registers cid for uri (durably) and returns its object path."""
        reply = self._call(ROOT_PATH, MANAGER, "Manage",
                           GLib.Variant("(ssa{sv})", (uri, cid, options or {})), "(o)")
        return reply.unpack()[0]

    def unmanage(self, cid):
        self._call(ROOT_PATH, MANAGER, "Unmanage", GLib.Variant("(sa{sv})", (cid, {})), None)

    def follow(self, on_change):
        """Calls on_change(path, changed) for every change of any
        connection object; returns the id for unfollow."""
        def handler(_conn, _sender, path, _iface, _signal, params, _data):
            interface, changed, _invalidated = params.unpack()
            if interface == CONNECTION:
                on_change(path, changed)
        return self.bus.signal_subscribe(BUS_NAME, PROPERTIES, "PropertiesChanged", None,
                                         CONNECTION, Gio.DBusSignalFlags.NONE, handler, None)

    def unfollow(self, subscription):
        self.bus.signal_unsubscribe(subscription)

    def wait_async(self, path, timeout_s, done):
        """Calls Wait on the connection at path; done(error or None) runs
        from the main loop once it returns."""
        def finish(conn, result, _data):
            try:
                conn.call_finish(result)
                done(None)
            except GLib.Error as err:
                done(storkeep_error(err))
        self.bus.call(BUS_NAME, path, CONNECTION, "Wait",
                      GLib.Variant("(ta{sv})", (int(timeout_s * 1_000_000), {})), None,
                      Gio.DBusCallFlags.NONE, int(timeout_s * 1000) + CALL_TIMEOUT_MS, None, finish, None)


def describe(changed):
    """The changes a VM engine acts on, as one line."""
    words = []
    for key in ("Connected", "State", "LastError"):
        if key in changed:
            value = changed[key]
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif value == "":
                value = '""'
            words.append(f"{key}={value}")
    return " ".join(words)


def attach(sk, uri, cid, timeout_s, follow):
    """Manages uri as cid, waits for it, and follows it with --follow."""
    loop = GLib.MainLoop()
    state = {"path": None, "connected": False, "error": None}

    def on_change(path, changed):
        # Subscribed before Manage, so no change is missed; changes of
        # other connections are not ours.
        if path != state["path"]:
            return
        line = describe(changed)
        if line:
            print(f"{cid}: changed: {line}", flush=True)
        if follow and state["connected"] and changed.get("Connected") is False:
            print(f"{cid}: lost; a VM engine would pause the VM now", flush=True)
            loop.quit()

    def on_waited(error):
        if error is not None:
            state["error"] = error
            loop.quit()
            return
        state["connected"] = True
        print(f"{cid}: connected", flush=True)
        if not follow:
            loop.quit()

    subscription = sk.follow(on_change)
    try:
        state["path"] = sk.manage(uri, cid)
        print(f"managed {cid} as {state['path']}", flush=True)
        sk.wait_async(state["path"], timeout_s, on_waited)
        loop.run()
    finally:
        sk.unfollow(subscription)
    if state["error"] is not None:
        raise state["error"]


def seconds(text):
    """A number of seconds, with or without an "s": 30, 2.5s."""
    try:
        return float(text[:-1] if text.endswith("s") else text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def main(argv):
    parser = argparse.ArgumentParser(description="A storkeep client, as a virtualization engine would be.")
    parser.add_argument("--bus", help="a D-Bus address (default: the system bus)")
    commands = parser.add_subparsers(dest="command", required=True)
    a = commands.add_parser("attach", help="manage URI as CID and wait for it")
    a.add_argument("uri")
    a.add_argument("cid")
    a.add_argument("--timeout", type=seconds, default=30.0, help="seconds to wait: 30 or 30s (default 30)")
    a.add_argument("--follow", action="store_true", help="then follow it until it is lost")
    d = commands.add_parser("detach", help="unmanage CID")
    d.add_argument("cid")
    args = parser.parse_args(argv)

    try:
        sk = StorKeep(args.bus)
        if args.command == "attach":
            attach(sk, args.uri, args.cid, args.timeout, args.follow)
        else:
            sk.unmanage(args.cid)
            print(f"unmanaged {args.cid}", flush=True)
    except Timeout as err:
        print(f"error: {err.name}: {err.message} (still managed: storkeep keeps trying)", file=sys.stderr, flush=True)
        return 1
    except StorKeepError as err:
        print(f"error: {err.name}: {err.message}", file=sys.stderr, flush=True)
        return 1
    except GLib.Error as err:  # the bus itself, before any call
        print(f"error: bus: {err.message}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
