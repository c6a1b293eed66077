"""overlay-boot: start a subhost.

    overlay-boot CONF               start in the background, return once its services started
    overlay-boot --foreground CONF  stay attached (the supervisor is this process)
    overlay-boot --instance NAME    the main process of overlay-boot@NAME.service
    overlay-boot --verify [CONF…]   check configs (all known ones without arguments)

On a host booted with systemd, ``overlay-boot CONF`` starts the subhost as the systemd unit
overlay-boot@NAME.service, so supervision and the journal are the same either way.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .. import log
from ..errors import ConfigError, Problem, SubhostError
from ..record import Record
from .common import UsageError, require_root, run_main

# Where a subhost started without systemd logs when its config has no LOG=.
DEFAULT_LOG_DIR = Path(os.environ.get("OVERLAY_BOOT_LOG_DIR", "/var/log/overlay-boot"))


class Arguments(Record):
    foreground: bool = False
    instance: str | None = None
    verify: bool = False
    no_systemd: bool = False
    config: tuple[str, ...] = ()


USAGE = """usage: overlay-boot [--foreground] [--no-systemd] CONF
       overlay-boot --instance NAME
       overlay-boot --verify [CONF ...]"""


def parse_args(argv: list[str]) -> Arguments:
    """The command line, parsed by hand: argparse alone would add ~15 ms and its objects to
    every supervisor (the unit's main process) for the whole life of the subhost."""
    flags: dict[str, bool] = {"foreground": False, "verify": False, "no_systemd": False}
    instance = None
    config: list[str] = []
    words = list(argv)
    while words:
        word = words.pop(0)
        if word in ("-h", "--help"):
            print(f"{USAGE}\n\n{__doc__.strip()}")
            raise SystemExit(0)
        if word in ("-f", "--foreground"):
            flags["foreground"] = True
        elif word == "--verify":
            flags["verify"] = True
        elif word == "--no-systemd":
            flags["no_systemd"] = True
        elif word == "--instance" or word.startswith("--instance="):
            if "=" in word:
                instance = word.partition("=")[2]
            elif words:
                instance = words.pop(0)
            else:
                raise UsageError("--instance needs a NAME")
        elif word == "--":
            config += words
            words = []
        elif word.startswith("-"):
            raise UsageError(f"unknown option {word}\n{USAGE}")
        else:
            config.append(word)
    if sum((flags["foreground"], flags["verify"], instance is not None)) > 1:
        raise UsageError(f"--foreground, --instance and --verify exclude each other\n{USAGE}")
    if instance is not None and config:
        raise UsageError("--instance takes no configuration file")
    if not flags["verify"] and instance is None and len(config) != 1:
        raise UsageError(f"exactly one configuration file is needed\n{USAGE}")
    return Arguments(instance=instance, config=tuple(config), **flags)


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    return run_main(lambda: _main(parse_args(words)), "overlay-boot")


def _main(args: Arguments) -> int:
    if args.verify:
        from ..verify import verify

        return verify(args.config, print, lambda text: print(text, file=sys.stderr))
    require_root()
    if args.instance is not None:
        config = load_instance(args.instance)
        return supervise(config)
    from ..config import absolute

    path = absolute(args.config[0])  # ".." is the kernel's to resolve, as in 1.6.4
    if not path.exists():
        raise missing_config(path)
    if args.foreground:
        return supervise(load_valid(path))
    from ..systemd import booted

    if not args.no_systemd and booted():
        from .systemd_ops import start_through_systemd

        return start_through_systemd(path)
    return start_in_background(load_valid(path))


def missing_config(path: Path) -> ConfigError:
    return ConfigError(Problem(str(path), "no such configuration file"))


def load_valid(path: Path):
    """The config at PATH, checked: who may write it before its `!` values run, then the
    host. Warnings go to the log."""
    from ..trust import load_trusted
    from ..validate import host_warnings, require_valid

    config = load_trusted(path, command_timeout=command_timeout())
    require_valid(config)
    for warning in host_warnings(config):
        log.warning(warning)
    return config


def command_timeout() -> float:
    """Seconds a `!` value's command may take (OVERLAY_BOOT_COMMAND_TIMEOUT, default 30)."""
    try:
        return float(os.environ.get("OVERLAY_BOOT_COMMAND_TIMEOUT", "30"))
    except ValueError:
        return 30.0


def load_instance(name: str):
    """The config of overlay-boot@NAME: from the generator's drop-in, else looked up by name."""
    from ..naming import name_from_argument

    instance = name
    name = name_from_argument(instance) or ""  # %i: the escaped form of NAME
    if not name:
        raise UsageError(f"invalid subhost instance name {instance!r}")
    given = os.environ.get("OVERLAY_BOOT_CONFIG")
    if given:
        path = Path(given)
    else:
        from ..discovery import find_instance

        path = find_instance(name)
    config = load_valid(path)
    if config.name != name:
        raise ConfigError(
            Problem(str(path), f"defines subhost {config.name!r}, not {name!r}", variable="NAME")
        )
    return config


def supervise(config, ready=None, *, stdio_is_log: bool = False) -> int:
    """Run the supervisor in this process (STDIO_IS_LOG: stdout and stderr already go to the
    LOG= file, which is then not opened a second time: each line would be written twice)."""
    from ..supervisor import Supervisor, open_log

    log.configure(tag=f"overlay-boot[{config.name}]")
    if not stdio_is_log:
        open_log(config.log)
    return Supervisor(config, ready=ready).run()


def start_in_background(config) -> int:
    """Fork the supervisor into its own session; return once the subhost is ready (or failed)."""
    from ..trust import open_log_file

    log_path = config.log or DEFAULT_LOG_DIR / f"{config.name}.log"
    log_fd = open_log_file(log_path)  # here, so that a refused LOG is a config error (78)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the supervisor
        os.close(read_fd)
        os.setsid()
        _redirect_stdio(log_fd)

        def ready(error: str | None) -> None:
            nonlocal write_fd
            if write_fd < 0:
                return
            os.write(write_fd, b"READY\n" if error is None else f"ERROR {error}\n".encode())
            os.close(write_fd)
            write_fd = -1

        status = 1
        try:
            status = run_main(lambda: supervise(config, ready, stdio_is_log=True),
                              f"overlay-boot[{config.name}]")
        finally:
            os._exit(status)
    os.close(log_fd)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        answer = pipe.readline().decode("utf-8", "replace").rstrip("\n")
    if answer == "READY":
        print(f"subhost {config.name} started; log: {log_path}", file=sys.stderr)
        return 0
    _, status = os.waitpid(pid, 0)
    from ..proc import wait_status_words

    message = answer.partition(" ")[2] or "the supervisor exited"
    raise SubhostError(
        f"subhost {config.name} did not start: {message} "
        f"(supervisor {wait_status_words(status)}; log: {log_path})"
    )


def _redirect_stdio(out: int) -> None:
    """stdin from /dev/null, stdout and stderr to OUT (the log file, then closed)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)


if __name__ == "__main__":
    sys.exit(main())
