"""`floydtui serve`: the wizard (or, with --watch RUN_DIR, the monitor) in a browser.

textual-serve runs one copy of the app per browser tab, each in its own process, and draws
it with a terminal emulator in the page over a websocket. There is no authentication: the
page runs the app as the user who started the server, so it binds to 127.0.0.1 unless
--host names another address, and then says so.
"""

from __future__ import annotations

import getpass
import ipaddress
import shlex
import socket
import sys
from pathlib import Path

from floydtui.errors import FloydError

DEFAULT_HOST = "127.0.0.1"


def app_command(preset: str | None, watch: str | None) -> str:
    """The shell command textual-serve starts for each browser tab."""
    argv = [sys.executable, "-m", "floydtui"]
    if watch:
        argv += ["watch", str(Path(watch).expanduser().resolve())]
    else:
        argv += ["wizard", *([str(Path(preset).expanduser().resolve())] if preset else [])]
    return shlex.join(argv)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost": addresses other machines cannot reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> None:
    """A clear error now for a port that is taken or not ours to bind, instead of aiohttp's traceback."""
    if not 1 <= port <= 65535:
        raise FloydError.one(f"--port {port}: must be 1 to 65535", where="--port")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise FloydError.one(f"cannot listen on {host}:{port}: {e.strerror or e}", where="--host/--port",
                             hint="choose another --port (another server may use this one), or a --host "
                                  "address this machine has") from None


def tunnel_line(port: int) -> str:
    """The ssh command that makes this server reachable as localhost:PORT on the user's own machine."""
    return f"ssh -N -L {port}:127.0.0.1:{port} {getpass.getuser()}@{socket.gethostname()}"


def main(args) -> int:
    host = args.host or DEFAULT_HOST
    if args.watch and args.preset:
        raise FloydError.one("give either a PRESET for the wizard or --watch RUN_DIR, not both", where="serve")
    if args.watch and not Path(args.watch).expanduser().is_dir():
        raise FloydError.one(f"no run directory {args.watch}", where="--watch",
                             hint="pass a run's output_dir (it holds events.jsonl), e.g. --watch output/demo")
    check_port(host, args.port)
    try:
        from textual_serve.server import Server
    except ImportError:
        raise FloydError.one("textual-serve is not installed", where="serve",
                             hint="pip install textual-serve (or reinstall floydtui: pip install -e .)") from None

    class FloydServer(Server):
        """The page's websocket points back at the address the browser used, not at the bind address.

        So the page works through an SSH tunnel on another local port, and behind 0.0.0.0.
        """

        async def handle_index(self, request):
            # The template is built synchronously from public_url: no other request runs in between.
            self.public_url = f"{request.scheme}://{request.host}"
            return await super().handle_index(request)

    command = app_command(args.preset, args.watch)
    what = f"the monitor on {args.watch}" if args.watch else "the wizard"
    print(f"floydtui serve: {what} at http://{host}:{args.port}/ (one app per browser tab; Ctrl+C stops)",
          flush=True)
    if is_loopback(host):
        print(f"from another machine, tunnel it over SSH and open http://localhost:{args.port}/ there:\n"
              f"  {tunnel_line(args.port)}", flush=True)
    else:
        sys.stderr.write(f"warning: listening on {host}:{args.port} with no authentication: anyone who can reach "
                         "this address can use the app as you (edit files, start training)\n"
                         f"  fix: keep the default --host {DEFAULT_HOST} and use an SSH tunnel, or put an "
                         "authenticating proxy in front\n")
        sys.stderr.flush()
    FloydServer(command, host=host, port=args.port, title="floydtui").serve()
    return 0
